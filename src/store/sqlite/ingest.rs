//! Writing accepted events with their pending deliveries; dedupe and suppression.

use rusqlite::{params, Connection};

use super::message_keys::{self, message_key, RecentKeys};
use crate::store::{Appended, NewEvent, StoreError};

pub(super) fn append_events(
    conn: &Connection,
    keys: &mut RecentKeys,
    events: &[NewEvent],
) -> Result<Vec<Appended>, StoreError> {
    let mut suppressed =
        conn.prepare_cached("SELECT 1 FROM suppressions WHERE source = ?1 AND user_id = ?2")?;
    let mut insert_event = conn.prepare_cached(
        "INSERT INTO events (source, message_id, user_id, type, received_at, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut insert_delivery = conn.prepare_cached(
        "INSERT INTO deliveries (event_id, source, destination, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    // As this transaction sees it (a flush earlier in it may have moved it).
    let indexed_upto = message_keys::indexed_upto(conn)?;
    let mut outcomes = Vec::with_capacity(events.len());
    for event in events {
        // Checked here, in the writer, so that no event slips in while a suppression commits.
        if let Some(user_id) = &event.user_id {
            if suppressed.exists(params![event.source, user_id])? {
                outcomes.push(Appended::Suppressed);
                continue;
            }
        }
        let key = message_key(&event.source, &event.message_id);
        if let Some(since) = event.dedupe_since_ms {
            let received_at = keys.last_received(conn, &event.source, &event.message_id, key)?;
            if received_at.is_some_and(|t| t > since) {
                outcomes.push(Appended::Duplicate);
                continue;
            }
        }
        insert_event.execute(params![
            event.source,
            event.message_id,
            event.user_id,
            event.event_type,
            event.received_at_ms,
            event.body
        ])?;
        let event_id = conn.last_insert_rowid();
        keys.note(key, event.user_id.as_deref(), event_id);
        keys.index_if_reused(conn, indexed_upto, key, event_id)?;
        for destination in &event.destinations {
            insert_delivery.execute(params![
                event_id,
                event.source,
                destination,
                event.received_at_ms
            ])?;
        }
        outcomes.push(Appended::Stored { event_id });
    }
    Ok(outcomes)
}
