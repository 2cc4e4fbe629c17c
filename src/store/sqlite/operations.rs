//! What operators need: destination health, dead letters and their replay, pausing.

use std::collections::BTreeMap;

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection};

use crate::store::attempt_counts::last_hour_from;
use crate::store::{DeadLetter, DeadLetterQuery, DestinationStats, ReplaySelection, StoreError};

pub(super) fn destination_stats(
    conn: &Connection,
    now: i64,
) -> Result<Vec<DestinationStats>, StoreError> {
    let mut stats: BTreeMap<(String, String), DestinationStats> = BTreeMap::new();
    let mut pending = conn.prepare_cached(
        "SELECT g.source, g.destination, g.n, e.received_at
         FROM (SELECT source, destination, count(*) AS n, min(id) AS oldest
               FROM deliveries WHERE state = 'pending' GROUP BY source, destination) g
         JOIN deliveries o ON o.id = g.oldest JOIN events e ON e.id = o.event_id",
    )?;
    let rows = pending.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?, r.get(3)?))
    })?;
    for row in rows {
        let (source, destination, count, oldest) = row?;
        let s = entry(&mut stats, source, destination);
        s.pending = count as u64;
        s.oldest_pending_received_at_ms = oldest;
    }
    let mut dead = conn.prepare_cached(
        "SELECT source, destination, count(*) FROM deliveries WHERE state = 'dead' GROUP BY source, destination",
    )?;
    for row in dead.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?)))? {
        let (source, destination, count) = row?;
        entry(&mut stats, source, destination).dead = count as u64;
    }
    let mut recent = conn.prepare_cached(
        "SELECT source, destination, sum(attempts), sum(successes) FROM attempt_counts
         WHERE minute >= ?1 GROUP BY source, destination",
    )?;
    let rows = recent.query_map(params![last_hour_from(now)], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    for row in rows {
        let (source, destination, attempts, successes) = row?;
        let s = entry(&mut stats, source, destination);
        s.attempts_last_hour = attempts as u64;
        s.successes_last_hour = successes as u64;
    }
    let mut errors =
        conn.prepare_cached("SELECT source, destination, error, at FROM destination_errors")?;
    for row in errors.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))? {
        let (source, destination, error, at) = row?;
        let s = entry(&mut stats, source, destination);
        s.last_error = Some(error);
        s.last_error_at_ms = Some(at);
    }
    for (source, destination) in paused(conn)? {
        entry(&mut stats, source, destination).paused = true;
    }
    Ok(stats.into_values().collect())
}

fn entry(
    stats: &mut BTreeMap<(String, String), DestinationStats>,
    source: String,
    destination: String,
) -> &mut DestinationStats {
    stats
        .entry((source.clone(), destination.clone()))
        .or_insert_with(|| DestinationStats {
            source,
            destination,
            ..DestinationStats::default()
        })
}

pub(super) fn dead_letters(
    conn: &Connection,
    query: &DeadLetterQuery,
) -> Result<Vec<DeadLetter>, StoreError> {
    let mut sql = String::from(
        "SELECT d.id, d.source, d.destination, e.message_id, e.type, d.attempts, d.last_error,
                d.finished_at, d.first_attempt_at
         FROM deliveries d JOIN events e ON e.id = d.event_id WHERE d.state = 'dead'",
    );
    let mut values: Vec<SqlValue> = Vec::new();
    let mut filter = |clause: &str, value: SqlValue| {
        values.push(value);
        sql.push_str(&format!(" AND {clause} ?{}", values.len()));
    };
    if let Some(source) = &query.source {
        filter("d.source =", SqlValue::Text(source.clone()));
    }
    if let Some(destination) = &query.destination {
        filter("d.destination =", SqlValue::Text(destination.clone()));
    }
    if let Some(since) = query.since_ms {
        filter("d.finished_at >=", SqlValue::Integer(since));
    }
    if let Some(until) = query.until_ms {
        filter("d.finished_at <", SqlValue::Integer(until));
    }
    if let Some(after) = query.after_id {
        filter("d.id >", SqlValue::Integer(after));
    }
    sql.push_str(&format!(" ORDER BY d.id LIMIT {}", query.limit));
    let mut stmt = conn.prepare(&sql)?;
    let letters = stmt
        .query_map(params_from_iter(values), |r| {
            Ok(DeadLetter {
                delivery_id: r.get(0)?,
                source: r.get(1)?,
                destination: r.get(2)?,
                message_id: r.get(3)?,
                event_type: r.get(4)?,
                attempt_count: r.get(5)?,
                last_error: r.get(6)?,
                dead_at_ms: r.get::<_, Option<i64>>(7)?.unwrap_or(0),
                first_attempt_at_ms: r.get(8)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(letters)
}

pub(super) fn replay(
    conn: &Connection,
    selection: &ReplaySelection,
    now: i64,
) -> Result<Vec<(String, String, u64)>, StoreError> {
    // A fresh retry window (first_attempt_at NULL) and every URL again.
    let revive = "UPDATE deliveries SET state = 'pending', next_attempt_at = ?1,
                  first_attempt_at = NULL, given_up_urls = NULL, finished_at = NULL,
                  claimed_by = NULL, claim_until = NULL";
    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    match selection {
        ReplaySelection::Ids { ids, within } => {
            let mut find = conn.prepare_cached(
                "SELECT source, destination FROM deliveries WHERE id = ?1 AND state = 'dead'",
            )?;
            let mut update =
                conn.prepare_cached(&format!("{revive} WHERE id = ?2 AND state = 'dead'"))?;
            for id in ids {
                let found: Option<(String, String)> = find
                    .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .ok();
                if let Some(key) = found.filter(|key| within.contains(key)) {
                    update.execute(params![now, id])?;
                    *counts.entry(key).or_default() += 1;
                }
            }
        }
        ReplaySelection::Destination {
            source,
            destination,
            since_ms,
            until_ms,
        } => {
            let changed = conn.execute(
                &format!(
                    "{revive} WHERE state = 'dead' AND source = ?2 AND destination = ?3
                     AND finished_at >= ?4 AND finished_at < ?5"
                ),
                params![
                    now,
                    source,
                    destination,
                    since_ms.unwrap_or(i64::MIN),
                    until_ms.unwrap_or(i64::MAX)
                ],
            )?;
            if changed > 0 {
                counts.insert((source.clone(), destination.clone()), changed as u64);
            }
        }
    }
    Ok(counts.into_iter().map(|((s, d), n)| (s, d, n)).collect())
}

pub(super) fn set_paused(
    conn: &Connection,
    source: &str,
    destination: &str,
    paused: bool,
    now: i64,
) -> Result<(), StoreError> {
    if paused {
        conn.execute(
            "INSERT OR IGNORE INTO paused_destinations (source, destination, paused_at) VALUES (?1, ?2, ?3)",
            params![source, destination, now],
        )?;
    } else {
        conn.execute(
            "DELETE FROM paused_destinations WHERE source = ?1 AND destination = ?2",
            params![source, destination],
        )?;
    }
    Ok(())
}

pub(super) fn paused(conn: &Connection) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT source, destination FROM paused_destinations")?;
    let pairs = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(pairs)
}

/// See [`crate::store::Store::rename_destination`].
pub(super) fn rename_destination(
    conn: &Connection,
    source: &str,
    from: &str,
    to: &str,
) -> Result<u64, StoreError> {
    let moved = conn
        .prepare_cached(
            "UPDATE deliveries SET destination = ?3, claimed_by = NULL, claim_until = NULL
             WHERE source = ?1 AND destination = ?2",
        )?
        .execute(params![source, from, to])?;
    for table in [
        "paused_destinations",
        "destination_controls",
        "destination_errors",
    ] {
        // The new name's own row, if it has one, wins.
        conn.prepare_cached(&format!(
            "UPDATE OR IGNORE {table} SET destination = ?3 WHERE source = ?1 AND destination = ?2"
        ))?
        .execute(params![source, from, to])?;
        conn.prepare_cached(&format!(
            "DELETE FROM {table} WHERE source = ?1 AND destination = ?2"
        ))?
        .execute(params![source, from])?;
    }
    // The counts of both names add up, minute by minute.
    conn.prepare_cached(
        "INSERT INTO attempt_counts (source, destination, minute, attempts, successes)
         SELECT source, ?3, minute, attempts, successes FROM attempt_counts
         WHERE source = ?1 AND destination = ?2
         ON CONFLICT (source, destination, minute) DO UPDATE
             SET attempts = attempts + excluded.attempts,
                 successes = successes + excluded.successes",
    )?
    .execute(params![source, from, to])?;
    conn.prepare_cached("DELETE FROM attempt_counts WHERE source = ?1 AND destination = ?2")?
        .execute(params![source, from])?;
    conn.prepare_cached("DELETE FROM destination_leases WHERE source = ?1 AND destination = ?2")?
        .execute(params![source, from])?;
    Ok(moved as u64)
}
