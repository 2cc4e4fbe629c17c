//! Destinations' controls (disabled, URLs gone, failing since), and retention.

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::encoding::{list_from_text, list_to_text};
use crate::store::{ControlChange, DestinationControl, Prune, StoreError};

pub(super) fn controls(conn: &Connection) -> Result<Vec<DestinationControl>, StoreError> {
    let list = conn
        .prepare_cached(
            "SELECT source, destination, disabled_at, disabled_reason, gone_urls, failing_since
             FROM destination_controls",
        )?
        .query_map([], |r| {
            Ok(DestinationControl {
                source: r.get(0)?,
                destination: r.get(1)?,
                disabled_at_ms: r.get(2)?,
                disabled_reason: r.get(3)?,
                gone_urls: list_from_text(r.get(4)?),
                failing_since_ms: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(list)
}

pub(super) fn change(
    conn: &Connection,
    source: &str,
    destination: &str,
    change: &ControlChange,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO destination_controls (source, destination) VALUES (?1, ?2)",
    )?
    .execute(params![source, destination])?;
    let key = params![source, destination];
    match change {
        ControlChange::UrlGone { url } => {
            let gone: Option<String> = conn
                .query_row(
                    "SELECT gone_urls FROM destination_controls WHERE source = ?1 AND destination = ?2",
                    key,
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
            let mut urls = list_from_text(gone);
            if !urls.contains(url) {
                urls.push(url.clone());
            }
            conn.execute(
                "UPDATE destination_controls SET gone_urls = ?3 WHERE source = ?1 AND destination = ?2",
                params![source, destination, list_to_text(&urls)],
            )?;
        }
        ControlChange::Failing { since_ms } => {
            conn.execute(
                "UPDATE destination_controls SET failing_since = ?3 WHERE source = ?1 AND destination = ?2",
                params![source, destination, since_ms],
            )?;
        }
        ControlChange::Disabled { reason, at_ms } => {
            conn.execute(
                "UPDATE destination_controls SET disabled_at = ?3, disabled_reason = ?4
                 WHERE source = ?1 AND destination = ?2",
                params![source, destination, at_ms, reason],
            )?;
        }
        ControlChange::Enabled => {
            conn.execute(
                "DELETE FROM destination_controls WHERE source = ?1 AND destination = ?2",
                key,
            )?;
        }
        ControlChange::UrlsReset => {
            conn.execute(
                "UPDATE destination_controls SET gone_urls = NULL WHERE source = ?1 AND destination = ?2",
                key,
            )?;
        }
    }
    Ok(())
}

/// One pruning step: up to `limit` events after `after_id`, oldest first; those finished
/// long enough go, with their deliveries and attempts. The dedupe window lives in the
/// events here, so it goes with them.
/// The first step of pruning, on a reader: the events of the next page old enough to
/// go whose deliveries are all finished, and where the next page starts. Reading here
/// keeps the writer (and so ingest) free while the page is scanned.
pub(super) fn prune_candidates(
    conn: &Connection,
    prune: &Prune,
) -> Result<(Vec<i64>, Option<i64>), StoreError> {
    let rows: Vec<(i64, i64, bool)> = conn
        .prepare_cached(
            "SELECT e.id, e.received_at,
                    e.type != 'delete' AND NOT EXISTS (SELECT 1 FROM deliveries d
                        WHERE d.event_id = e.id
                          AND (d.state = 'pending'
                               OR (d.state = 'delivered' AND d.finished_at >= ?2)
                               OR (d.state = 'dead' AND d.finished_at >= ?3)))
             FROM events e WHERE e.id > ?1 ORDER BY e.id LIMIT ?4",
        )?
        .query_map(
            params![
                prune.after_id,
                prune.delivered_before_ms,
                prune.dead_before_ms,
                prune.limit as i64
            ],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?
        .collect::<Result<_, _>>()?;
    // An event is also its dedupe entry here: none goes while inside the window.
    let received_before = prune.delivered_before_ms.min(prune.dedupe_before_ms);
    let mut ids = Vec::new();
    let mut next_after = None;
    for (id, received_at, finished) in rows {
        if received_at >= received_before {
            // Too recent from here on (ids grow with time): this pass is done.
            return Ok((ids, None));
        }
        if finished {
            ids.push(id);
        }
        next_after = Some(id);
    }
    Ok((ids, next_after))
}

/// The second step, in the writer: removes those candidates that are still finished (a
/// replay may have made one pending since it was read), with their deliveries and
/// attempts.
pub(super) fn prune_events(
    conn: &Connection,
    ids: &[i64],
    prune: &Prune,
) -> Result<u64, StoreError> {
    let mut delete = conn.prepare_cached(
        "DELETE FROM events WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM deliveries d
             WHERE d.event_id = ?1
               AND (d.state = 'pending'
                    OR (d.state = 'delivered' AND d.finished_at >= ?2)
                    OR (d.state = 'dead' AND d.finished_at >= ?3)))",
    )?;
    let mut removed = 0;
    for id in ids {
        removed +=
            delete.execute(params![id, prune.delivered_before_ms, prune.dead_before_ms])? as u64;
    }
    Ok(removed)
}
