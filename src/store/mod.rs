//! The durable store behind a narrow interface.
//!
//! Everything webhookd promises rests here: an event is acknowledged only after
//! [`Store::append`] has committed it together with its pending deliveries, and the
//! delivery actors take their work from the store, never from memory alone. The
//! interface is small so that another backend (PostgreSQL, for several instances) can
//! replace [`SqliteStore`] without touching the actors or the API.

mod sqlite;

use std::future::Future;
use std::pin::Pin;

pub use sqlite::SqliteStore;

/// What the store's operations return: a future that does not borrow the store.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

/// An accepted event to store, with the destinations it must be delivered to.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub source: String,
    pub message_id: String,
    pub user_id: Option<String>,
    pub event_type: &'static str,
    /// `receivedAt` in milliseconds since the Unix epoch.
    pub received_at_ms: i64,
    /// The canonical JSON body webhooks receive.
    pub body: String,
    /// Names of the source's enabled destinations: one pending delivery each.
    pub destinations: Vec<String>,
}

/// The fate of one appended event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Committed, with this id.
    Stored { event_id: i64 },
    /// The same `(source, messageId)` was stored within the dedupe window: nothing written.
    Duplicate,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub event_id: i64,
    pub source: String,
    pub message_id: String,
    pub user_id: Option<String>,
    pub event_type: String,
    pub received_at_ms: i64,
    pub body: String,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is out of space")]
    Full,
    #[error("store error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot open the store at {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("commit failed: {0}")]
    CommitFailed(String),
    #[error("the store has shut down")]
    Closed,
}

/// The operations webhookd needs from durable storage.
pub trait Store: Send + Sync + 'static {
    /// Stores events and their pending deliveries in one transaction. Returns when the
    /// transaction is durable, one [`Appended`] per event in order. An event whose
    /// `(source, message_id)` was stored within the dedupe window is skipped.
    fn append(&self, events: Vec<NewEvent>) -> StoreFuture<Vec<Appended>>;

    /// The stored event of `source` with `message_id`, if any.
    fn find_event(&self, source: &str, message_id: &str) -> StoreFuture<Option<StoredEvent>>;

    /// How many deliveries to `destination` of `source` are still pending.
    fn pending_count(&self, source: &str, destination: &str) -> StoreFuture<u64>;
}
