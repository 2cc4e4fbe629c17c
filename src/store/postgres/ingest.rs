//! Group commit on PostgreSQL: one writer task takes every append waiting and writes
//! them in one transaction, with array inserts, then answers each.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Instant;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use super::{notify, pg_error, pool_error};
use crate::store::{Appended, ClusterSignal, CommitObserver, NewEvent, StoreError};

/// Appends waiting for the writer; senders wait (asynchronously) when it is full.
pub(super) const QUEUE_CAPACITY: usize = 1024;
/// Upper bounds on what shares one transaction, so that one commit stays short.
const MAX_JOBS_PER_COMMIT: usize = 512;
const MAX_EVENTS_PER_COMMIT: usize = 10_000;
/// Key of the advisory lock ingest takes shared and a regulation exclusively.
pub(super) const REGULATION_LOCK: i64 = 0x7765_6268_6f6f_6b02;

/// One append: its events and where to send the answer.
pub(super) struct AppendJob {
    pub events: Vec<NewEvent>,
    pub reply: oneshot::Sender<Result<Vec<Appended>, StoreError>>,
}

pub(super) async fn write_loop(
    pool: Pool,
    mut queue: mpsc::Receiver<AppendJob>,
    on_commit: CommitObserver,
) {
    while let Some(first) = queue.recv().await {
        let mut jobs = vec![first];
        let mut events = jobs[0].events.len();
        while jobs.len() < MAX_JOBS_PER_COMMIT && events < MAX_EVENTS_PER_COMMIT {
            match queue.try_recv() {
                Ok(job) => {
                    events += job.events.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let all: Vec<&NewEvent> = jobs.iter().flat_map(|j| j.events.iter()).collect();
        let result = append_all(&pool, &all).await;
        on_commit(started.elapsed(), jobs.len());
        match result {
            Ok(mut outcomes) => {
                for job in jobs.into_iter().rev() {
                    let mine = outcomes.split_off(outcomes.len() - job.events.len());
                    let _ = job.reply.send(Ok(mine));
                }
            }
            Err(e) => {
                log::error!("store: append failed: {e}");
                for job in jobs {
                    let _ = job.reply.send(Err(match &e {
                        StoreError::Full => StoreError::Full,
                        StoreError::Unavailable(why) => StoreError::Unavailable(why.clone()),
                        other => StoreError::CommitFailed(other.to_string()),
                    }));
                }
            }
        }
    }
}

/// Writes `events` in one transaction; one [`Appended`] each, in order.
async fn append_all(pool: &Pool, events: &[&NewEvent]) -> Result<Vec<Appended>, StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(pg_error)?;
    // Shared with every other append; a regulation waits for them and they for it.
    tx.execute(
        "SELECT pg_advisory_xact_lock_shared($1)",
        &[&REGULATION_LOCK],
    )
    .await
    .map_err(pg_error)?;
    let mut outcomes: Vec<Option<Appended>> = vec![None; events.len()];

    // Suppressed users first: their events are dropped and never enter the dedupe set.
    let (sources, users): (Vec<&str>, Vec<&str>) = events
        .iter()
        .filter_map(|e| Some((e.source.as_str(), e.user_id.as_deref()?)))
        .unzip();
    if !users.is_empty() {
        let rows = tx
            .query(
                "SELECT s.source, s.user_id FROM suppressions s
                 JOIN unnest($1::text[], $2::text[]) AS u(source, user_id)
                   ON s.source = u.source AND s.user_id = u.user_id",
                &[&sources, &users],
            )
            .await
            .map_err(pg_error)?;
        let suppressed: HashSet<(String, String)> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        for (i, e) in events.iter().enumerate() {
            if let Some(user) = &e.user_id {
                if suppressed.contains(&(e.source.clone(), user.clone())) {
                    outcomes[i] = Some(Appended::Suppressed);
                }
            }
        }
    }

    // Dedupe: the first of each (source, messageId) in this group is a candidate; the
    // unique key decides against what is stored, in sorted order (no deadlocks between
    // instances writing the same ids).
    let mut candidates: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    let mut since = i64::MAX;
    for (i, e) in events.iter().enumerate() {
        let Some(window_start) = e.dedupe_since_ms else {
            continue;
        };
        if outcomes[i].is_some() {
            continue;
        }
        let key = (e.source.as_str(), e.message_id.as_str());
        if candidates.insert(key, e.received_at_ms).is_some() {
            // Not the first in this group: the first decides, this one repeats it.
            outcomes[i] = Some(Appended::Duplicate);
            continue;
        }
        since = since.min(window_start);
    }
    if !candidates.is_empty() {
        let (sources, ids): (Vec<&str>, Vec<&str>) = candidates.keys().copied().unzip();
        let received: Vec<i64> = candidates.values().copied().collect();
        // A row comes back when it was inserted, or replaced one older than the window.
        let rows = tx
            .query(
                "INSERT INTO dedupe (source, message_id, received_at)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::int8[])
                 ON CONFLICT (source, message_id) DO UPDATE
                     SET received_at = EXCLUDED.received_at
                     WHERE dedupe.received_at <= $4
                 RETURNING source, message_id",
                &[&sources, &ids, &received, &since],
            )
            .await
            .map_err(pg_error)?;
        let fresh: HashSet<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        for (i, e) in events.iter().enumerate() {
            if outcomes[i].is_none()
                && e.dedupe_since_ms.is_some()
                && !fresh.contains(&(e.source.clone(), e.message_id.clone()))
            {
                outcomes[i] = Some(Appended::Duplicate);
            }
        }
    }

    // The events to store, with ids taken in advance so that deliveries can name them.
    let stored: Vec<usize> = (0..events.len())
        .filter(|i| outcomes[*i].is_none())
        .collect();
    let mut woken: BTreeSet<(String, String)> = BTreeSet::new();
    if !stored.is_empty() {
        let count = stored.len() as i64;
        let ids: Vec<i64> = tx
            .query(
                "SELECT nextval('events_id_seq') FROM generate_series(1, $1::int8)",
                &[&count],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let pick = |f: fn(&NewEvent) -> &str| -> Vec<&str> {
            stored.iter().map(|&i| f(events[i])).collect()
        };
        let sources = pick(|e| &e.source);
        let message_ids = pick(|e| &e.message_id);
        let types = pick(|e| e.event_type);
        let bodies = pick(|e| &e.body);
        let users: Vec<Option<&str>> = stored
            .iter()
            .map(|&i| events[i].user_id.as_deref())
            .collect();
        let received: Vec<i64> = stored.iter().map(|&i| events[i].received_at_ms).collect();
        tx.execute(
            "INSERT INTO events (id, source, message_id, user_id, type, received_at, body)
             SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::int8[], $7::text[])",
            &[
                &ids,
                &sources,
                &message_ids,
                &users,
                &types,
                &received,
                &bodies,
            ],
        )
        .await
        .map_err(pg_error)?;
        let mut d_events = Vec::new();
        let mut d_sources = Vec::new();
        let mut d_destinations = Vec::new();
        let mut d_due = Vec::new();
        for (n, &i) in stored.iter().enumerate() {
            let e = events[i];
            for destination in &e.destinations {
                d_events.push(ids[n]);
                d_sources.push(e.source.as_str());
                d_destinations.push(destination.as_str());
                d_due.push(e.received_at_ms);
                woken.insert((e.source.clone(), destination.clone()));
            }
            outcomes[i] = Some(Appended::Stored { event_id: ids[n] });
        }
        if !d_events.is_empty() {
            tx.execute(
                "INSERT INTO deliveries (event_id, source, destination, next_attempt_at)
                 SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::int8[])",
                &[&d_events, &d_sources, &d_destinations, &d_due],
            )
            .await
            .map_err(pg_error)?;
        }
    }
    if !woken.is_empty() {
        notify(&tx, &ClusterSignal::Work(woken.into_iter().collect())).await?;
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or(Appended::Duplicate))
        .collect())
}
