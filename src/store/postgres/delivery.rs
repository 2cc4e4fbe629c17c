//! Claiming due deliveries under a lease (`FOR UPDATE SKIP LOCKED`: instances never wait
//! on each other's rows), and recording attempts under the claim.

use deadpool_postgres::Pool;

use super::{pg_error, pool_error};
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
                       d.given_up_urls, d.next_attempt_at",
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
                    body: row.get(3),
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

pub(super) async fn record_attempt(pool: Pool, outcome: AttemptOutcome) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(pg_error)?;
    let last_error = outcome.attempts.iter().rev().find_map(|a| a.error.clone());
    let first = outcome.first_attempt_at_ms;
    // The claim fences the write: a delivery purged, finished or claimed by another since
    // is left as it is.
    let fence =
        "WHERE id = $1 AND state = 'pending' AND claimed_by = $2 RETURNING source, destination";
    let rows = match &outcome.update {
        DeliveryUpdate::Delivered => {
            tx.query(
                &format!(
                    "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1,
                        first_attempt_at = $3, finished_at = $4, last_error = NULL,
                        claimed_by = NULL, claim_until = NULL {fence}"
                ),
                &[
                    &outcome.delivery_id,
                    &outcome.claimer,
                    &first,
                    &outcome.now_ms,
                ],
            )
            .await
        }
        DeliveryUpdate::RetryAt {
            at_ms,
            given_up_urls,
        } => {
            tx.query(
                &format!(
                    "UPDATE deliveries SET attempts = attempts + 1, first_attempt_at = $3,
                        next_attempt_at = $4, given_up_urls = $5, last_error = $6,
                        claimed_by = NULL, claim_until = NULL {fence}"
                ),
                &[
                    &outcome.delivery_id,
                    &outcome.claimer,
                    &first,
                    at_ms,
                    &list_to_text(given_up_urls),
                    &last_error,
                ],
            )
            .await
        }
        DeliveryUpdate::Dead { reason } => {
            tx.query(
                &format!(
                    "UPDATE deliveries SET state = 'dead', attempts = attempts + 1,
                        first_attempt_at = $3, last_error = $4, finished_at = $5,
                        claimed_by = NULL, claim_until = NULL {fence}"
                ),
                &[
                    &outcome.delivery_id,
                    &outcome.claimer,
                    &first,
                    reason,
                    &outcome.now_ms,
                ],
            )
            .await
        }
    }
    .map_err(pg_error)?;
    let Some(row) = rows.first() else {
        return tx.commit().await.map_err(pg_error);
    };
    let (source, destination): (String, String) = (row.get(0), row.get(1));
    let n = outcome.attempts.len();
    let ids = vec![outcome.delivery_id; n];
    let at: Vec<i64> = outcome.attempts.iter().map(|a| a.attempted_at_ms).collect();
    let urls: Vec<&str> = outcome.attempts.iter().map(|a| a.url.as_str()).collect();
    let statuses: Vec<Option<i32>> = outcome
        .attempts
        .iter()
        .map(|a| a.status.map(i32::from))
        .collect();
    let errors: Vec<Option<&str>> = outcome
        .attempts
        .iter()
        .map(|a| a.error.as_deref())
        .collect();
    let latencies: Vec<i64> = outcome
        .attempts
        .iter()
        .map(|a| i64::try_from(a.latency_ms).unwrap_or(i64::MAX))
        .collect();
    let bodies: Vec<Option<&str>> = outcome
        .attempts
        .iter()
        .map(|a| a.response_body.as_deref())
        .collect();
    tx.execute(
        "INSERT INTO attempts (delivery_id, attempted_at, url, status, error, latency_ms, response_body)
         SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::int4[], $5::text[], $6::int8[], $7::text[])",
        &[&ids, &at, &urls, &statuses, &errors, &latencies, &bodies],
    )
    .await
    .map_err(pg_error)?;
    if let Some(error) = &last_error {
        tx.execute(
            "INSERT INTO destination_errors (source, destination, error, at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (source, destination) DO UPDATE SET error = $3, at = $4",
            &[&source, &destination, error, &outcome.now_ms],
        )
        .await
        .map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)
}
