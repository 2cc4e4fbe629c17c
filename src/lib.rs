//! webhookd: a self-hosted, drop-in replacement for Segment's Webhooks destination.
//!
//! Apps send events as to Segment's HTTP Tracking API; webhookd stores each durably and
//! delivers it to the webhooks configured for its source.
//!
//! Layout:
//! - [`app`]: wiring. Opens the store, starts the actors, starts the HTTP server.
//! - [`config`]: the configuration file, documented field by field, and its validation.
//! - [`api`]: the HTTP API (ingest, health) and its JSON errors.
//! - [`segment`]: the event model: validation, enrichment, canonical JSON.
//! - [`store`]: the durable store interface and its SQLite implementation (group commit).
//! - [`actors`]: the router, under an actix supervisor.
//! - [`secret`]: secrets that never print and compare in constant time.
//!
//! Flow of one event: HTTP handler → validate and enrich → [`store::Store::append`]
//! (committed with one pending delivery per enabled destination) → 200 to the client →
//! [`actors::router::EventsStored`] to the router.

pub mod actors;
pub mod api;
pub mod app;
pub mod config;
pub mod delivery;
pub mod metrics;
pub mod secret;
pub mod segment;
pub mod store;
