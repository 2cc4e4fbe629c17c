//! Recording delivery attempts and their outcome.

use rusqlite::{params, Connection};

use super::now_ms;
use crate::store::{AttemptOutcome, DeliveryUpdate, StoreError};

pub(super) fn record_attempt(
    conn: &Connection,
    outcome: &AttemptOutcome,
) -> Result<(), StoreError> {
    // A delivery purged by a regulation while its attempt was on the wire is gone: its
    // attempt is not kept either.
    let exists = conn
        .prepare_cached("SELECT 1 FROM deliveries WHERE id = ?1")?
        .exists(params![outcome.delivery_id])?;
    if !exists {
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
            a.latency_ms,
            a.response_body
        ])?;
    }
    let last_error = outcome.attempts.iter().rev().find_map(|a| a.error.clone());
    let now = now_ms();
    if let Some(error) = &last_error {
        conn.prepare_cached(
            "INSERT OR REPLACE INTO destination_errors (source, destination, error, at)
             SELECT source, destination, ?2, ?3 FROM deliveries WHERE id = ?1",
        )?
        .execute(params![outcome.delivery_id, error, now])?;
    }
    // `state = 'pending'` keeps a purged or already finished delivery as it is.
    match &outcome.update {
        DeliveryUpdate::Delivered => conn
            .prepare_cached(
                "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1,
                    first_attempt_at = ?2, finished_at = ?3
                 WHERE id = ?1 AND state = 'pending'",
            )?
            .execute(params![
                outcome.delivery_id,
                outcome.first_attempt_at_ms,
                now
            ])?,
        DeliveryUpdate::RetryAt { at_ms, retry_urls } => conn
            .prepare_cached(
                "UPDATE deliveries SET attempts = attempts + 1, first_attempt_at = ?2,
                    next_attempt_at = ?3, retry_urls = ?4, last_error = ?5
                 WHERE id = ?1 AND state = 'pending'",
            )?
            .execute(params![
                outcome.delivery_id,
                outcome.first_attempt_at_ms,
                at_ms,
                i64::from(*retry_urls),
                last_error
            ])?,
        DeliveryUpdate::Dead { reason } => conn
            .prepare_cached(
                "UPDATE deliveries SET state = 'dead', attempts = attempts + 1,
                    first_attempt_at = ?2, last_error = ?3, finished_at = ?4
                 WHERE id = ?1 AND state = 'pending'",
            )?
            .execute(params![
                outcome.delivery_id,
                outcome.first_attempt_at_ms,
                reason,
                now
            ])?,
    };
    Ok(())
}
