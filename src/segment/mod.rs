//! The Segment event model: event types, validation and enrichment, and the canonical
//! JSON that webhooks receive and signatures cover.

pub mod canonical;
pub mod event;
pub mod fql;
pub mod js;
pub mod mapping;
pub mod time;

pub use canonical::{object_to_canonical_json, to_canonical_json};
pub use event::{
    integration_enabled, prepare, BatchDefaults, EventError, EventType, PreparedEvent, RequestFacts,
};
