//! The SQLite store: one writer thread with group commit, and a few reader threads.
//!
//! SQLite in WAL mode with `synchronous = FULL`: a commit is on disk when it returns, so
//! an acknowledged event survives `kill -9` and power loss. Each commit costs an fsync,
//! so writes are not committed one by one: every write is a job sent to the writer
//! thread, which takes all the jobs waiting (up to [`MAX_JOBS_PER_COMMIT`]), runs each
//! inside its own savepoint of one transaction, commits once, and only then answers each
//! job. Many concurrent requests thus share one fsync (group commit). A job that fails
//! is rolled back to its savepoint alone; a commit that fails fails every job in it.
//! Attempt outcomes go further: those handed in while the writer is busy share one job
//! ([`recording`]).
//!
//! Checkpoints (copying the WAL into the database file) run mostly on a thread of their
//! own, so that their random writes do not sit inside the commits requests wait on.
//!
//! One process at a time: opening takes an exclusive lock on `<path>.lock`, held until
//! the process ends, so that a second webhookd on the same file refuses to start rather
//! than deliver everything twice.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

mod cluster;
mod control;
mod delivery;
mod ingest;
mod key_filter;
mod message_keys;
mod operations;
mod recording;
mod regulation;
mod schema;
mod user_events;

use message_keys::RecentKeys;

use super::{
    Appended, AttemptOutcome, AttemptRecord, Claim, ClusterSignal, ControlChange, DeadLetter,
    DeadLetterQuery, DeliveryStatus, DestinationControl, DestinationKey, DestinationStats, DuePage,
    HealthCell, Heartbeat, HeartbeatAnswer, InstanceRecord, Lease, NewEvent, Prune, Pruned,
    Regulation, RegulationApplied, RegulationPlan, RegulationProgress, ReplaySelection, Store,
    StoreError, StoreFuture, StoreHealth, StoredEvent, Suppression,
};

/// Upper bound on the jobs that share one transaction, so that one commit stays short.
const MAX_JOBS_PER_COMMIT: usize = 512;
/// Threads serving reads (due work, admin and metrics queries), each with a connection.
const READER_THREADS: usize = 2;
/// Jobs waiting for the writer; senders wait (asynchronously) when it is full.
const JOB_QUEUE_CAPACITY: usize = 1024;
/// How often the WAL is copied into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// WAL frames (4 KiB pages) past which the writer checkpoints after its commit.
const WAL_WRITER_CHECKPOINT_FRAMES: i64 = 4_096;

/// A write to run inside the writer's transaction; it returns what to do once the
/// transaction's fate is known.
type WriteJob = Box<dyn FnOnce(&Connection) -> Completion + Send>;
type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A read to run on a reader thread; it answers its caller itself.
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;
/// Hears each transaction's duration and how many jobs shared it (for metrics).
pub type CommitObserver = Box<dyn Fn(Duration, usize) + Send>;

/// Queues `op` for the writer thread, to run in the next group commit; resolves once
/// that commit is durable (or failed).
fn write_on<T: Send + 'static>(
    jobs: mpsc::Sender<WriteJob>,
    health: Arc<HealthCell>,
    grows: bool,
    op: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
) -> StoreFuture<T> {
    let (reply, answer) = oneshot::channel();
    let job: WriteJob = Box::new(move |conn| {
        let result = in_savepoint(conn, op);
        Box::new(move |commit: Result<(), StoreError>| {
            let _ = reply.send(commit.and(result));
        })
    });
    Box::pin(async move {
        jobs.send(job).await.map_err(|_| StoreError::Closed)?;
        let result = answer.await.map_err(|_| StoreError::Closed)?;
        health.observe(&result, grows);
        result
    })
}

fn lock_keys(keys: &Mutex<RecentKeys>) -> std::sync::MutexGuard<'_, RecentKeys> {
    keys.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Adds the newest events to `message_keys` in the writer's next transaction; the map
/// forgets them only once that transaction has committed.
fn flush_job(keys: Arc<Mutex<RecentKeys>>) -> WriteJob {
    Box::new(move |conn| {
        let flushed = in_savepoint(conn, |conn| message_keys::flush(conn, &lock_keys(&keys)));
        Box::new(move |commit: Result<(), StoreError>| {
            let committed = commit.and(flushed);
            if let Err(e) = &committed {
                log::warn!("store: indexing the newest messageIds failed (tried again later): {e}");
            }
            lock_keys(&keys).flushed(committed.ok());
        })
    })
}

const EVENT_COLUMNS: &str = "id, source, message_id, user_id, type, received_at, body";

fn event_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        event_id: row.get(0)?,
        source: row.get(1)?,
        message_id: row.get(2)?,
        user_id: row.get(3)?,
        event_type: row.get(4)?,
        received_at_ms: row.get(5)?,
        body: row.get(6)?,
    })
}

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    jobs: mpsc::Sender<WriteJob>,
    /// Reads queue here for the reader threads (each with its own connection): a fixed
    /// number of threads however many callers read at once.
    reads: mpsc::Sender<ReadJob>,
    /// What the latest writes found.
    health: Arc<HealthCell>,
    /// Held for the store's life: one process per database file.
    _lock: Option<std::fs::File>,
    /// Dropped with the store, which ends the checkpoint thread.
    _checkpoint_stop: std::sync::mpsc::Sender<()>,
    /// The newest events' keys, used by the writer thread only (the lock is never
    /// contended; it is here because jobs are closures sent to that thread).
    keys: Arc<Mutex<RecentKeys>>,
    /// Attempt outcomes waiting to be recorded together.
    records: Arc<Mutex<recording::PendingRecords>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, migrates its schema, locks it
    /// for this process, and starts the writer thread.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_observed(path, None, Box::new(|_, _| {}))
    }

    /// As [`SqliteStore::open`], with the database file capped at `max_size_bytes` (writes
    /// past it fail as [`StoreError::Full`]); `on_commit` hears each commit's duration
    /// and job count.
    pub fn open_observed(
        path: &Path,
        max_size_bytes: Option<u64>,
        on_commit: CommitObserver,
    ) -> Result<SqliteStore, StoreError> {
        let lock = lock(path)?;
        SqliteStore::start(path, max_size_bytes, on_commit, Some(lock))
    }

    /// Opens a database that a running webhookd holds, to look at it (tests, tools):
    /// takes no lock. Never run deliveries on it.
    pub fn open_beside(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::start(path, None, Box::new(|_, _| {}), None)
    }

    fn start(
        path: &Path,
        max_size_bytes: Option<u64>,
        on_commit: CommitObserver,
        lock: Option<std::fs::File>,
    ) -> Result<SqliteStore, StoreError> {
        let writer = connect(path)?;
        schema::migrate(&writer)?;
        if lock.is_some() {
            // The lock says no other process runs on this file: whatever an earlier
            // process held (leases, claims) died with it and is free at once.
            writer.execute_batch(
                "DELETE FROM destination_leases; DELETE FROM instances;
                 UPDATE deliveries SET claimed_by = NULL, claim_until = NULL
                     WHERE claimed_by IS NOT NULL AND state = 'pending';",
            )?;
        }
        set_max_pages(&writer, max_size_bytes)?;
        let keys = Arc::new(Mutex::new(RecentKeys::load(&writer)?));
        // Checkpoints copy the WAL into the database with random writes. Done inside a
        // commit they stall every request waiting on it, so a thread of its own does the
        // bulk of them, concurrently. The writer still checkpoints past
        // WAL_WRITER_CHECKPOINT_FRAMES: by then most frames are copied, so this is quick,
        // and only a checkpoint between two commits lets the WAL start over.
        writer.pragma_update(None, "wal_autocheckpoint", WAL_WRITER_CHECKPOINT_FRAMES)?;
        writer.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        let (reads, read_queue) = mpsc::channel::<ReadJob>(JOB_QUEUE_CAPACITY);
        let read_queue = Arc::new(Mutex::new(read_queue));
        for n in 0..READER_THREADS {
            let (conn, queue) = (connect(path)?, Arc::clone(&read_queue));
            std::thread::Builder::new()
                .name(format!("store-reader-{n}"))
                .spawn(move || read_loop(conn, queue))
                .map_err(|e| open_error(path, e))?;
        }
        let checkpointer = connect(path)?;
        let (checkpoint_stop, stopped) = std::sync::mpsc::channel::<()>();

        let (jobs, queue) = mpsc::channel(JOB_QUEUE_CAPACITY);
        let thread_path = path.to_path_buf();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || write_loop(writer, queue, thread_path, on_commit))
            .map_err(|e| open_error(path, e))?;
        std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, stopped))
            .map_err(|e| open_error(path, e))?;
        Ok(SqliteStore {
            jobs,
            reads,
            health: Arc::new(HealthCell::new()),
            _lock: lock,
            _checkpoint_stop: checkpoint_stop,
            keys,
            records: Arc::default(),
        })
    }

    /// Runs `op` in the writer's next transaction; resolves once that transaction commits.
    /// `grows`: the write needs new space, so its outcome tells whether the store is
    /// writable ([`Store::health`]).
    fn write<T: Send + 'static>(
        &self,
        grows: bool,
        op: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<T> {
        write_on(self.jobs.clone(), Arc::clone(&self.health), grows, op)
    }

    /// Runs `op` on a reader thread's connection.
    fn read<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<T> {
        let (reply, answer) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let _ = reply.send(op(conn));
        });
        let reads = self.reads.clone();
        Box::pin(async move {
            reads.send(job).await.map_err(|_| StoreError::Closed)?;
            answer.await.map_err(|_| StoreError::Closed)?
        })
    }
}

impl Store for SqliteStore {
    fn append(&self, events: Vec<NewEvent>) -> StoreFuture<Vec<Appended>> {
        if lock_keys(&self.keys).wants_flush() {
            // Not awaited: it runs in a transaction of its own choosing. If the queue is
            // full it is asked for again at the next append.
            if self
                .jobs
                .try_send(flush_job(Arc::clone(&self.keys)))
                .is_err()
            {
                lock_keys(&self.keys).flushed(None);
            }
        }
        let keys = Arc::clone(&self.keys);
        self.write(true, move |conn| {
            ingest::append_events(conn, &mut lock_keys(&keys), &events)
        })
    }

    fn find_event(&self, source: &str, message_id: &str) -> StoreFuture<Option<StoredEvent>> {
        let (source, message_id) = (source.to_string(), message_id.to_string());
        self.read(move |conn| {
            let Some(id) = message_keys::latest_event_id(conn, &source, &message_id)? else {
                return Ok(None);
            };
            let mut stmt =
                conn.prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ?1"))?;
            Ok(stmt.query_row(params![id], event_from_row).optional()?)
        })
    }

    fn events_of_user(&self, user_id: &str, limit: usize) -> StoreFuture<Vec<StoredEvent>> {
        let user_id = user_id.to_string();
        self.read(move |conn| user_events::latest_of_user(conn, &user_id, limit))
    }

    fn recent_regulations(&self, limit: usize) -> StoreFuture<Vec<Regulation>> {
        self.read(move |conn| regulation::recent(conn, limit))
    }

    fn claim_due(&self, claim: Claim) -> StoreFuture<DuePage> {
        self.write(false, move |conn| delivery::claim_due(conn, &claim))
    }

    fn release_claims(&self, claimer: &str) -> StoreFuture<()> {
        let claimer = claimer.to_string();
        self.write(false, move |conn| delivery::release_claims(conn, &claimer))
    }

    fn record_attempt(&self, outcome: AttemptOutcome) -> StoreFuture<()> {
        let answer = recording::record(&self.records, &self.jobs, outcome);
        let health = Arc::clone(&self.health);
        Box::pin(async move {
            let result = answer.await.map_err(|_| StoreError::Closed)?;
            health.observe(&result, true);
            result
        })
    }

    fn pending_destinations(&self) -> StoreFuture<Vec<DestinationKey>> {
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT DISTINCT source, destination FROM deliveries WHERE state = 'pending'",
            )?;
            let pairs = stmt
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(pairs)
        })
    }

    fn still_pending(&self, delivery_ids: Vec<i64>) -> StoreFuture<Vec<i64>> {
        self.read(move |conn| {
            // One lookup each: the ids are those one delivery actor holds.
            let mut pending = conn
                .prepare_cached("SELECT 1 FROM deliveries WHERE id = ?1 AND state = 'pending'")?;
            let mut still = Vec::new();
            for id in delivery_ids {
                if pending.exists(params![id])? {
                    still.push(id);
                }
            }
            Ok(still)
        })
    }

    fn deliveries_of(&self, source: &str, message_id: &str) -> StoreFuture<Vec<DeliveryStatus>> {
        let (source, message_id) = (source.to_string(), message_id.to_string());
        self.read(move |conn| {
            let Some(event_id) = message_keys::latest_event_id(conn, &source, &message_id)? else {
                return Ok(Vec::new());
            };
            let mut deliveries = conn.prepare_cached(
                "SELECT d.id, d.destination, d.state, d.attempts, d.next_attempt_at, d.last_error
                 FROM deliveries d WHERE d.event_id = ?1 ORDER BY d.id",
            )?;
            let mut statuses = deliveries
                .query_map(params![event_id], |row| {
                    Ok(DeliveryStatus {
                        delivery_id: row.get(0)?,
                        destination: row.get(1)?,
                        state: row.get(2)?,
                        attempt_count: row.get(3)?,
                        next_attempt_at_ms: row.get(4)?,
                        last_error: row.get(5)?,
                        attempts: Vec::new(),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut attempts = conn.prepare_cached(
                "SELECT attempted_at, url, status, error, latency_ms, response_body
                 FROM attempts WHERE delivery_id = ?1 ORDER BY id",
            )?;
            for status in &mut statuses {
                status.attempts = attempts
                    .query_map(params![status.delivery_id], |row| {
                        Ok(AttemptRecord {
                            attempted_at_ms: row.get(0)?,
                            url: row.get(1)?,
                            status: row.get(2)?,
                            error: row.get(3)?,
                            latency_ms: row.get::<_, i64>(4)?.max(0) as u64,
                            response_body: row.get(5)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
            }
            Ok(statuses)
        })
    }

    fn add_regulation(&self, regulation: Regulation) -> StoreFuture<()> {
        self.write(true, move |conn| regulation::add(conn, &regulation))
    }

    fn unapplied_regulations(&self) -> StoreFuture<Vec<Regulation>> {
        self.read(regulation::unapplied)
    }

    fn apply_regulation(&self, plan: RegulationPlan) -> StoreFuture<RegulationApplied> {
        let keys = Arc::clone(&self.keys);
        let applied = self.write(true, move |conn| {
            regulation::apply(conn, &mut lock_keys(&keys), &plan)
        });
        // No copy of what was removed stays in the write-ahead log (freed pages are
        // zeroed: `secure_delete`).
        let truncate = self.read(|conn| {
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(())
        });
        Box::pin(async move {
            let applied = applied.await?;
            if applied.events_removed > 0 {
                if let Err(e) = truncate.await {
                    log::warn!(
                        "store: the write-ahead log was not truncated after a deletion: {e}"
                    );
                }
            }
            Ok(applied)
        })
    }

    fn regulation_progress(&self, id: &str) -> StoreFuture<Option<RegulationProgress>> {
        let id = id.to_string();
        self.read(move |conn| regulation::progress(conn, &id))
    }

    fn suppressions(&self) -> StoreFuture<Vec<Suppression>> {
        self.read(regulation::suppressions)
    }

    fn lift_suppression(&self, source: &str, user_id: &str) -> StoreFuture<bool> {
        let (source, user_id) = (source.to_string(), user_id.to_string());
        self.write(false, move |conn| {
            regulation::lift_suppression(conn, &source, &user_id)
        })
    }

    fn destination_stats(&self, now_ms: i64) -> StoreFuture<Vec<DestinationStats>> {
        self.read(move |conn| operations::destination_stats(conn, now_ms))
    }

    fn dead_letters(&self, query: DeadLetterQuery) -> StoreFuture<Vec<DeadLetter>> {
        self.read(move |conn| operations::dead_letters(conn, &query))
    }

    fn replay_dead_letters(
        &self,
        selection: ReplaySelection,
        now_ms: i64,
    ) -> StoreFuture<Vec<(String, String, u64)>> {
        self.write(false, move |conn| {
            operations::replay(conn, &selection, now_ms)
        })
    }

    fn rename_destination(&self, source: &str, from: &str, to: &str) -> StoreFuture<u64> {
        let (source, from, to) = (source.to_string(), from.to_string(), to.to_string());
        self.write(false, move |conn| {
            operations::rename_destination(conn, &source, &from, &to)
        })
    }

    fn set_paused(
        &self,
        source: &str,
        destination: &str,
        paused: bool,
        now_ms: i64,
    ) -> StoreFuture<()> {
        let (source, destination) = (source.to_string(), destination.to_string());
        self.write(false, move |conn| {
            operations::set_paused(conn, &source, &destination, paused, now_ms)
        })
    }

    fn paused_destinations(&self) -> StoreFuture<Vec<DestinationKey>> {
        self.read(operations::paused)
    }

    fn pending_count(&self, source: &str, destination: &str) -> StoreFuture<u64> {
        let (source, destination) = (source.to_string(), destination.to_string());
        self.read(move |conn| {
            let count: i64 = conn.query_row(
                "SELECT count(*) FROM deliveries
                 WHERE source = ?1 AND destination = ?2 AND state = 'pending'",
                params![source, destination],
                |row| row.get(0),
            )?;
            Ok(count as u64)
        })
    }

    fn heartbeat(&self, heartbeat: Heartbeat) -> StoreFuture<HeartbeatAnswer> {
        self.write(false, move |conn| cluster::heartbeat(conn, &heartbeat))
    }

    fn release_leases(&self, leases: Vec<Lease>) -> StoreFuture<()> {
        self.write(false, move |conn| cluster::release(conn, &leases))
    }

    fn instances(&self, now_ms: i64) -> StoreFuture<Vec<InstanceRecord>> {
        self.read(move |conn| cluster::instances(conn, now_ms))
    }

    fn take_signals(&self) -> Option<mpsc::Receiver<ClusterSignal>> {
        None
    }

    fn destination_controls(&self) -> StoreFuture<Vec<DestinationControl>> {
        self.read(control::controls)
    }

    fn change_control(
        &self,
        source: &str,
        destination: &str,
        change: ControlChange,
        _now_ms: i64,
    ) -> StoreFuture<()> {
        let (source, destination) = (source.to_string(), destination.to_string());
        self.write(false, move |conn| {
            control::change(conn, &source, &destination, &change)
        })
    }

    fn prune(&self, prune: Prune) -> StoreFuture<Pruned> {
        let read = prune;
        let candidates = self.read(move |conn| control::prune_candidates(conn, &read));
        let (jobs, health) = (self.jobs.clone(), Arc::clone(&self.health));
        Box::pin(async move {
            let (ids, next_after) = candidates.await?;
            let (events, held) = if ids.is_empty() {
                (0, Duration::ZERO)
            } else {
                let delete = move |conn: &Connection| {
                    let started = std::time::Instant::now();
                    let removed = control::prune_events(conn, &ids, &prune)?;
                    Ok((removed, started.elapsed()))
                };
                write_on(jobs, health, false, delete).await?
            };
            Ok(Pruned {
                events,
                next_after,
                held,
                ..Pruned::default()
            })
        })
    }

    fn size_bytes(&self) -> StoreFuture<u64> {
        self.read(|conn| {
            let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
            let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            // Pages in use: free pages are reused before the file grows.
            Ok(((pages - free).max(0) * size) as u64)
        })
    }

    fn health(&self) -> StoreHealth {
        self.health.get()
    }

    fn probe(&self) -> StoreFuture<()> {
        let probe = self.write(false, |conn| {
            // More than a page of new data needs new pages: it fails while the store is
            // full. Rolled back at once, so nothing stays.
            conn.execute_batch("SAVEPOINT probe")?;
            let grow = conn.execute("INSERT INTO write_probe (b) VALUES (zeroblob(16384))", []);
            conn.execute_batch("ROLLBACK TO probe; RELEASE probe")?;
            grow?;
            Ok(())
        });
        HealthCell::observing_probe(&self.health, probe)
    }

    fn set_size_limit(&self, max_bytes: Option<u64>) -> StoreFuture<()> {
        let health = Arc::clone(&self.health);
        let set = self.write(false, move |conn| set_max_pages(conn, max_bytes));
        Box::pin(async move {
            set.await?;
            // Whatever was full may fit now; the next write tells.
            if health.get() == StoreHealth::Full {
                health.set(StoreHealth::Writable);
            }
            Ok(())
        })
    }

    fn shutdown(&self, instance: &str) -> StoreFuture<()> {
        let instance = instance.to_string();
        let left = self.write(false, move |conn| cluster::leave(conn, &instance));
        // Through a reader connection: a checkpoint cannot run inside the writer's
        // transaction, and this one waits (busy timeout) for the writer to finish.
        let checkpoint = self.read(|conn| {
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(())
        });
        Box::pin(async move {
            left.await?;
            checkpoint.await
        })
    }
}

/// Takes the exclusive lock on `<path>.lock` (creating the database's folder, private to
/// its owner, if missing); fails if another process holds it.
fn lock(path: &Path) -> Result<std::fs::File, StoreError> {
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(folder)
            .map_err(|e| open_error(path, e))?;
    }
    use std::os::unix::fs::OpenOptionsExt;
    // Private to the owner: SQLite gives its WAL and shared-memory files the database
    // file's permissions, so creating that one first, 0600, covers all three.
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| open_error(path, e))?;
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| open_error(path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Open {
            path: path.display().to_string(),
            reason: format!(
                "another webhookd is running on this database (it holds {}); one process per database file",
                lock_path.display()
            ),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(open_error(path, e)),
    }
}

/// SQLite's own default cap on pages, for "no cap".
const SQLITE_MAX_PAGES: i64 = 0xFFFF_FFFE;

/// Caps the database at `max_bytes` (in pages); `None` lifts the cap.
fn set_max_pages(conn: &Connection, max_bytes: Option<u64>) -> Result<(), StoreError> {
    let pages = match max_bytes {
        Some(bytes) => {
            let page_size: i64 = conn.query_row("PRAGMA page_size", [], |row| row.get(0))?;
            (i64::try_from(bytes).unwrap_or(i64::MAX) / page_size).clamp(1, SQLITE_MAX_PAGES)
        }
        None => SQLITE_MAX_PAGES,
    };
    conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
    Ok(())
}

fn open_error(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Open {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

impl From<rusqlite::Error> for StoreError {
    /// Out of space and an unwritable file are told apart: the API answers 503, readiness
    /// says why, and things recover when space or access returns.
    fn from(e: rusqlite::Error) -> StoreError {
        use rusqlite::ErrorCode;
        match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => StoreError::Full,
            Some(
                ErrorCode::ReadOnly
                | ErrorCode::CannotOpen
                | ErrorCode::SystemIoFailure
                | ErrorCode::PermissionDenied
                | ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked,
            ) => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Backend(e.to_string()),
        }
    }
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // WAL: readers never block the writer. FULL: a commit survives power loss.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // What a deletion removes does not linger in free pages.
    conn.pragma_update(None, "secure_delete", "ON")?;
    // 8 MiB; the operating system's page cache holds the rest of the file. Not larger:
    // a commit after a B-tree split walks the whole page-cache hash table (SQLite swaps
    // page numbers through the lock-byte page's, far past the end of the file, and the
    // commit's truncation of the cache to the file's size then scans every slot), which
    // with 64 MiB was a tenth of the writer's time while a backlog drained.
    conn.pragma_update(None, "cache_size", -8192)?;
    // The writer runs some 30 distinct statements; rusqlite keeps 16 prepared by
    // default, and a statement pushed out is parsed again at its next use.
    conn.set_prepared_statement_cache_capacity(64);
    // Plans that do not depend on bound values: otherwise SQLite prepares a statement
    // again whenever a value bound to a range on an indexed column changes, which the
    // claims of due deliveries did at every run (a fifth of the writer's time while a
    // backlog drained).
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    message_keys::register(&conn)?;
    Ok(conn)
}

fn in_savepoint<T>(
    conn: &Connection,
    op: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    // Cached: parsing these again for every job showed in the writer's profile.
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    match op(conn) {
        Ok(value) => {
            conn.prepare_cached("RELEASE job")?.execute([])?;
            Ok(value)
        }
        Err(e) => {
            if matches!(e, StoreError::Full) {
                OUT_OF_SPACE.with(|full| full.set(true));
            }
            // Out of space (and I/O errors) make SQLite roll the whole transaction back
            // itself; then there is no savepoint left, and the commit reports the loss.
            if !conn.is_autocommit() {
                conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            }
            Err(e)
        }
    }
}

thread_local! {
    /// Set on the writer thread when a job ran out of space in the current transaction.
    static OUT_OF_SPACE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn write_loop(
    conn: Connection,
    mut queue: mpsc::Receiver<WriteJob>,
    path: PathBuf,
    on_commit: CommitObserver,
) {
    let mut batch: Vec<WriteJob> = Vec::with_capacity(MAX_JOBS_PER_COMMIT);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_JOBS_PER_COMMIT {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            log::error!("store: cannot begin a transaction: {}", StoreError::from(e));
            // Dropping a job that never ran drops its reply channel: its caller gets an error.
            batch.clear();
            continue;
        }
        let started = std::time::Instant::now();
        let jobs = batch.len();
        let completions: Vec<Completion> = batch.drain(..).map(|job| job(&conn)).collect();
        let out_of_space = OUT_OF_SPACE.with(|full| full.replace(false));
        let committed = if conn.is_autocommit() {
            // SQLite already rolled the transaction back: every job in it is lost.
            Err(if out_of_space {
                StoreError::Full
            } else {
                StoreError::CommitFailed("the transaction was rolled back".into())
            })
        } else {
            conn.execute_batch("COMMIT").map_err(StoreError::from)
        };
        on_commit(started.elapsed(), jobs);
        if let Err(e) = &committed {
            log::error!("store: commit failed in {}: {e}", path.display());
            let _ = conn.execute_batch("ROLLBACK");
        }
        for complete in completions {
            complete(job_outcome(&committed));
        }
    }
}

/// What one job of a transaction hears of its commit: out of space stays so (the
/// store's health learns from it), any other failure is a failed commit.
fn job_outcome(committed: &Result<(), StoreError>) -> Result<(), StoreError> {
    match committed {
        Ok(()) => Ok(()),
        Err(StoreError::Full) => Err(StoreError::Full),
        Err(e) => Err(StoreError::CommitFailed(e.to_string())),
    }
}

/// Serves reads until the store is dropped; the reader threads share one queue.
fn read_loop(conn: Connection, queue: Arc<Mutex<mpsc::Receiver<ReadJob>>>) {
    loop {
        let job = queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .blocking_recv();
        match job {
            Some(job) => job(&conn),
            None => return,
        }
    }
}

/// Copies committed WAL frames into the database file every [`CHECKPOINT_EVERY`], without
/// blocking the writer (a passive checkpoint), until the store is dropped.
fn checkpoint_loop(conn: Connection, stop: std::sync::mpsc::Receiver<()>) {
    use std::sync::mpsc::RecvTimeoutError;
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            log::warn!("store: checkpoint failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    /// The SQLite built in carries the fixes for CVE-2025-29087, CVE-2025-29088
    /// (3.49.1) and CVE-2025-6965 (3.50.2).
    #[test]
    fn the_bundled_sqlite_is_current() {
        assert!(
            rusqlite::version_number() >= 3_050_002,
            "SQLite {}",
            rusqlite::version()
        );
    }
}
