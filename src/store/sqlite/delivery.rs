//! Claiming due deliveries under a lease, and recording attempts under the claim.

use rusqlite::{params, Connection};

use crate::store::encoding::{list_from_text, list_to_text};
use crate::store::{AttemptOutcome, Claim, DeliveryUpdate, DueDelivery, DuePage, StoreError};

/// Whether `instance` holds the lease `epoch` on the destination, and its heartbeat is
/// fresh at `now`.
pub(super) fn lease_holds(
    conn: &Connection,
    source: &str,
    destination: &str,
    instance: &str,
    epoch: i64,
    now: i64,
) -> Result<bool, StoreError> {
    let holds = conn
        .prepare_cached(
            "SELECT 1 FROM destination_leases l JOIN instances i ON i.id = l.owner
             WHERE l.source = ?1 AND l.destination = ?2 AND l.owner = ?3 AND l.epoch = ?4
               AND i.lease_until > ?5",
        )?
        .exists(params![source, destination, instance, epoch, now])?;
    Ok(holds)
}

pub(super) fn claim_due(conn: &Connection, claim: &Claim) -> Result<DuePage, StoreError> {
    let lease = &claim.lease;
    if !lease_holds(
        conn,
        &claim.source,
        &claim.destination,
        &lease.instance,
        lease.epoch,
        claim.now_ms,
    )? {
        return Ok(DuePage::default());
    }
    let mut due_stmt = conn.prepare_cached(
        "SELECT d.id, d.event_id, e.message_id, e.body, d.attempts, d.first_attempt_at,
                d.given_up_urls, e.type, d.next_attempt_at
         FROM deliveries d JOIN events e ON e.id = d.event_id
         WHERE d.source = ?1 AND d.destination = ?2 AND d.state = 'pending'
           AND d.next_attempt_at <= ?3
           AND (d.claim_until IS NULL OR d.claim_until <= ?3 OR d.claim_epoch < ?5)
         ORDER BY d.next_attempt_at, d.id LIMIT ?4",
    )?;
    let due = due_stmt
        .query_map(
            params![
                claim.source,
                claim.destination,
                claim.now_ms,
                claim.limit as i64,
                lease.epoch
            ],
            |row| {
                Ok(DueDelivery {
                    delivery_id: row.get(0)?,
                    event_id: row.get(1)?,
                    message_id: row.get(2)?,
                    event_type: row.get(7)?,
                    body: row.get(3)?,
                    due_at_ms: row.get(8)?,
                    attempts: row.get(4)?,
                    first_attempt_at_ms: row.get(5)?,
                    given_up_urls: list_from_text(row.get(6)?),
                })
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    let mut mark = conn
        .prepare_cached("UPDATE deliveries SET claimed_by = ?2, claim_until = ?3 WHERE id = ?1")?;
    for delivery in &due {
        mark.execute(params![
            delivery.delivery_id,
            claim.claimer,
            claim.claim_until_ms
        ])?;
    }
    let next_due_at_ms: Option<i64> = conn
        .prepare_cached(
            "SELECT min(next_attempt_at) FROM deliveries
             WHERE source = ?1 AND destination = ?2 AND state = 'pending'
               AND next_attempt_at > ?3",
        )?
        .query_row(
            params![claim.source, claim.destination, claim.now_ms],
            |row| row.get(0),
        )?;
    Ok(DuePage {
        due,
        next_due_at_ms,
    })
}

pub(super) fn release_claims(conn: &Connection, claimer: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE deliveries SET claimed_by = NULL, claim_until = NULL
         WHERE claimed_by = ?1 AND state = 'pending'",
    )?
    .execute(params![claimer])?;
    Ok(())
}

pub(super) fn record_attempt(
    conn: &Connection,
    outcome: &AttemptOutcome,
) -> Result<(), StoreError> {
    let last_error = outcome.attempts.iter().rev().find_map(|a| a.error.clone());
    // The claim fences the write: a delivery purged, finished or claimed by another since
    // is left as it is.
    let fence = "WHERE id = ?1 AND state = 'pending' AND claimed_by = ?2";
    let changed = match &outcome.update {
        DeliveryUpdate::Delivered => conn
            .prepare_cached(&format!(
                "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1,
                    first_attempt_at = ?3, finished_at = ?4, last_error = NULL,
                    claimed_by = NULL, claim_until = NULL {fence}"
            ))?
            .execute(params![
                outcome.delivery_id,
                outcome.claimer,
                outcome.first_attempt_at_ms,
                outcome.now_ms
            ])?,
        DeliveryUpdate::RetryAt {
            at_ms,
            given_up_urls,
        } => conn
            .prepare_cached(&format!(
                "UPDATE deliveries SET attempts = attempts + 1, first_attempt_at = ?3,
                    next_attempt_at = ?4, given_up_urls = ?5, last_error = ?6,
                    claimed_by = NULL, claim_until = NULL {fence}"
            ))?
            .execute(params![
                outcome.delivery_id,
                outcome.claimer,
                outcome.first_attempt_at_ms,
                at_ms,
                list_to_text(given_up_urls),
                last_error
            ])?,
        DeliveryUpdate::Dead { reason } => conn
            .prepare_cached(&format!(
                "UPDATE deliveries SET state = 'dead', attempts = attempts + 1,
                    first_attempt_at = ?3, last_error = ?4, finished_at = ?5,
                    claimed_by = NULL, claim_until = NULL {fence}"
            ))?
            .execute(params![
                outcome.delivery_id,
                outcome.claimer,
                outcome.first_attempt_at_ms,
                reason,
                outcome.now_ms
            ])?,
    };
    if changed == 0 {
        return Ok(());
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO attempts (delivery_id, attempted_at, url, status, error, latency_ms, response_body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for a in &outcome.attempts {
        insert.execute(params![
            outcome.delivery_id,
            a.attempted_at_ms,
            a.url,
            a.status,
            a.error,
            i64::try_from(a.latency_ms).unwrap_or(i64::MAX),
            a.response_body
        ])?;
    }
    if let Some(error) = &last_error {
        conn.prepare_cached(
            "INSERT OR REPLACE INTO destination_errors (source, destination, error, at)
             SELECT source, destination, ?2, ?3 FROM deliveries WHERE id = ?1",
        )?
        .execute(params![outcome.delivery_id, error, outcome.now_ms])?;
    }
    Ok(())
}
