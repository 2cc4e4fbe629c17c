//! Applying user deletion requests, and the suppressions they leave.

use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::json;

use super::now_ms;
use crate::segment::time::format_iso8601;
use crate::segment::to_canonical_json;
use crate::store::{
    NotificationProgress, PurgedDelivery, Regulation, RegulationPlan, RegulationProgress,
    RegulationType, StoreError, Suppression,
};

pub(super) fn add(conn: &Connection, regulation: &Regulation) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO regulations (id, type, subject_ids, sources, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            regulation.id,
            regulation.regulation_type.as_str(),
            json!(regulation.subject_ids).to_string(),
            regulation.sources.as_ref().map(|s| json!(s).to_string()),
            regulation.created_at_ms
        ],
    )?;
    Ok(())
}

const REGULATION_COLUMNS: &str = "id, type, subject_ids, sources, created_at, applied_at";

fn regulation_from_row(row: &Row<'_>) -> rusqlite::Result<Regulation> {
    let parse_list = |text: String| serde_json::from_str::<Vec<String>>(&text).unwrap_or_default();
    Ok(Regulation {
        id: row.get(0)?,
        regulation_type: RegulationType::from_name(&row.get::<_, String>(1)?)
            .unwrap_or(RegulationType::DeleteOnly),
        subject_ids: parse_list(row.get(2)?),
        sources: row.get::<_, Option<String>>(3)?.map(parse_list),
        created_at_ms: row.get(4)?,
        applied_at_ms: row.get(5)?,
    })
}

pub(super) fn unapplied(conn: &Connection) -> Result<Vec<Regulation>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {REGULATION_COLUMNS} FROM regulations WHERE applied_at IS NULL ORDER BY created_at, id"
    ))?;
    let regulations = stmt
        .query_map([], regulation_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(regulations)
}

/// The message id of the notification to `subject_index` of a regulation: it ties the
/// notification to its regulation for progress reports, and sorts within one prefix.
fn notification_message_id(regulation_id: &str, subject_index: usize) -> String {
    format!("delete-{regulation_id}-{subject_index}")
}

pub(super) fn apply(
    conn: &Connection,
    plan: &RegulationPlan,
) -> Result<Vec<PurgedDelivery>, StoreError> {
    let applied: Option<Option<i64>> = conn
        .query_row(
            "SELECT applied_at FROM regulations WHERE id = ?1",
            params![plan.regulation_id],
            |row| row.get(0),
        )
        .optional()?;
    if !matches!(applied, Some(None)) {
        return Ok(Vec::new()); // Unknown, or applied already.
    }
    let now = now_ms();
    let subjects: HashSet<&str> = plan.subject_ids.iter().map(String::as_str).collect();
    let mut purged = Vec::new();
    let mut undelivered = conn.prepare_cached(
        "SELECT d.id, d.destination, d.state, e.id, e.user_id
         FROM deliveries d JOIN events e ON e.id = d.event_id
         WHERE d.source = ?1 AND d.state IN ('pending', 'dead') AND e.type != 'delete'",
    )?;
    let mut delete_delivery = conn.prepare_cached("DELETE FROM deliveries WHERE id = ?1")?;
    let mut delete_event = conn.prepare_cached(
        "DELETE FROM events WHERE id = ?1
         AND NOT EXISTS (SELECT 1 FROM deliveries WHERE event_id = ?1)",
    )?;
    let mut suppress = conn.prepare_cached(
        "INSERT OR REPLACE INTO suppressions (source, user_id, regulation_id, created_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut insert_event = conn.prepare_cached(
        "INSERT INTO events (source, message_id, user_id, type, received_at, body)
         VALUES (?1, ?2, ?3, 'delete', ?4, ?5)",
    )?;
    let mut insert_delivery = conn.prepare_cached(
        "INSERT INTO deliveries (event_id, source, destination, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    let timestamp =
        format_iso8601(chrono::DateTime::from_timestamp_millis(now).unwrap_or_default());
    for (source, destinations) in &plan.sources {
        // Undelivered deliveries are found through the backlog, not a user index: the
        // backlog is what may hold them, and ingest stays free of another random index.
        let rows: Vec<(i64, String, String, i64)> = undelivered
            .query_map(params![source], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get::<_, Option<String>>(4)?,
                ))
            })?
            .filter_map(|row| match row {
                Ok((id, destination, state, event_id, Some(user)))
                    if subjects.contains(user.as_str()) =>
                {
                    Some(Ok((id, destination, state, event_id)))
                }
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, _>>()?;
        let mut events = HashSet::new();
        for (delivery_id, destination, state, event_id) in rows {
            delete_delivery.execute(params![delivery_id])?;
            events.insert(event_id);
            if state == "pending" {
                purged.push(PurgedDelivery {
                    source: source.clone(),
                    destination,
                    delivery_id,
                });
            }
        }
        for event_id in events {
            delete_event.execute(params![event_id])?;
        }
        for (index, user_id) in plan.subject_ids.iter().enumerate() {
            if plan.suppress {
                suppress.execute(params![source, user_id, plan.regulation_id, now])?;
            }
            if destinations.is_empty() {
                continue;
            }
            let body = to_canonical_json(
                &json!({"type": "delete", "userId": user_id, "timestamp": timestamp}),
            );
            insert_event.execute(params![
                source,
                notification_message_id(&plan.regulation_id, index),
                user_id,
                now,
                body
            ])?;
            let event_id = conn.last_insert_rowid();
            for destination in destinations {
                insert_delivery.execute(params![event_id, source, destination, now])?;
            }
        }
    }
    conn.execute(
        "UPDATE regulations SET applied_at = ?2, purged_deliveries = ?3 WHERE id = ?1",
        params![plan.regulation_id, now, purged.len() as i64],
    )?;
    Ok(purged)
}

pub(super) fn progress(
    conn: &Connection,
    id: &str,
) -> Result<Option<RegulationProgress>, StoreError> {
    let found = conn
        .query_row(
            &format!(
                "SELECT {REGULATION_COLUMNS}, purged_deliveries FROM regulations WHERE id = ?1"
            ),
            params![id],
            |row| Ok((regulation_from_row(row)?, row.get::<_, i64>(6)?)),
        )
        .optional()?;
    let Some((regulation, purged)) = found else {
        return Ok(None);
    };
    // Notification message ids are `delete-<id>-<n>`: a range on the message index.
    let low = format!("delete-{id}-");
    let high = format!("delete-{id}.");
    let mut stmt = conn.prepare_cached(
        "SELECT d.source, d.destination, count(*),
                sum(d.state = 'delivered'), sum(d.state = 'pending'), sum(d.state = 'dead')
         FROM events e JOIN deliveries d ON d.event_id = e.id
         WHERE e.message_id >= ?1 AND e.message_id < ?2 AND e.type = 'delete'
         GROUP BY d.source, d.destination ORDER BY d.source, d.destination",
    )?;
    let notifications = stmt
        .query_map(params![low, high], |row| {
            Ok(NotificationProgress {
                source: row.get(0)?,
                destination: row.get(1)?,
                total: row.get::<_, i64>(2)? as u64,
                delivered: row.get::<_, i64>(3)? as u64,
                pending: row.get::<_, i64>(4)? as u64,
                dead: row.get::<_, i64>(5)? as u64,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(RegulationProgress {
        regulation,
        purged_deliveries: purged as u64,
        notifications,
    }))
}

pub(super) fn suppressions(conn: &Connection) -> Result<Vec<Suppression>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT source, user_id, regulation_id, created_at FROM suppressions ORDER BY source, user_id",
    )?;
    let list = stmt
        .query_map([], |row| {
            Ok(Suppression {
                source: row.get(0)?,
                user_id: row.get(1)?,
                regulation_id: row.get(2)?,
                created_at_ms: row.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(list)
}

pub(super) fn lift_suppression(
    conn: &Connection,
    source: &str,
    user_id: &str,
) -> Result<bool, StoreError> {
    let removed = conn.execute(
        "DELETE FROM suppressions WHERE source = ?1 AND user_id = ?2",
        params![source, user_id],
    )?;
    Ok(removed > 0)
}
