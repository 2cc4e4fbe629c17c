//! Claiming due deliveries under a lease (`FOR UPDATE SKIP LOCKED`: instances never wait
//! on each other's rows), and recording attempts under the claim.

use deadpool_postgres::{Pool, Transaction};

use super::{pg_error, pool_error};
use crate::store::attempt_counts::{last_hour_from, started_a_minute, AttemptCounts};
use crate::store::encoding::{list_from_text, list_to_text};
use crate::store::{AttemptOutcome, Claim, DeliveryUpdate, DueDelivery, DuePage, StoreError};

pub(super) async fn claim_due(pool: Pool, claim: Claim) -> Result<DuePage, StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let limit = claim.limit as i64;
    let lease = &claim.lease;
    // The CTE fences the LIMIT (the planner may not update more rows than it), and the
    // lease check makes a stale owner claim nothing.
    let rows = client
        .query(
            "WITH lease AS (
                 SELECT 1 FROM destination_leases l JOIN instances i ON i.id = l.owner
                 WHERE l.source = $1 AND l.destination = $2 AND l.owner = $3 AND l.epoch = $4
                   AND i.lease_until > $5
             ), due AS (
                 SELECT d.id FROM deliveries d
                 WHERE EXISTS (SELECT 1 FROM lease)
                   AND d.source = $1 AND d.destination = $2 AND d.state = 'pending'
                   AND d.next_attempt_at <= $5
                   AND (d.claim_until IS NULL OR d.claim_until <= $5 OR d.claim_epoch < $4)
                 ORDER BY d.next_attempt_at, d.id LIMIT $6
                 FOR UPDATE OF d SKIP LOCKED
             )
             UPDATE deliveries d SET claimed_by = $7, claim_until = $8, claim_epoch = $4
             FROM due, events e
             WHERE d.id = due.id AND e.id = d.event_id
             RETURNING d.id, d.event_id, e.message_id, e.body, d.attempts, d.first_attempt_at,
                       d.given_up_urls, d.next_attempt_at, e.type",
            &[
                &claim.source,
                &claim.destination,
                &lease.instance,
                &lease.epoch,
                &claim.now_ms,
                &limit,
                &claim.claimer,
                &claim.claim_until_ms,
            ],
        )
        .await
        .map_err(pg_error)?;
    let mut due: Vec<(i64, DueDelivery)> = rows
        .iter()
        .map(|row| {
            (
                row.get::<_, i64>(7),
                DueDelivery {
                    delivery_id: row.get(0),
                    event_id: row.get(1),
                    message_id: row.get(2),
                    event_type: row.get(8),
                    body: row.get(3),
                    due_at_ms: row.get(7),
                    attempts: row.get::<_, i32>(4) as u32,
                    first_attempt_at_ms: row.get(5),
                    given_up_urls: list_from_text(row.get(6)),
                },
            )
        })
        .collect();
    // RETURNING promises no order: oldest first, as the claim chose them.
    due.sort_by_key(|(next, d)| (*next, d.delivery_id));
    let next_due_at_ms: Option<i64> = client
        .query_one(
            "SELECT min(next_attempt_at) FROM deliveries
             WHERE source = $1 AND destination = $2 AND state = 'pending'
               AND next_attempt_at > $3",
            &[&claim.source, &claim.destination, &claim.now_ms],
        )
        .await
        .map_err(pg_error)?
        .get(0);
    Ok(DuePage {
        due: due.into_iter().map(|(_, d)| d).collect(),
        next_due_at_ms,
    })
}

/// Outcomes waiting for the recorder; senders wait (asynchronously) when it is full.
pub(super) const RECORD_QUEUE_CAPACITY: usize = 1024;
/// Outcomes that share one transaction at most.
const MAX_OUTCOMES_PER_COMMIT: usize = 512;

/// One outcome to record and where to send the answer.
pub(super) struct RecordJob {
    pub outcome: AttemptOutcome,
    pub reply: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
}

/// Records outcomes in groups: every outcome waiting shares one transaction (one commit,
/// one fsync), as appends do; each caller hears once its group is committed.
pub(super) async fn record_loop(pool: Pool, mut queue: tokio::sync::mpsc::Receiver<RecordJob>) {
    while let Some(first) = queue.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_OUTCOMES_PER_COMMIT {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let outcomes: Vec<&AttemptOutcome> = jobs.iter().map(|j| &j.outcome).collect();
        let result = record_all(&pool, &outcomes).await;
        for job in jobs {
            let _ = job.reply.send(match &result {
                Ok(()) => Ok(()),
                Err(StoreError::Full) => Err(StoreError::Full),
                Err(StoreError::Unavailable(why)) => Err(StoreError::Unavailable(why.clone())),
                Err(e) => Err(StoreError::CommitFailed(e.to_string())),
            });
        }
    }
}

/// Records `outcomes` in one transaction: one statement per kind of update (each fenced
/// by its claim), then the attempts of the deliveries updated, then each destination's
/// latest error.
async fn record_all(pool: &Pool, outcomes: &[&AttemptOutcome]) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(pg_error)?;
    let last_error = |o: &AttemptOutcome| o.attempts.iter().rev().find_map(|a| a.error.clone());
    let mut updated: Vec<(i64, String, String)> = Vec::new();
    let (mut delivered, mut retried, mut dead) = (Vec::new(), Vec::new(), Vec::new());
    for o in outcomes {
        match &o.update {
            DeliveryUpdate::Delivered => delivered.push(*o),
            DeliveryUpdate::RetryAt { .. } => retried.push(*o),
            DeliveryUpdate::Dead { .. } => dead.push(*o),
        }
    }
    let ids = |list: &[&AttemptOutcome]| list.iter().map(|o| o.delivery_id).collect::<Vec<i64>>();
    fn claimers<'a>(list: &[&'a AttemptOutcome]) -> Vec<&'a str> {
        list.iter().map(|o| o.claimer.as_str()).collect()
    }
    let firsts = |list: &[&AttemptOutcome]| {
        list.iter()
            .map(|o| o.first_attempt_at_ms)
            .collect::<Vec<i64>>()
    };
    let nows = |list: &[&AttemptOutcome]| list.iter().map(|o| o.now_ms).collect::<Vec<i64>>();
    let fence = "d.id = k.id AND d.state = 'pending' AND d.claimed_by = k.claimer
                 RETURNING d.id, d.source, d.destination";
    if !delivered.is_empty() {
        let rows = tx
            .query(
                &format!(
                    "UPDATE deliveries d SET state = 'delivered', attempts = d.attempts + 1,
                        first_attempt_at = k.first, finished_at = k.now, last_error = NULL,
                        claimed_by = NULL, claim_until = NULL
                     FROM unnest($1::int8[], $2::text[], $3::int8[], $4::int8[])
                         AS k(id, claimer, first, now)
                     WHERE {fence}"
                ),
                &[
                    &ids(&delivered),
                    &claimers(&delivered),
                    &firsts(&delivered),
                    &nows(&delivered),
                ],
            )
            .await
            .map_err(pg_error)?;
        updated.extend(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))));
    }
    if !retried.is_empty() {
        let (mut at, mut given_up) = (Vec::new(), Vec::new());
        for o in &retried {
            if let DeliveryUpdate::RetryAt {
                at_ms,
                given_up_urls,
            } = &o.update
            {
                at.push(*at_ms);
                given_up.push(list_to_text(given_up_urls));
            }
        }
        let errors: Vec<Option<String>> = retried.iter().map(|o| last_error(o)).collect();
        let rows = tx
            .query(
                &format!(
                    "UPDATE deliveries d SET attempts = d.attempts + 1, first_attempt_at = k.first,
                        next_attempt_at = k.at, given_up_urls = k.given_up, last_error = k.error,
                        claimed_by = NULL, claim_until = NULL
                     FROM unnest($1::int8[], $2::text[], $3::int8[], $4::int8[], $5::text[], $6::text[])
                         AS k(id, claimer, first, at, given_up, error)
                     WHERE {fence}"
                ),
                &[
                    &ids(&retried),
                    &claimers(&retried),
                    &firsts(&retried),
                    &at,
                    &given_up,
                    &errors,
                ],
            )
            .await
            .map_err(pg_error)?;
        updated.extend(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))));
    }
    if !dead.is_empty() {
        let reasons: Vec<&str> = dead
            .iter()
            .map(|o| match &o.update {
                DeliveryUpdate::Dead { reason } => reason.as_str(),
                _ => "",
            })
            .collect();
        let rows = tx
            .query(
                &format!(
                    "UPDATE deliveries d SET state = 'dead', attempts = d.attempts + 1,
                        first_attempt_at = k.first, last_error = k.reason, finished_at = k.now,
                        claimed_by = NULL, claim_until = NULL
                     FROM unnest($1::int8[], $2::text[], $3::int8[], $4::int8[], $5::text[])
                         AS k(id, claimer, first, now, reason)
                     WHERE {fence}"
                ),
                &[
                    &ids(&dead),
                    &claimers(&dead),
                    &firsts(&dead),
                    &nows(&dead),
                    &reasons,
                ],
            )
            .await
            .map_err(pg_error)?;
        updated.extend(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))));
    }
    // Only deliveries updated under their claim keep their attempts.
    let kept: std::collections::HashMap<i64, (String, String)> =
        updated.into_iter().map(|(id, s, d)| (id, (s, d))).collect();
    let mut a_ids = Vec::new();
    let mut a_at = Vec::new();
    let mut a_urls: Vec<&str> = Vec::new();
    let mut a_status: Vec<Option<i32>> = Vec::new();
    let mut a_errors: Vec<Option<&str>> = Vec::new();
    let mut a_latency = Vec::new();
    let mut a_bodies: Vec<Option<&str>> = Vec::new();
    let mut latest_errors: std::collections::BTreeMap<(String, String), (String, i64)> =
        std::collections::BTreeMap::new();
    let mut counts = AttemptCounts::default();
    for o in outcomes
        .iter()
        .filter(|o| kept.contains_key(&o.delivery_id))
    {
        let (source, destination) = &kept[&o.delivery_id];
        counts.add(source, destination, &o.attempts);
        for a in &o.attempts {
            a_ids.push(o.delivery_id);
            a_at.push(a.attempted_at_ms);
            a_urls.push(&a.url);
            a_status.push(a.status.map(i32::from));
            a_errors.push(a.error.as_deref());
            a_latency.push(i64::try_from(a.latency_ms).unwrap_or(i64::MAX));
            a_bodies.push(a.response_body.as_deref());
        }
        if let Some(error) = last_error(o) {
            latest_errors.insert(kept[&o.delivery_id].clone(), (error, o.now_ms));
        }
    }
    if !a_ids.is_empty() {
        tx.execute(
            "INSERT INTO attempts (delivery_id, attempted_at, url, status, error, latency_ms, response_body)
             SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::int4[], $5::text[], $6::int8[], $7::text[])",
            &[&a_ids, &a_at, &a_urls, &a_status, &a_errors, &a_latency, &a_bodies],
        )
        .await
        .map_err(pg_error)?;
    }
    if !counts.is_empty() {
        let now_ms = outcomes.iter().map(|o| o.now_ms).max().unwrap_or_default();
        count_attempts(&tx, &counts, now_ms).await?;
    }
    if !latest_errors.is_empty() {
        let (keys, values): (Vec<_>, Vec<_>) = latest_errors.into_iter().unzip();
        let sources: Vec<&str> = keys.iter().map(|(s, _)| s.as_str()).collect();
        let destinations: Vec<&str> = keys.iter().map(|(_, d)| d.as_str()).collect();
        let errors: Vec<&str> = values.iter().map(|(e, _)| e.as_str()).collect();
        let at: Vec<i64> = values.iter().map(|(_, t)| *t).collect();
        tx.execute(
            "INSERT INTO destination_errors (source, destination, error, at)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[])
             ON CONFLICT (source, destination) DO UPDATE SET error = EXCLUDED.error, at = EXCLUDED.at",
            &[&sources, &destinations, &errors, &at],
        )
        .await
        .map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)
}

/// Adds `counts` to `attempt_counts`; a destination's first row of a minute removes its
/// rows older than the hour at `now_ms`.
async fn count_attempts(
    tx: &Transaction<'_>,
    counts: &AttemptCounts,
    now_ms: i64,
) -> Result<(), StoreError> {
    let (mut sources, mut destinations, mut minutes) = (Vec::new(), Vec::new(), Vec::new());
    let (mut attempts, mut successes) = (Vec::new(), Vec::new());
    for ((source, destination, minute), tally) in counts.iter() {
        sources.push(source.as_str());
        destinations.push(destination.as_str());
        minutes.push(*minute);
        attempts.push(tally.attempts);
        successes.push(tally.successes);
    }
    // Unique keys (the counts are summed by key), as ON CONFLICT requires.
    let totals = tx
        .query(
            "INSERT INTO attempt_counts AS c (source, destination, minute, attempts, successes)
             SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[])
             ON CONFLICT (source, destination, minute) DO UPDATE
                 SET attempts = c.attempts + EXCLUDED.attempts,
                     successes = c.successes + EXCLUDED.successes
             RETURNING source, destination, minute, attempts",
            &[&sources, &destinations, &minutes, &attempts, &successes],
        )
        .await
        .map_err(pg_error)?;
    let (mut stale_sources, mut stale_destinations) = (Vec::new(), Vec::new());
    for row in &totals {
        let key: (String, String, i64) = (row.get(0), row.get(1), row.get(2));
        if counts
            .get(&key)
            .is_some_and(|added| started_a_minute(added, row.get(3)))
        {
            stale_sources.push(key.0);
            stale_destinations.push(key.1);
        }
    }
    if !stale_sources.is_empty() {
        tx.execute(
            "DELETE FROM attempt_counts c USING unnest($1::text[], $2::text[]) AS k(source, destination)
             WHERE c.source = k.source AND c.destination = k.destination AND c.minute < $3",
            &[&stale_sources, &stale_destinations, &last_hour_from(now_ms)],
        )
        .await
        .map_err(pg_error)?;
    }
    Ok(())
}
