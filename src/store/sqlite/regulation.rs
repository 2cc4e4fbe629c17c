//! Applying user deletion requests, and the suppressions they leave.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::message_keys::{self, RecentKeys};
use serde_json::json;

use crate::store::{
    NotificationProgress, PurgedDelivery, Regulation, RegulationApplied, RegulationPlan,
    RegulationProgress, RegulationType, StoreError, Suppression,
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

pub(super) fn recent(conn: &Connection, limit: usize) -> Result<Vec<Regulation>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {REGULATION_COLUMNS} FROM regulations ORDER BY created_at DESC, id DESC LIMIT ?1"
    ))?;
    let regulations = stmt
        .query_map(params![limit as i64], regulation_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(regulations)
}

pub(super) fn apply(
    conn: &Connection,
    keys: &mut RecentKeys,
    plan: &RegulationPlan,
) -> Result<RegulationApplied, StoreError> {
    let applied: Option<Option<i64>> = conn
        .query_row(
            "SELECT applied_at FROM regulations WHERE id = ?1",
            params![plan.regulation_id],
            |row| row.get(0),
        )
        .optional()?;
    if !matches!(applied, Some(None)) {
        return Ok(RegulationApplied::default()); // Unknown, or applied already.
    }
    let now = plan.now_ms;
    let covered = |source: &str| {
        plan.sources
            .as_ref()
            .is_none_or(|listed| listed.iter().any(|s| s == source))
    };
    let mut outcome = RegulationApplied::default();
    let mut deliveries_of =
        conn.prepare_cached("SELECT id, destination, state FROM deliveries WHERE event_id = ?1")?;
    // Attempts and deliveries go with their event (ON DELETE CASCADE).
    let mut delete_event = conn.prepare_cached("DELETE FROM events WHERE id = ?1")?;
    let mut suppress = conn.prepare_cached(
        "INSERT OR REPLACE INTO suppressions (source, user_id, regulation_id, created_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    // Every event of each subject, delivered or not (the notifications of earlier
    // regulations stay: they are what receivers were told).
    let events = super::user_events::events_of_users(conn, keys, &plan.subject_ids)?;
    for (event_id, source) in events.into_iter().filter(|(_, s)| covered(s)) {
        let deliveries: Vec<(i64, String, String)> = deliveries_of
            .query_map(params![event_id], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?
            .collect::<Result<_, _>>()?;
        for (delivery_id, destination, state) in deliveries {
            if state != "delivered" {
                outcome.undelivered_removed += 1;
            }
            if state == "pending" {
                outcome.purged.push(PurgedDelivery {
                    source: source.clone(),
                    destination,
                    delivery_id,
                });
            }
        }
        delete_event.execute(params![event_id])?;
        outcome.events_removed += 1;
    }
    for source in &plan.suppress_in {
        for user_id in &plan.subject_ids {
            suppress.execute(params![source, user_id, plan.regulation_id, now])?;
        }
    }
    let mut insert_event = conn.prepare_cached(
        "INSERT INTO events (source, message_id, user_id, type, received_at, body)
         VALUES (?1, ?2, ?3, 'delete', ?4, ?5)",
    )?;
    let mut insert_delivery = conn.prepare_cached(
        "INSERT INTO deliveries (event_id, source, destination, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut link = conn.prepare_cached(
        "INSERT INTO regulation_events (regulation_id, event_id) VALUES (?1, ?2)",
    )?;
    // Deleting the newest events may have freed their ids for these.
    let indexed_upto = message_keys::indexed_upto(conn)?;
    for notification in &plan.notifications {
        insert_event.execute(params![
            notification.source,
            notification.message_id,
            notification.user_id,
            now,
            notification.body
        ])?;
        let event_id = conn.last_insert_rowid();
        let key = message_keys::message_key(&notification.source, &notification.message_id);
        keys.index_if_reused(conn, indexed_upto, key, event_id)?;
        link.execute(params![plan.regulation_id, event_id])?;
        for destination in &notification.destinations {
            insert_delivery.execute(params![event_id, notification.source, destination, now])?;
        }
    }
    conn.execute(
        "UPDATE regulations SET applied_at = ?2, purged_deliveries = ?3 WHERE id = ?1",
        params![plan.regulation_id, now, outcome.undelivered_removed as i64],
    )?;
    Ok(outcome)
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
    let mut stmt = conn.prepare_cached(
        "SELECT d.source, d.destination, count(*),
                sum(d.state = 'delivered'), sum(d.state = 'pending'), sum(d.state = 'dead')
         FROM regulation_events r JOIN deliveries d ON d.event_id = r.event_id
         WHERE r.regulation_id = ?1
         GROUP BY d.source, d.destination ORDER BY d.source, d.destination",
    )?;
    let notifications = stmt
        .query_map(params![id], |row| {
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
