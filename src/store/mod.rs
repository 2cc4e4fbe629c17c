//! The durable store behind a narrow interface, with two backends: SQLite (the default:
//! one file, one instance) and PostgreSQL (any number of instances on one database).
//!
//! Everything webhookd promises rests here: an event is acknowledged only after
//! [`Store::append`] has committed it together with its pending deliveries, and the
//! delivery actors take their work from the store, never from memory alone. The
//! contract is backend-neutral: errors are [`StoreError`], every time is given by the
//! caller (the store never reads a clock), every domain decision (which destinations,
//! what a notification says, what a duplicate is) is made by the caller and carried in
//! the request. One suite of tests (`tests/it/contract.rs`) holds every backend to it.
//!
//! Work is shared by leases and claims. An instance holds a [`Lease`] on each
//! destination it drives (renewed by its heartbeat, taken over when the heartbeat
//! stops); a delivery actor [`Store::claim_due`]s due deliveries under that lease, for
//! longer than an attempt can take; [`Store::record_attempt`] counts only under the
//! claim. No two senders ever hold the same delivery, in one process or across several.

mod attempt_counts;
mod encoding;
mod error;
mod postgres;
mod sqlite;
mod types;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub(crate) use error::HealthCell;
pub use error::{StoreError, StoreHealth};
pub use postgres::PostgresStore;
pub use sqlite::{CommitObserver, SqliteStore};
pub use types::*;

use crate::config::{StorageBackend, StorageConfig};

/// What the store's operations return: a future that does not borrow the store.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

/// Opens the store `config` names: creates or migrates its schema, and refuses a schema
/// newer than this build knows. `on_commit` hears each commit's duration and how many
/// writes shared it (for metrics).
pub async fn open(
    config: &StorageConfig,
    on_commit: CommitObserver,
) -> Result<Arc<dyn Store>, StoreError> {
    match config.backend {
        StorageBackend::Sqlite => {
            let max_bytes = config.max_size_mb.map(|mb| mb * 1024 * 1024);
            let store = SqliteStore::open_observed(&config.path, max_bytes, on_commit)?;
            Ok(Arc::new(store))
        }
        StorageBackend::Postgres => {
            let store = PostgresStore::open(config, on_commit).await?;
            Ok(Arc::new(store))
        }
    }
}

/// The operations webhookd needs from durable storage.
pub trait Store: Send + Sync + 'static {
    /// Stores events and their pending deliveries in one transaction. Returns when the
    /// transaction is durable, one [`Appended`] per event in order. An event whose
    /// `(source, message_id)` was stored at or after its `dedupe_since_ms`, or whose user
    /// is suppressed in its source, is skipped. On a shared database the owners of the
    /// destinations written to hear [`ClusterSignal::Work`].
    fn append(&self, events: Vec<NewEvent>) -> StoreFuture<Vec<Appended>>;

    /// The latest stored event of `source` with `message_id`, if any.
    fn find_event(&self, source: &str, message_id: &str) -> StoreFuture<Option<StoredEvent>>;

    /// The latest `limit` events of `user_id`, newest first, in every source.
    fn events_of_user(&self, user_id: &str, limit: usize) -> StoreFuture<Vec<StoredEvent>>;

    /// The latest `limit` regulations, newest first.
    fn recent_regulations(&self, limit: usize) -> StoreFuture<Vec<Regulation>>;

    /// Claims up to `claim.limit` pending deliveries of the destination due at
    /// `claim.now_ms` and not claimed by anyone (or whose claim ran out), oldest first;
    /// nothing if the lease does not hold. Also says when the next delivery not yet due
    /// will be.
    fn claim_due(&self, claim: Claim) -> StoreFuture<DuePage>;

    /// Ends every claim of `claimer` (a delivery actor that restarted: its attempts died
    /// with it).
    fn release_claims(&self, claimer: &str) -> StoreFuture<()>;

    /// Records an attempt's requests and the delivery's new state, in one transaction,
    /// and ends the claim. A delivery no longer pending, or claimed by another since, is
    /// left as it is and the outcome dropped.
    fn record_attempt(&self, outcome: AttemptOutcome) -> StoreFuture<()>;

    /// The `(source, destination)` pairs that have pending deliveries.
    fn pending_destinations(&self) -> StoreFuture<Vec<DestinationKey>>;

    /// Those of `delivery_ids` still pending: a purged one is gone, a finished one
    /// delivered or dead.
    fn still_pending(&self, delivery_ids: Vec<i64>) -> StoreFuture<Vec<i64>>;

    /// The deliveries, with their attempts, of the latest event of `source` with `message_id`.
    fn deliveries_of(&self, source: &str, message_id: &str) -> StoreFuture<Vec<DeliveryStatus>>;

    /// Stores a regulation, not yet applied.
    fn add_regulation(&self, regulation: Regulation) -> StoreFuture<()>;

    /// Regulations stored but not yet applied, oldest first.
    fn unapplied_regulations(&self) -> StoreFuture<Vec<Regulation>>;

    /// Applies a regulation in one transaction, once: removes every stored event of its
    /// subjects in its sources (delivered or not) with their deliveries and attempts,
    /// records suppressions when asked, queues its notifications, and marks it applied.
    /// Applying it again does nothing. No event of a subject can be stored concurrently
    /// and escape it.
    fn apply_regulation(&self, plan: RegulationPlan) -> StoreFuture<RegulationApplied>;

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

    /// Makes the selected dead letters pending again, due at `now_ms`, with a fresh retry
    /// window and every URL to try; their attempt history stays. Returns the replayed
    /// deliveries' `(source, destination)` with how many each.
    fn replay_dead_letters(
        &self,
        selection: ReplaySelection,
        now_ms: i64,
    ) -> StoreFuture<Vec<(String, String, u64)>>;

    /// Moves what the store keeps for destination `from` of `source` to `to` (a
    /// destination renamed, with `from` in its `previous_names`): its deliveries in every
    /// state with their attempts (claims on them end), and its pause, controls and latest
    /// error where `to` has none of its own, its recent attempt counts added to `to`'s; the
    /// lease of `from` goes. Answers how many deliveries moved.
    fn rename_destination(&self, source: &str, from: &str, to: &str) -> StoreFuture<u64>;

    /// Pauses (or resumes) a destination; kept across restarts.
    fn set_paused(
        &self,
        source: &str,
        destination: &str,
        paused: bool,
        now_ms: i64,
    ) -> StoreFuture<()>;

    /// The paused `(source, destination)` pairs.
    fn paused_destinations(&self) -> StoreFuture<Vec<DestinationKey>>;

    /// How many deliveries to `destination` of `source` are still pending.
    fn pending_count(&self, source: &str, destination: &str) -> StoreFuture<u64>;

    /// Says this instance is alive, renews its leases, takes free ones up to its fair
    /// share of `wanted`, and names those beyond it to give back.
    fn heartbeat(&self, heartbeat: Heartbeat) -> StoreFuture<HeartbeatAnswer>;

    /// Gives these leases back (their actors have drained), for other instances to take.
    fn release_leases(&self, leases: Vec<Lease>) -> StoreFuture<()>;

    /// Every instance the registry knows, as of `now_ms`.
    fn instances(&self, now_ms: i64) -> StoreFuture<Vec<InstanceRecord>>;

    /// What the writes of the other instances on this store signal at their commit
    /// (this one hears its own writes directly), once: [`Store::append`], [`Store::replay_dead_letters`] and the
    /// notifications of [`Store::apply_regulation`] signal work for their destinations,
    /// a regulation the deliveries it purged, [`Store::set_paused`] the pause; after its
    /// connection to them was cut, [`ClusterSignal::Missed`]. `None` where the store has
    /// one instance, which hears its own writes directly.
    fn take_signals(&self) -> Option<tokio::sync::mpsc::Receiver<ClusterSignal>>;

    /// The stored decisions about every destination that has any.
    fn destination_controls(&self) -> StoreFuture<Vec<DestinationControl>>;

    /// Changes what is stored about `source`/`destination`; on a shared database its
    /// owner hears of it ([`ClusterSignal::Paused`] with `paused: false` for `Enabled`).
    fn change_control(
        &self,
        source: &str,
        destination: &str,
        change: ControlChange,
        now_ms: i64,
    ) -> StoreFuture<()>;

    /// Removes one step of finished work (events whose deliveries are all done or dead
    /// long enough, their deliveries and attempts; dedupe entries out of the window).
    /// Never anything pending, never a regulation or its notifications.
    fn prune(&self, prune: Prune) -> StoreFuture<Pruned>;

    /// Bytes the store takes.
    fn size_bytes(&self) -> StoreFuture<u64>;

    /// Whether writes succeed, as the latest ones found.
    fn health(&self) -> StoreHealth;

    /// Tries a write that needs new space and undoes it, to learn whether the store is
    /// writable again (after it was full or unreachable); updates [`Store::health`].
    fn probe(&self) -> StoreFuture<()>;

    /// Caps the store's size (`None`: no cap); writes past the cap fail as
    /// [`StoreError::Full`]. Takes effect for the next write. A database server's space
    /// is its own: there it does nothing.
    fn set_size_limit(&self, max_bytes: Option<u64>) -> StoreFuture<()>;

    /// Leaves the cluster (its leases free at once) and makes everything written durable
    /// in the store's own files, for a clean stop.
    fn shutdown(&self, instance: &str) -> StoreFuture<()>;
}
