//! Claiming due deliveries under a lease, and recording attempts under the claim.

use rusqlite::{params, Connection};

use crate::store::attempt_counts::{last_hour_from, started_a_minute, AttemptCounts};
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

/// Records `outcomes`, each under its claim, and counts the attempts of those recorded,
/// one row write per destination and minute for all of them.
pub(super) fn record_attempts<'a>(
    conn: &Connection,
    outcomes: impl IntoIterator<Item = &'a AttemptOutcome>,
) -> Result<(), StoreError> {
    let mut counts = AttemptCounts::default();
    let mut now_ms = i64::MIN;
    for outcome in outcomes {
        if let Some((source, destination)) = record_attempt(conn, outcome)? {
            counts.add(&source, &destination, &outcome.attempts);
            now_ms = now_ms.max(outcome.now_ms);
        }
    }
    count_attempts(conn, &counts, now_ms)
}

/// Records one outcome if its claim holds; answers the delivery's source and destination
/// then, `None` when fenced off.
fn record_attempt(
    conn: &Connection,
    outcome: &AttemptOutcome,
) -> Result<Option<(String, String)>, StoreError> {
    let last_error = outcome.attempts.iter().rev().find_map(|a| a.error.clone());
    // The claim fences the write: a delivery purged, finished or claimed by another since
    // is left as it is. (Whole literals: the statement cache is looked up by the text.)
    macro_rules! fenced_update {
        ($set:literal) => {
            concat!(
                "UPDATE deliveries SET ",
                $set,
                " WHERE id = ?1 AND state = 'pending' AND claimed_by = ?2"
            )
        };
    }
    let changed = match &outcome.update {
        DeliveryUpdate::Delivered => conn
            .prepare_cached(fenced_update!(
                "state = 'delivered', attempts = attempts + 1,
                    first_attempt_at = ?3, finished_at = ?4, last_error = NULL,
                    claimed_by = NULL, claim_until = NULL"
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
            .prepare_cached(fenced_update!(
                "attempts = attempts + 1, first_attempt_at = ?3,
                    next_attempt_at = ?4, given_up_urls = ?5, last_error = ?6,
                    claimed_by = NULL, claim_until = NULL"
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
            .prepare_cached(fenced_update!(
                "state = 'dead', attempts = attempts + 1,
                    first_attempt_at = ?3, last_error = ?4, finished_at = ?5,
                    claimed_by = NULL, claim_until = NULL"
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
        return Ok(None);
    }
    // Not by RETURNING, which doubles the cost of the update: the row is in the cache.
    let (source, destination): (String, String) = conn
        .prepare_cached("SELECT source, destination FROM deliveries WHERE id = ?1")?
        .query_row(params![outcome.delivery_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
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
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![source, destination, error, outcome.now_ms])?;
    }
    Ok(Some((source, destination)))
}

/// Adds `counts` to `attempt_counts`; a destination's first row of a minute removes its
/// rows older than the hour at `now_ms`.
fn count_attempts(
    conn: &Connection,
    counts: &AttemptCounts,
    now_ms: i64,
) -> Result<(), StoreError> {
    let mut add = conn.prepare_cached(
        "INSERT INTO attempt_counts (source, destination, minute, attempts, successes)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (source, destination, minute) DO UPDATE
             SET attempts = attempts + excluded.attempts,
                 successes = successes + excluded.successes
         RETURNING attempts",
    )?;
    for ((source, destination, minute), tally) in counts.iter() {
        let total: i64 = add.query_row(
            params![source, destination, minute, tally.attempts, tally.successes],
            |r| r.get(0),
        )?;
        if started_a_minute(tally, total) {
            conn.prepare_cached(
                "DELETE FROM attempt_counts
                 WHERE source = ?1 AND destination = ?2 AND minute < ?3",
            )?
            .execute(params![source, destination, last_hour_from(now_ms)])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AttemptRecord;

    #[test]
    fn attempt_counts_keep_about_an_hour_per_destination() {
        let conn = Connection::open_in_memory().unwrap();
        super::super::message_keys::register(&conn).unwrap();
        super::super::schema::migrate(&conn).unwrap();
        conn.execute(
            "INSERT INTO events (id, source, message_id, type, received_at, body)
             VALUES (1, 'web', 'm', 'track', 0, '{}')",
            [],
        )
        .unwrap();
        // Three hours of attempts, one a minute, each on a delivery claimed by "a".
        let start = 1_700_000_000_000;
        for minute in 0..180 {
            let at_ms = start + minute * 60_000;
            conn.execute(
                "INSERT INTO deliveries (id, event_id, source, destination, next_attempt_at, claimed_by)
                 VALUES (?1, 1, 'web', 'd', 0, 'a')",
                params![minute + 1],
            )
            .unwrap();
            let outcome = AttemptOutcome {
                delivery_id: minute + 1,
                claimer: "a".into(),
                now_ms: at_ms,
                first_attempt_at_ms: at_ms,
                attempts: vec![AttemptRecord {
                    attempted_at_ms: at_ms,
                    url: "http://r/".into(),
                    status: Some(200),
                    error: None,
                    latency_ms: 1,
                    response_body: None,
                }],
                update: DeliveryUpdate::Delivered,
            };
            record_attempts(&conn, [&outcome]).unwrap();
        }
        let (rows, attempts): (i64, i64) = conn
            .query_row(
                "SELECT count(*), sum(attempts) FROM attempt_counts",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((rows, attempts), (60, 60));
    }
}
