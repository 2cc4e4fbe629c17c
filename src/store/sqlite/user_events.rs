//! Finding a user's events (deletion requests, the admin API) without an index write per
//! event.
//!
//! As an index on `events (user_id)`, every event inserted an entry among all users'
//! entries, which dirtied a page of its own in each commit: a fifth of batch ingest's cost.
//! `user_events` is filled instead in sorted groups, together with `message_keys` (see
//! message_keys.rs), and holds the events up to `message_keys_upto.indexed_upto`. The
//! newer ones (up to about [`super::message_keys::FLUSH_AT_MOST`]) are found in the
//! writer through its view of them ([`RecentKeys`]), which knows each one's user by a
//! hash; readers scan them.

use std::collections::HashSet;

use rusqlite::{params, Connection};

use super::message_keys::{user_key, RecentKeys};
use super::{event_from_row, EVENT_COLUMNS};
use crate::store::{StoreError, StoredEvent};

/// Adds the events with ids in `(after, upto]` to `user_events`, sorted so that each leaf
/// is written once. Runs in the flush's transaction.
pub(super) fn index_range(conn: &Connection, after: i64, upto: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO user_events (user_id, event_id)
         SELECT user_id, id FROM events
         WHERE id > ?1 AND id <= ?2 AND user_id IS NOT NULL ORDER BY 1, 2",
    )?
    .execute(params![after, upto])?;
    Ok(())
}

/// Indexes one event at once (one given an id the index already covers).
pub(super) fn index_one(conn: &Connection, event_id: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO user_events (user_id, event_id)
         SELECT user_id, id FROM events WHERE id = ?1 AND user_id IS NOT NULL",
    )?
    .execute(params![event_id])?;
    Ok(())
}

/// `(id, source)` of every event of the users in `users`, delete notifications left out.
/// Runs in the writer's transaction, which sees `indexed_upto` as it is, with the
/// writer's view of the newer events.
pub(super) fn events_of_users(
    conn: &Connection,
    keys: &RecentKeys,
    users: &[String],
) -> Result<Vec<(i64, String)>, StoreError> {
    let upto = super::message_keys::indexed_upto(conn)?;
    let mut indexed = conn.prepare_cached(
        "SELECT id, source FROM events
         WHERE id IN (SELECT event_id FROM user_events WHERE user_id = ?1)
           AND type != 'delete'",
    )?;
    let mut found = Vec::new();
    for user_id in users {
        let rows = indexed.query_map(params![user_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        for row in rows {
            found.push(row?);
        }
    }
    // The newer events: those the writer's view names, each checked against its row
    // (the view may name one rolled back, deleted, or of another user by a collision).
    // Reading them all instead took tens of milliseconds of the writer's time, and ingest
    // waited, once a million events were stored.
    let wanted: HashSet<&str> = users.iter().map(String::as_str).collect();
    let wanted_keys: HashSet<i64> = users.iter().map(|u| user_key(u)).collect();
    let mut newer = conn.prepare_cached(
        "SELECT source, user_id FROM events WHERE id = ?1 AND id > ?2 AND type != 'delete'",
    )?;
    for id in keys.recent_events_of(&wanted_keys) {
        let mut rows = newer.query(params![id, upto])?;
        if let Some(row) = rows.next()? {
            let user_id: Option<String> = row.get(1)?;
            if user_id.is_some_and(|u| wanted.contains(u.as_str())) {
                found.push((id, row.get(0)?));
            }
        }
    }
    Ok(found)
}

/// The newest `limit` events of `user_id`, newest first, as one snapshot.
pub(super) fn latest_of_user(
    conn: &Connection,
    user_id: &str,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    // One snapshot, so that a flush committing meanwhile cannot hide an event between
    // the two lookups.
    let snapshot = conn.unchecked_transaction()?;
    let upto = super::message_keys::indexed_upto(&snapshot)?;
    let mut events = snapshot
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events
             WHERE id > ?1 AND user_id = ?2 ORDER BY id DESC LIMIT ?3"
        ))?
        .query_map(params![upto, user_id, limit as i64], event_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    if events.len() < limit {
        let indexed = snapshot
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE id IN (
                     SELECT event_id FROM user_events WHERE user_id = ?1
                     ORDER BY event_id DESC LIMIT ?2)"
            ))?
            .query_map(params![user_id, limit as i64], event_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        events.extend(indexed);
        events.sort_unstable_by_key(|e| std::cmp::Reverse(e.event_id));
        events.truncate(limit);
    }
    snapshot.finish()?;
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::super::message_keys::testing::{event, flush_now, migrated, users_in_view};
    use super::*;

    fn ids(events: &[(i64, String)]) -> Vec<i64> {
        let mut ids: Vec<i64> = events.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn a_users_events_are_found_indexed_newer_and_with_a_reused_id() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, mut keys) = migrated(dir.path());
        let append = super::super::ingest::append_events;
        // 1 and 3 are u's, 2 is v's; then they are indexed.
        append(
            &conn,
            &mut keys,
            &[event("a", "u"), event("b", "v"), event("c", "u")],
        )
        .unwrap();
        flush_now(&conn, &mut keys);
        assert_eq!(keys.indexed_upto(), 3);
        let indexed: i64 = conn
            .query_row("SELECT count(*) FROM user_events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(indexed, 3);
        // 4 is newer than the index; 3 is deleted, and its id goes to the next event (5
        // would be next otherwise), which the index must hold at once.
        append(&conn, &mut keys, &[event("d", "u")]).unwrap();
        conn.execute("DELETE FROM events WHERE id IN (3, 4)", [])
            .unwrap();
        append(&conn, &mut keys, &[event("e", "u")]).unwrap();
        append(&conn, &mut keys, &[event("f", "u")]).unwrap();
        let users = ["u".to_string()];
        assert_eq!(
            ids(&events_of_users(&conn, &keys, &users).unwrap()),
            [1, 3, 4]
        );
        let latest = latest_of_user(&conn, "u", 10).unwrap();
        let latest: Vec<i64> = latest.iter().map(|e| e.event_id).collect();
        assert_eq!(latest, [4, 3, 1]);
        assert_eq!(latest_of_user(&conn, "u", 2).unwrap().len(), 2);
        assert_eq!(
            ids(&events_of_users(&conn, &keys, &["v".to_string()]).unwrap()),
            [2]
        );
        // A deleted event leaves the index with it.
        conn.execute("DELETE FROM events WHERE id = 1", []).unwrap();
        assert_eq!(ids(&events_of_users(&conn, &keys, &users).unwrap()), [3, 4]);
        let left: i64 = conn
            .query_row(
                "SELECT count(*) FROM user_events WHERE event_id = 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0);
    }

    #[test]
    fn newer_events_are_found_through_the_writers_view_and_checked_against_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, mut keys) = migrated(dir.path());
        let append = super::super::ingest::append_events;
        append(&conn, &mut keys, &[event("a", "u"), event("b", "v")]).unwrap();
        // An event of u rolled back (a job that failed): its id goes to an event of v.
        conn.execute_batch("SAVEPOINT job").unwrap();
        append(&conn, &mut keys, &[event("c", "u")]).unwrap();
        conn.execute_batch("ROLLBACK TO job; RELEASE job").unwrap();
        append(&conn, &mut keys, &[event("d", "v"), event("e", "u")]).unwrap();
        let (u, v) = (["u".to_string()], ["v".to_string()]);
        assert_eq!(ids(&events_of_users(&conn, &keys, &u).unwrap()), [1, 4]);
        assert_eq!(ids(&events_of_users(&conn, &keys, &v).unwrap()), [2, 3]);
        // A hash of u's that names an event of v's (a collision) finds nothing more.
        keys.note(
            super::super::message_keys::message_key("web", "b"),
            Some("u"),
            2,
        );
        assert_eq!(ids(&events_of_users(&conn, &keys, &u).unwrap()), [1, 4]);
        // The view is rebuilt from the events when the store opens.
        let reopened = RecentKeys::load(&conn).unwrap();
        assert_eq!(ids(&events_of_users(&conn, &reopened, &u).unwrap()), [1, 4]);
        let both = ["u".to_string(), "v".to_string()];
        assert_eq!(
            ids(&events_of_users(&conn, &reopened, &both).unwrap()),
            [1, 2, 3, 4]
        );
        // Once indexed, they leave the view and are found through `user_events`.
        flush_now(&conn, &mut keys);
        assert_eq!(users_in_view(&keys), 0);
        assert_eq!(
            ids(&events_of_users(&conn, &keys, &both).unwrap()),
            [1, 2, 3, 4]
        );
    }
}
