//! webhookd: a self-hosted, drop-in replacement for Segment's Webhooks destination.
//!
//! Apps send events as to Segment's HTTP Tracking API; webhookd stores each durably and
//! delivers it to the webhooks configured for its source.
//!
//! Layout:
//! - [`app`]: wiring. Opens the store, starts the actors and the HTTP server; signals
//!   (SIGTERM drains and stops, SIGHUP reloads).
//! - [`config`]: the configuration file, documented field by field, and its validation.
//! - [`api`]: the HTTP API (ingest, admin, health, metrics, `/openapi.json`) and its JSON
//!   errors; handlers only translate HTTP.
//! - [`ingest`]: taking events in: validate, choose destinations, store, tell the router.
//! - [`segment`]: the event model: validation, enrichment, canonical JSON.
//! - [`store`]: the durable store interface and its SQLite implementation (group commit).
//! - [`actors`]: the router, one delivery actor per destination, the deletion actor; each
//!   under an actix supervisor.
//! - [`delivery`]: pure parts of delivery: signing, outcome classification, backoff, the
//!   HTTP client.
//! - [`metrics`]: the Prometheus registry.
//! - [`secret`]: secrets that never print and compare in constant time.
//!
//! Flow of one event: HTTP handler → [`ingest::IngestService`]: validate and enrich → [`store::Store::append`]
//! (committed with one pending delivery per enabled destination) → 200 to the client →
//! [`actors::router::EventsStored`] to the router → `WorkAvailable` to the destination's
//! delivery actor → due deliveries paged in from the store → requests → the attempt and
//! the delivery's new state committed together.

pub mod actors;
pub mod api;
pub mod app;
pub mod clock;
pub mod config;
pub mod delivery;
#[doc(hidden)]
pub mod fuzzing;
pub mod ingest;
pub mod listen;
pub mod metrics;
pub mod redact;
pub mod secret;
pub mod segment;
pub mod store;
