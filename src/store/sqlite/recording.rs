//! Attempt outcomes recorded together: every outcome handed in while the writer is busy
//! waits here, and one write job records all of them in one savepoint, instead of a job,
//! a savepoint and a channel message each (at tens of thousands of deliveries a second,
//! that overhead was a good part of the writer's time).

use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::{delivery, in_savepoint, job_outcome, Completion, WriteJob};
use crate::store::{AttemptOutcome, StoreError};

type Reply = oneshot::Sender<Result<(), StoreError>>;

/// Outcomes waiting for the writer. Bounded by their callers: each delivery actor keeps
/// a bounded number of outcomes in commit.
#[derive(Default)]
pub(super) struct PendingRecords {
    outcomes: Vec<(AttemptOutcome, Reply)>,
    /// A job that will take them is queued (or being sent).
    queued: bool,
}

fn lock(pending: &Mutex<PendingRecords>) -> std::sync::MutexGuard<'_, PendingRecords> {
    pending
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Hands `outcome` to the writer; the answer comes once the transaction that recorded it
/// commits. The job is sent here, not by the caller's future, so that a caller that stops
/// waiting cannot leave the others without one.
pub(super) fn record(
    pending: &Arc<Mutex<PendingRecords>>,
    jobs: &mpsc::Sender<WriteJob>,
    outcome: AttemptOutcome,
) -> oneshot::Receiver<Result<(), StoreError>> {
    let (reply, answer) = oneshot::channel();
    let queue_job = {
        let mut waiting = lock(pending);
        waiting.outcomes.push((outcome, reply));
        !std::mem::replace(&mut waiting.queued, true)
    };
    if queue_job {
        match jobs.try_send(record_job(Arc::clone(pending))) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(job)) => {
                match tokio::runtime::Handle::try_current() {
                    Ok(runtime) => {
                        let (jobs, pending) = (jobs.clone(), Arc::clone(pending));
                        runtime.spawn(async move {
                            if jobs.send(job).await.is_err() {
                                abandon(&pending);
                            }
                        });
                    }
                    Err(_) => {
                        if jobs.blocking_send(job).is_err() {
                            abandon(pending);
                        }
                    }
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => abandon(pending),
        }
    }
    answer
}

/// The writer is gone: the waiting outcomes' callers hear that the store closed.
fn abandon(pending: &Mutex<PendingRecords>) {
    let mut waiting = lock(pending);
    waiting.outcomes.clear();
    waiting.queued = false;
}

/// Records every outcome waiting when it runs, in one savepoint; if that fails, each in
/// a savepoint of its own, so that one outcome that cannot be written fails alone.
fn record_job(pending: Arc<Mutex<PendingRecords>>) -> WriteJob {
    Box::new(move |conn: &Connection| {
        let outcomes = {
            let mut waiting = lock(&pending);
            waiting.queued = false;
            std::mem::take(&mut waiting.outcomes)
        };
        let together = in_savepoint(conn, |conn| {
            delivery::record_attempts(conn, outcomes.iter().map(|(outcome, _)| outcome))
        });
        let results: Vec<Result<(), StoreError>> = match together {
            Ok(()) => outcomes.iter().map(|_| Ok(())).collect(),
            // SQLite rolled the whole transaction back (out of space, I/O): nothing to
            // try again in it, and the commit reports the loss to every job.
            Err(e) if conn.is_autocommit() => outcomes.iter().map(|_| Err(copy(&e))).collect(),
            Err(_) => outcomes
                .iter()
                .map(|(outcome, _)| {
                    in_savepoint(conn, |conn| delivery::record_attempts(conn, [outcome]))
                })
                .collect(),
        };
        let completion: Completion = Box::new(move |commit: Result<(), StoreError>| {
            for ((_, reply), result) in outcomes.into_iter().zip(results) {
                let _ = reply.send(job_outcome(&commit).and(result));
            }
        });
        completion
    })
}

/// The same failure for another caller: what the store's health learns from (out of
/// space, unavailable) kept, the rest as a failed commit.
fn copy(e: &StoreError) -> StoreError {
    match e {
        StoreError::Full => StoreError::Full,
        StoreError::Unavailable(why) => StoreError::Unavailable(why.clone()),
        other => StoreError::CommitFailed(other.to_string()),
    }
}
