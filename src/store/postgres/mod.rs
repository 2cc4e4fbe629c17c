//! The PostgreSQL store: any number of webhookd instances on one database.
//!
//! Acknowledged means committed: [`Store::append`] answers only after PostgreSQL has
//! committed the events with their deliveries (`synchronous_commit` as the server has it;
//! webhookd never turns it off). As on SQLite, appends are grouped: one writer task
//! takes every append waiting, writes all of them in one transaction with array inserts
//! (`INSERT … SELECT FROM unnest(…)`), commits once, then answers each. Dedupe is a
//! unique key (`dedupe`), updated in the same statement that tells duplicates apart;
//! suppressions are read in the same transaction, under a shared advisory lock that a
//! regulation takes exclusively, so no event of a deleted user slips past a deletion on
//! another instance.
//!
//! Everything runs on a small runtime of the store's own, whatever runtime the caller
//! is on: connection tasks never die with a caller's thread. Writes that other instances
//! must hear of send a `NOTIFY` in their transaction (delivered at commit, one per
//! transaction, not one per row); a dedicated connection outside the pool `LISTEN`s, and
//! reconnects by itself.

mod cluster;
mod control;
mod delivery;
mod ingest;
mod listen;
mod operations;
mod regulation;
mod schema;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

use super::{
    Appended, AttemptOutcome, AttemptRecord, Claim, ClusterSignal, CommitObserver, ControlChange,
    DeadLetter, DeadLetterQuery, DeliveryStatus, DestinationControl, DestinationKey,
    DestinationStats, DuePage, HealthCell, Heartbeat, HeartbeatAnswer, InstanceRecord, Lease,
    NewEvent, Prune, Pruned, Regulation, RegulationApplied, RegulationPlan, RegulationProgress,
    ReplaySelection, Store, StoreError, StoreFuture, StoreHealth, StoredEvent, Suppression,
};
use crate::config::StorageConfig;

/// The channel every instance listens on.
pub(super) const CHANNEL: &str = "webhookd";

/// This process's name on the channel (one PostgreSQL store per process).
pub(super) fn origin() -> &'static str {
    static ORIGIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(|| uuid::Uuid::new_v4().to_string())
}
/// A `NOTIFY` payload must stay under 8000 bytes.
const MAX_PAYLOAD: usize = 7_900;
/// Threads of the store's own runtime: the work is waiting on the database.
const RUNTIME_THREADS: usize = 2;
/// How long a caller waits for a pooled connection, and for a new one to open.
const POOL_WAIT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The store's own runtime, shut down without blocking when dropped (a store may be
/// dropped on another runtime, where blocking is not allowed).
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl OwnRuntime {
    fn get(&self) -> Option<&tokio::runtime::Runtime> {
        self.0.as_ref()
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// The PostgreSQL implementation of [`Store`].
pub struct PostgresStore {
    runtime: OwnRuntime,
    pool: Pool,
    appends: mpsc::Sender<ingest::AppendJob>,
    records: mpsc::Sender<delivery::RecordJob>,
    signals: std::sync::Mutex<Option<mpsc::Receiver<ClusterSignal>>>,
    health: Arc<HealthCell>,
}

impl PostgresStore {
    /// Connects to `config.url`, migrates the schema, starts the writer and the listener.
    pub async fn open(
        config: &StorageConfig,
        on_commit: CommitObserver,
    ) -> Result<PostgresStore, StoreError> {
        let url = config.url.as_ref().ok_or_else(|| StoreError::Open {
            path: "storage.url".into(),
            reason: "no URL given".into(),
        })?;
        let shown = url.redacted();
        let mut pg_config: tokio_postgres::Config =
            url.expose().parse().map_err(|_| StoreError::Open {
                path: shown.clone(),
                reason: "not a PostgreSQL URL (postgres://user:password@host:port/database)".into(),
            })?;
        pg_config
            .application_name("webhookd")
            .connect_timeout(CONNECT_TIMEOUT);
        let runtime = OwnRuntime(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(RUNTIME_THREADS)
                .thread_name("store-postgres")
                .enable_all()
                .build()
                .map_err(|e| StoreError::Open {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?,
        ));
        let rt = runtime.get().expect("just built");
        let build = |size: usize| {
            let manager = Manager::from_config(
                pg_config.clone(),
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(manager)
                .max_size(size)
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(POOL_WAIT))
                .create_timeout(Some(CONNECT_TIMEOUT))
                .build()
                .map_err(|e| StoreError::Open {
                    path: shown.clone(),
                    reason: e.to_string(),
                })
        };
        let pool = build(config.pool_size)?;
        // Ingest has a connection of its own: acknowledgements never queue behind the
        // delivery actors' claims for a pooled connection.
        let append_pool = build(1)?;
        let migrated = {
            let pool = pool.clone();
            rt.spawn(async move {
                let mut client = pool.get().await.map_err(pool_error)?;
                schema::migrate(&mut client).await
            })
            .await
            .map_err(|_| StoreError::Closed)?
        };
        migrated.map_err(|e| match e {
            StoreError::SchemaTooNew { .. } => e,
            other => StoreError::Open {
                path: shown.clone(),
                reason: other.to_string(),
            },
        })?;
        let (appends, queue) = mpsc::channel(ingest::QUEUE_CAPACITY);
        rt.spawn(ingest::write_loop(append_pool, queue, on_commit));
        let (records, record_queue) = mpsc::channel(delivery::RECORD_QUEUE_CAPACITY);
        rt.spawn(delivery::record_loop(pool.clone(), record_queue));
        let (signal_tx, signal_rx) = mpsc::channel(listen::SIGNAL_CAPACITY);
        let (listening_tx, listening) = tokio::sync::oneshot::channel();
        rt.spawn(listen::listen_loop(pg_config, signal_tx, listening_tx));
        let listening = rt.spawn(tokio::time::timeout(CONNECT_TIMEOUT, listening));
        if !matches!(listening.await, Ok(Ok(Ok(())))) {
            return Err(StoreError::Open {
                path: shown,
                reason: format!(
                    "cannot LISTEN on {CHANNEL} within {} s: without it this instance would not \
                     hear other instances' cancellations",
                    CONNECT_TIMEOUT.as_secs()
                ),
            });
        }
        Ok(PostgresStore {
            runtime,
            pool,
            appends,
            records,
            signals: std::sync::Mutex::new(Some(signal_rx)),
            health: Arc::new(HealthCell::new()),
        })
    }

    /// Runs `op` with the pool on the store's runtime. `grows`: a success proves the
    /// database writable ([`Store::health`]).
    fn run<T, F, Fut>(&self, grows: bool, op: F) -> StoreFuture<T>
    where
        T: Send + 'static,
        F: FnOnce(Pool) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let pool = self.pool.clone();
        let health = Arc::clone(&self.health);
        let task = self
            .runtime
            .get()
            .map(|rt| rt.spawn(async move { op(pool).await }));
        Box::pin(async move {
            let result = match task {
                Some(task) => task.await.map_err(|_| StoreError::Closed)?,
                None => Err(StoreError::Closed),
            };
            health.observe(&result, grows);
            result
        })
    }
}

/// A PostgreSQL error in the store's terms: a server that cannot be reached or is going
/// away is unavailable (try again later), a full disk is full; the rest is the backend's.
pub(super) fn pg_error(e: tokio_postgres::Error) -> StoreError {
    let Some(db) = e.as_db_error() else {
        // No SQLSTATE: the connection failed or closed (an I/O error, a timeout), or
        // the query could not be sent as written (a bug of ours).
        let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
        let text = e.to_string();
        if e.is_closed() || io || text.starts_with("error connecting") || text.contains("timeout") {
            return StoreError::Unavailable(text);
        }
        return StoreError::Backend(text);
    };
    // The server's own words: tokio-postgres's `Display` says only "db error".
    let text = format!("{} ({})", db.message(), db.code().code());
    let code = db.code();
    if *code == SqlState::DISK_FULL
        || *code == SqlState::INSUFFICIENT_RESOURCES
        || *code == SqlState::OUT_OF_MEMORY
    {
        return StoreError::Full;
    }
    let class = &code.code()[..2];
    // 08: connection exception; 57: operator intervention (shutdown, cannot connect now);
    // 53: other insufficient resources (too many connections); 25006: read-only standby.
    if matches!(class, "08" | "57" | "53") || *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        return StoreError::Unavailable(text);
    }
    StoreError::Backend(text)
}

pub(super) fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => pg_error(e),
        PoolError::Closed => StoreError::Closed,
        other => StoreError::Unavailable(format!("no connection to PostgreSQL: {other}")),
    }
}

/// What travels on the channel: a signal and the store it came from, so that a store
/// does not hear its own writes (its instance knows of them already).
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Envelope {
    pub origin: String,
    pub signal: ClusterSignal,
}

/// `NOTIFY` payloads for `signal` from `origin`, each under the size limit (a long list
/// is split).
pub(super) fn notify_payloads(origin: &str, signal: &ClusterSignal) -> Vec<String> {
    let envelope = Envelope {
        origin: origin.to_string(),
        signal: signal.clone(),
    };
    let whole = serde_json::to_string(&envelope).unwrap_or_default();
    if whole.len() <= MAX_PAYLOAD {
        return vec![whole];
    }
    let halves = match signal {
        ClusterSignal::Work(keys) if keys.len() > 1 => {
            let (a, b) = keys.split_at(keys.len() / 2);
            [
                ClusterSignal::Work(a.to_vec()),
                ClusterSignal::Work(b.to_vec()),
            ]
        }
        ClusterSignal::Cancel(purged) if purged.len() > 1 => {
            let (a, b) = purged.split_at(purged.len() / 2);
            [
                ClusterSignal::Cancel(a.to_vec()),
                ClusterSignal::Cancel(b.to_vec()),
            ]
        }
        // One key that long cannot be sent; its owner finds the work on its next poll.
        _ => return Vec::new(),
    };
    halves
        .iter()
        .flat_map(|half| notify_payloads(origin, half))
        .collect()
}

/// Sends `signal` in `tx`: delivered to every other store's listener when `tx` commits.
pub(super) async fn notify(
    tx: &deadpool_postgres::Transaction<'_>,
    signal: &ClusterSignal,
) -> Result<(), StoreError> {
    for payload in notify_payloads(origin(), signal) {
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
            .await
            .map_err(pg_error)?;
    }
    Ok(())
}

const EVENT_COLUMNS: &str = "id, source, message_id, user_id, type, received_at, body";

fn event_from_row(row: &tokio_postgres::Row) -> StoredEvent {
    StoredEvent {
        event_id: row.get(0),
        source: row.get(1),
        message_id: row.get(2),
        user_id: row.get(3),
        event_type: row.get(4),
        received_at_ms: row.get(5),
        body: row.get(6),
    }
}

impl Store for PostgresStore {
    fn append(&self, events: Vec<NewEvent>) -> StoreFuture<Vec<Appended>> {
        let appends = self.appends.clone();
        let health = Arc::clone(&self.health);
        Box::pin(async move {
            let (reply, answer) = tokio::sync::oneshot::channel();
            appends
                .send(ingest::AppendJob { events, reply })
                .await
                .map_err(|_| StoreError::Closed)?;
            let result = answer.await.map_err(|_| StoreError::Closed)?;
            health.observe(&result, true);
            result
        })
    }

    fn find_event(&self, source: &str, message_id: &str) -> StoreFuture<Option<StoredEvent>> {
        let (source, message_id) = (source.to_string(), message_id.to_string());
        self.run(false, move |pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            let row = client
                .query_opt(
                    &format!(
                        "SELECT {EVENT_COLUMNS} FROM events WHERE source = $1 AND message_id = $2
                         ORDER BY id DESC LIMIT 1"
                    ),
                    &[&source, &message_id],
                )
                .await
                .map_err(pg_error)?;
            Ok(row.as_ref().map(event_from_row))
        })
    }

    fn events_of_user(&self, user_id: &str, limit: usize) -> StoreFuture<Vec<StoredEvent>> {
        let user_id = user_id.to_string();
        self.run(false, move |pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            let rows = client
                .query(
                    &format!(
                        "SELECT {EVENT_COLUMNS} FROM events WHERE user_id = $1
                         ORDER BY id DESC LIMIT $2"
                    ),
                    &[&user_id, &(limit as i64)],
                )
                .await
                .map_err(pg_error)?;
            Ok(rows.iter().map(event_from_row).collect())
        })
    }

    fn recent_regulations(&self, limit: usize) -> StoreFuture<Vec<Regulation>> {
        self.run(false, move |pool| regulation::recent(pool, limit))
    }

    fn claim_due(&self, claim: Claim) -> StoreFuture<DuePage> {
        self.run(false, move |pool| delivery::claim_due(pool, claim))
    }

    fn release_claims(&self, claimer: &str) -> StoreFuture<()> {
        let claimer = claimer.to_string();
        self.run(false, move |pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            client
                .execute(
                    "UPDATE deliveries SET claimed_by = NULL, claim_until = NULL
                     WHERE claimed_by = $1 AND state = 'pending'",
                    &[&claimer],
                )
                .await
                .map_err(pg_error)?;
            Ok(())
        })
    }

    fn record_attempt(&self, outcome: AttemptOutcome) -> StoreFuture<()> {
        let records = self.records.clone();
        let health = Arc::clone(&self.health);
        Box::pin(async move {
            let (reply, answer) = tokio::sync::oneshot::channel();
            records
                .send(delivery::RecordJob { outcome, reply })
                .await
                .map_err(|_| StoreError::Closed)?;
            let result = answer.await.map_err(|_| StoreError::Closed)?;
            health.observe(&result, true);
            result
        })
    }

    fn pending_destinations(&self) -> StoreFuture<Vec<DestinationKey>> {
        self.run(false, |pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            let rows = client
                .query(
                    "SELECT DISTINCT source, destination FROM deliveries WHERE state = 'pending'",
                    &[],
                )
                .await
                .map_err(pg_error)?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn still_pending(&self, delivery_ids: Vec<i64>) -> StoreFuture<Vec<i64>> {
        self.run(false, move |pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            let rows = client
                .query(
                    "SELECT id FROM deliveries WHERE id = ANY($1) AND state = 'pending'",
                    &[&delivery_ids],
                )
                .await
                .map_err(pg_error)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn deliveries_of(&self, source: &str, message_id: &str) -> StoreFuture<Vec<DeliveryStatus>> {
        let (source, message_id) = (source.to_string(), message_id.to_string());
        self.run(false, move |pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            let rows = client
                .query(
                    "SELECT d.id, d.destination, d.state, d.attempts, d.next_attempt_at, d.last_error
                     FROM deliveries d
                     WHERE d.event_id = (SELECT max(id) FROM events WHERE source = $1 AND message_id = $2)
                     ORDER BY d.id",
                    &[&source, &message_id],
                )
                .await
                .map_err(pg_error)?;
            let mut statuses: Vec<DeliveryStatus> = rows
                .iter()
                .map(|row| DeliveryStatus {
                    delivery_id: row.get(0),
                    destination: row.get(1),
                    state: row.get(2),
                    attempt_count: row.get::<_, i32>(3) as u32,
                    next_attempt_at_ms: row.get(4),
                    last_error: row.get(5),
                    attempts: Vec::new(),
                })
                .collect();
            let ids: Vec<i64> = statuses.iter().map(|s| s.delivery_id).collect();
            let attempts = client
                .query(
                    "SELECT delivery_id, attempted_at, url, status, error, latency_ms, response_body
                     FROM attempts WHERE delivery_id = ANY($1) ORDER BY id",
                    &[&ids],
                )
                .await
                .map_err(pg_error)?;
            for row in attempts {
                let delivery_id: i64 = row.get(0);
                if let Some(status) = statuses.iter_mut().find(|s| s.delivery_id == delivery_id) {
                    status.attempts.push(AttemptRecord {
                        attempted_at_ms: row.get(1),
                        url: row.get(2),
                        status: row.get::<_, Option<i32>>(3).map(|s| s as u16),
                        error: row.get(4),
                        latency_ms: row.get::<_, i64>(5) as u64,
                        response_body: row.get(6),
                    });
                }
            }
            Ok(statuses)
        })
    }

    fn add_regulation(&self, regulation: Regulation) -> StoreFuture<()> {
        self.run(true, move |pool| regulation::add(pool, regulation))
    }

    fn unapplied_regulations(&self) -> StoreFuture<Vec<Regulation>> {
        self.run(false, regulation::unapplied)
    }

    fn apply_regulation(&self, plan: RegulationPlan) -> StoreFuture<RegulationApplied> {
        self.run(true, move |pool| regulation::apply(pool, plan))
    }

    fn regulation_progress(&self, id: &str) -> StoreFuture<Option<RegulationProgress>> {
        let id = id.to_string();
        self.run(false, move |pool| regulation::progress(pool, id))
    }

    fn suppressions(&self) -> StoreFuture<Vec<Suppression>> {
        self.run(false, regulation::suppressions)
    }

    fn lift_suppression(&self, source: &str, user_id: &str) -> StoreFuture<bool> {
        let (source, user_id) = (source.to_string(), user_id.to_string());
        self.run(false, move |pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            let removed = client
                .execute(
                    "DELETE FROM suppressions WHERE source = $1 AND user_id = $2",
                    &[&source, &user_id],
                )
                .await
                .map_err(pg_error)?;
            Ok(removed > 0)
        })
    }

    fn destination_stats(&self, now_ms: i64) -> StoreFuture<Vec<DestinationStats>> {
        self.run(false, move |pool| {
            operations::destination_stats(pool, now_ms)
        })
    }

    fn dead_letters(&self, query: DeadLetterQuery) -> StoreFuture<Vec<DeadLetter>> {
        self.run(false, move |pool| operations::dead_letters(pool, query))
    }

    fn replay_dead_letters(
        &self,
        selection: ReplaySelection,
        now_ms: i64,
    ) -> StoreFuture<Vec<(String, String, u64)>> {
        self.run(false, move |pool| {
            operations::replay(pool, selection, now_ms)
        })
    }

    fn rename_destination(&self, source: &str, from: &str, to: &str) -> StoreFuture<u64> {
        let (source, from, to) = (source.to_string(), from.to_string(), to.to_string());
        self.run(false, move |pool| {
            operations::rename_destination(pool, source, from, to)
        })
    }

    fn set_paused(
        &self,
        source: &str,
        destination: &str,
        paused: bool,
        now_ms: i64,
    ) -> StoreFuture<()> {
        let key = (source.to_string(), destination.to_string());
        self.run(false, move |pool| {
            operations::set_paused(pool, key, paused, now_ms)
        })
    }

    fn paused_destinations(&self) -> StoreFuture<Vec<DestinationKey>> {
        self.run(false, |pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            let rows = client
                .query("SELECT source, destination FROM paused_destinations", &[])
                .await
                .map_err(pg_error)?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn pending_count(&self, source: &str, destination: &str) -> StoreFuture<u64> {
        let (source, destination) = (source.to_string(), destination.to_string());
        self.run(false, move |pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            let count: i64 = client
                .query_one(
                    "SELECT count(*) FROM deliveries
                     WHERE source = $1 AND destination = $2 AND state = 'pending'",
                    &[&source, &destination],
                )
                .await
                .map_err(pg_error)?
                .get(0);
            Ok(count as u64)
        })
    }

    fn heartbeat(&self, heartbeat: Heartbeat) -> StoreFuture<HeartbeatAnswer> {
        self.run(false, move |pool| cluster::heartbeat(pool, heartbeat))
    }

    fn release_leases(&self, leases: Vec<Lease>) -> StoreFuture<()> {
        self.run(false, move |pool| cluster::release(pool, leases))
    }

    fn instances(&self, now_ms: i64) -> StoreFuture<Vec<InstanceRecord>> {
        self.run(false, move |pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            cluster::instances(&client, now_ms).await
        })
    }

    fn take_signals(&self) -> Option<mpsc::Receiver<ClusterSignal>> {
        self.signals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    fn destination_controls(&self) -> StoreFuture<Vec<DestinationControl>> {
        self.run(false, control::controls)
    }

    fn change_control(
        &self,
        source: &str,
        destination: &str,
        change: ControlChange,
        _now_ms: i64,
    ) -> StoreFuture<()> {
        let (source, destination) = (source.to_string(), destination.to_string());
        self.run(false, move |pool| {
            control::change(pool, source, destination, change)
        })
    }

    fn prune(&self, prune: Prune) -> StoreFuture<Pruned> {
        self.run(false, move |pool| control::prune(pool, prune))
    }

    fn size_bytes(&self) -> StoreFuture<u64> {
        self.run(false, control::size_bytes)
    }

    fn health(&self) -> StoreHealth {
        self.health.get()
    }

    fn probe(&self) -> StoreFuture<()> {
        let probe = self.run(false, |pool| async move {
            let mut client = pool.get().await.map_err(pool_error)?;
            let tx = client.transaction().await.map_err(pg_error)?;
            tx.execute(
                "INSERT INTO write_probe (b) VALUES (decode(repeat('00', 16384), 'hex'))",
                &[],
            )
            .await
            .map_err(pg_error)?;
            tx.rollback().await.map_err(pg_error)
        });
        HealthCell::observing_probe(&self.health, probe)
    }

    fn set_size_limit(&self, _max_bytes: Option<u64>) -> StoreFuture<()> {
        // The database server's disk is its own to manage.
        Box::pin(async { Ok(()) })
    }

    fn shutdown(&self, instance: &str) -> StoreFuture<()> {
        let instance = instance.to_string();
        self.run(false, move |pool| cluster::leave(pool, instance))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::PurgedDelivery;

    #[test]
    fn long_signals_are_split_under_the_payload_limit() {
        let keys: Vec<DestinationKey> = (0..2_000)
            .map(|i| (format!("source-{i}"), format!("destination-{i}")))
            .collect();
        let payloads = notify_payloads("me", &ClusterSignal::Work(keys.clone()));
        assert!(payloads.len() > 1);
        assert!(payloads.iter().all(|p| p.len() <= MAX_PAYLOAD));
        let back: Vec<DestinationKey> = payloads
            .iter()
            .flat_map(
                |p| match serde_json::from_str::<Envelope>(p).unwrap().signal {
                    ClusterSignal::Work(keys) => keys,
                    other => panic!("{other:?}"),
                },
            )
            .collect();
        assert_eq!(back, keys);
        let cancel = ClusterSignal::Cancel(vec![PurgedDelivery {
            source: "s".into(),
            destination: "d".into(),
            delivery_id: 7,
        }]);
        assert_eq!(notify_payloads("me", &cancel).len(), 1);
    }
}
