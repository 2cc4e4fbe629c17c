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

pub use sqlite::{CommitObserver, SqliteStore};

/// What the store's operations return: a future that does not borrow the store.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

/// An accepted event to store, with the destinations it must be delivered to.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub source: String,
    pub message_id: String,
    /// The `messageId` was made by webhookd: no dedupe lookup is needed.
    pub message_id_generated: bool,
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
    /// The event's user is suppressed in its source: nothing written.
    Suppressed,
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

/// A pending delivery whose time has come, with what is needed to attempt it.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub delivery_id: i64,
    pub event_id: i64,
    pub message_id: String,
    /// The canonical JSON body to send.
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the first attempt was made; the retry window counts from here.
    pub first_attempt_at_ms: Option<i64>,
    /// Bit i set: URL i of the destination may still be tried.
    pub retry_urls: u32,
}

/// The due deliveries of one destination, and when the next one not yet due will be.
#[derive(Debug, Clone, Default)]
pub struct DuePage {
    pub due: Vec<DueDelivery>,
    pub next_due_at_ms: Option<i64>,
}

/// One request to one URL, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub attempted_at_ms: i64,
    pub url: String,
    /// The HTTP status, when a response came.
    pub status: Option<u16>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    pub latency_ms: u64,
    /// The first 1 KB of the response body.
    pub response_body: Option<String>,
}

/// What becomes of a delivery after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryUpdate {
    /// A URL answered 2xx: done.
    Delivered,
    /// Try again at `at_ms`, on the URLs whose bits are set in `retry_urls`.
    RetryAt { at_ms: i64, retry_urls: u32 },
    /// No more tries: the retry window is over or no URL is worth retrying.
    Dead { reason: String },
}

/// One attempt of one delivery: the requests made and what follows.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    pub delivery_id: i64,
    pub first_attempt_at_ms: i64,
    pub attempts: Vec<AttemptRecord>,
    pub update: DeliveryUpdate,
}

/// A delivery's state and its attempts, for operators and tests.
#[derive(Debug, Clone)]
pub struct DeliveryStatus {
    pub delivery_id: i64,
    pub destination: String,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    pub attempt_count: u32,
    pub next_attempt_at_ms: i64,
    pub last_error: Option<String>,
    pub attempts: Vec<AttemptRecord>,
}

/// What a deletion request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegulationType {
    /// Purge the users' undelivered events and notify the webhooks.
    DeleteOnly,
    /// As `DeleteOnly`, and drop the users' later events at ingest.
    SuppressWithDelete,
}

impl RegulationType {
    pub fn as_str(self) -> &'static str {
        match self {
            RegulationType::DeleteOnly => "DELETE_ONLY",
            RegulationType::SuppressWithDelete => "SUPPRESS_WITH_DELETE",
        }
    }

    pub fn from_name(name: &str) -> Option<RegulationType> {
        match name {
            "DELETE_ONLY" => Some(RegulationType::DeleteOnly),
            "SUPPRESS_WITH_DELETE" => Some(RegulationType::SuppressWithDelete),
            _ => None,
        }
    }
}

/// A user deletion request, as accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regulation {
    pub id: String,
    pub regulation_type: RegulationType,
    /// The `userId`s to delete.
    pub subject_ids: Vec<String>,
    /// The sources it covers; `None`: all of them.
    pub sources: Option<Vec<String>>,
    pub created_at_ms: i64,
    /// When it was applied (purge, suppression, notifications); `None` until then.
    pub applied_at_ms: Option<i64>,
}

/// How to apply a regulation, resolved against the configuration.
#[derive(Debug, Clone)]
pub struct RegulationPlan {
    pub regulation_id: String,
    pub suppress: bool,
    pub subject_ids: Vec<String>,
    /// Each covered source, with its enabled destinations (notified once per subject).
    pub sources: Vec<(String, Vec<String>)>,
}

/// A pending delivery removed by a regulation, for its actor to drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgedDelivery {
    pub source: String,
    pub destination: String,
    pub delivery_id: i64,
}

/// How far a regulation's notifications have got at one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationProgress {
    pub source: String,
    pub destination: String,
    pub total: u64,
    pub delivered: u64,
    pub pending: u64,
    pub dead: u64,
}

/// A regulation and its progress.
#[derive(Debug, Clone)]
pub struct RegulationProgress {
    pub regulation: Regulation,
    /// Undelivered deliveries removed when it was applied.
    pub purged_deliveries: u64,
    pub notifications: Vec<NotificationProgress>,
}

/// A user whose events a source drops at ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    pub source: String,
    pub user_id: String,
    pub regulation_id: String,
    pub created_at_ms: i64,
}

/// One destination's backlog and health, as the store knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationStats {
    pub source: String,
    pub destination: String,
    /// Deliveries waiting (queue depth).
    pub pending: u64,
    pub dead: u64,
    /// `receivedAt` of the oldest pending delivery's event.
    pub oldest_pending_received_at_ms: Option<i64>,
    pub attempts_last_hour: u64,
    /// Requests answered 2xx in the last hour.
    pub successes_last_hour: u64,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<i64>,
    pub paused: bool,
}

/// Which dead letters to list: all filters optional, `after_id` pages on.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterQuery {
    pub source: Option<String>,
    pub destination: Option<String>,
    /// Dead-lettered at or after this time.
    pub since_ms: Option<i64>,
    /// Dead-lettered before this time.
    pub until_ms: Option<i64>,
    /// Only deliveries with a larger id (the previous page's last).
    pub after_id: Option<i64>,
    pub limit: usize,
}

/// A dead-lettered delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub delivery_id: i64,
    pub source: String,
    pub destination: String,
    pub message_id: String,
    pub event_type: String,
    pub attempt_count: u32,
    pub last_error: Option<String>,
    pub dead_at_ms: i64,
    pub first_attempt_at_ms: Option<i64>,
}

/// Which dead letters to replay.
#[derive(Debug, Clone)]
pub enum ReplaySelection {
    /// These deliveries (those not dead are left alone).
    Ids(Vec<i64>),
    /// One destination's dead letters, dead-lettered within the optional time range.
    Destination {
        source: String,
        destination: String,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
    },
}

/// Why a store operation failed, in terms every backend shares.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store has no space left for this write; it may have again later.
    #[error("the store is out of space")]
    Full,
    /// The store cannot be written or reached now (read-only files, an I/O error, a
    /// database server that is down); worth trying again later.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// Any other failure of the backend.
    #[error("store error: {0}")]
    Backend(String),
    #[error("cannot open the store at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("commit failed: {0}")]
    CommitFailed(String),
    #[error("the store has shut down")]
    Closed,
}

/// Whether the store takes writes, as its latest writes found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreHealth {
    Writable,
    /// Out of space: writes that need more fail until space returns.
    Full,
    /// Cannot be written or reached, for this reason.
    Unavailable(String),
}

impl StoreHealth {
    pub fn is_writable(&self) -> bool {
        *self == StoreHealth::Writable
    }

    /// Why writes fail, for operators; `None` while writable.
    pub fn problem(&self) -> Option<String> {
        match self {
            StoreHealth::Writable => None,
            StoreHealth::Full => Some(StoreError::Full.to_string()),
            StoreHealth::Unavailable(why) => Some(format!("the store is unavailable: {why}")),
        }
    }
}

/// A backend's record of its health, updated by the outcome of each write.
#[derive(Debug)]
pub(crate) struct HealthCell(std::sync::Mutex<StoreHealth>);

impl HealthCell {
    pub(crate) fn new() -> HealthCell {
        HealthCell(std::sync::Mutex::new(StoreHealth::Writable))
    }

    pub(crate) fn get(&self) -> StoreHealth {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub(crate) fn set(&self, health: StoreHealth) {
        let mut current = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *current != health {
            match health.problem() {
                Some(problem) => log::error!("store: writes fail: {problem}"),
                None => log::info!("store: writable again"),
            }
            *current = health;
        }
    }

    /// Learns from the result of a write: `grows` says whether it needed new space, so
    /// that its success proves the store writable again.
    pub(crate) fn observe<T>(&self, result: &Result<T, StoreError>, grows: bool) {
        match result {
            Err(StoreError::Full) => self.set(StoreHealth::Full),
            Err(StoreError::Unavailable(why)) => self.set(StoreHealth::Unavailable(why.clone())),
            Ok(_) if grows => self.set(StoreHealth::Writable),
            _ => {}
        }
    }
}

/// The operations webhookd needs from durable storage.
pub trait Store: Send + Sync + 'static {
    /// Stores events and their pending deliveries in one transaction. Returns when the
    /// transaction is durable, one [`Appended`] per event in order. An event whose
    /// `(source, message_id)` was stored within the dedupe window is skipped.
    fn append(&self, events: Vec<NewEvent>) -> StoreFuture<Vec<Appended>>;

    /// The stored event of `source` with `message_id`, if any.
    fn find_event(&self, source: &str, message_id: &str) -> StoreFuture<Option<StoredEvent>>;

    /// Up to `limit` pending deliveries of `destination` due at `now_ms`, oldest first.
    fn due_deliveries(
        &self,
        source: &str,
        destination: &str,
        now_ms: i64,
        limit: usize,
    ) -> StoreFuture<DuePage>;

    /// Records an attempt's requests and the delivery's new state, in one transaction.
    /// A delivery that is no longer pending (purged, finished) is left as it is.
    fn record_attempt(&self, outcome: AttemptOutcome) -> StoreFuture<()>;

    /// The `(source, destination)` pairs that have pending deliveries.
    fn pending_destinations(&self) -> StoreFuture<Vec<(String, String)>>;

    /// The deliveries, with their attempts, of the latest event of `source` with `message_id`.
    fn deliveries_of(&self, source: &str, message_id: &str) -> StoreFuture<Vec<DeliveryStatus>>;

    /// Stores a regulation, not yet applied.
    fn add_regulation(&self, regulation: Regulation) -> StoreFuture<()>;

    /// Regulations stored but not yet applied, oldest first.
    fn unapplied_regulations(&self) -> StoreFuture<Vec<Regulation>>;

    /// Applies a regulation in one transaction: removes the undelivered events of its
    /// users in its sources, records suppressions, adds one `delete` notification per
    /// subject and destination, and marks it applied. Applying it again does nothing.
    fn apply_regulation(&self, plan: RegulationPlan) -> StoreFuture<Vec<PurgedDelivery>>;

    /// A regulation with the progress of its notifications.
    fn regulation_progress(&self, id: &str) -> StoreFuture<Option<RegulationProgress>>;

    /// Every suppression in force.
    fn suppressions(&self) -> StoreFuture<Vec<Suppression>>;

    /// Lifts the suppression of `user_id` in `source`; false when there was none.
    fn lift_suppression(&self, source: &str, user_id: &str) -> StoreFuture<bool>;

    /// Backlog and health of every destination that has deliveries or is paused.
    fn destination_stats(&self, now_ms: i64) -> StoreFuture<Vec<DestinationStats>>;

    /// Dead letters matching `query`, oldest id first.
    fn dead_letters(&self, query: DeadLetterQuery) -> StoreFuture<Vec<DeadLetter>>;

    /// Makes the selected dead letters pending again, due now, with a fresh retry window
    /// and every URL to try; their attempt history stays. Returns the replayed deliveries'
    /// `(source, destination)` with how many each.
    fn replay_dead_letters(
        &self,
        selection: ReplaySelection,
    ) -> StoreFuture<Vec<(String, String, u64)>>;

    /// Pauses (or resumes) a destination; kept across restarts.
    fn set_paused(&self, source: &str, destination: &str, paused: bool) -> StoreFuture<()>;

    /// The paused `(source, destination)` pairs.
    fn paused_destinations(&self) -> StoreFuture<Vec<(String, String)>>;

    /// Copies the write-ahead log into the database file, for a clean shutdown.
    fn checkpoint(&self) -> StoreFuture<()>;

    /// How many deliveries to `destination` of `source` are still pending.
    fn pending_count(&self, source: &str, destination: &str) -> StoreFuture<u64>;

    /// Whether writes succeed, as the latest ones found.
    fn health(&self) -> StoreHealth;

    /// Tries a write that needs new space and undoes it, to learn whether the store is
    /// writable again (after it was full or unreachable); updates [`Store::health`].
    fn probe(&self) -> StoreFuture<()>;

    /// Caps the store's size (`None`: no cap); writes past the cap fail as
    /// [`StoreError::Full`]. Takes effect for the next write.
    fn set_size_limit(&self, max_bytes: Option<u64>) -> StoreFuture<()>;
}
