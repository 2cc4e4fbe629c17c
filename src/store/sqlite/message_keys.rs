//! Finding events by `(source, messageId)` without a random index write per event.
//!
//! Real clients send random UUIDv4 messageIds. Kept in a B-tree one event at a time,
//! each lands on a leaf of its own, so every event dirtied one more 4 KB page per commit,
//! written to the WAL and again by the checkpoint. Here the events table itself, which
//! grows in id order, is the log of keys: the newest events (ids above
//! `message_keys_upto.indexed_upto`) are found through a map in the writer's memory, and
//! every so many of them (more as the table grows: [`flush_at`]) are added to
//! `message_keys` by one insert sorted by key, which writes each leaf it touches once for
//! many keys. The map is rebuilt from the events table when the store opens, so a crash
//! loses nothing the lookups need.
//!
//! A key is a 64-bit hash of the pair; every match is checked against the event row, so a
//! collision costs a read, never a wrong answer. A filter in memory
//! ([`super::key_filter`]) tells most keys that `message_keys` lacks without reading it.
//!
//! The same view keeps the users of those newest events (a hash of each `userId`, beside
//! the event's id), so that a deletion finds a user's events among them without reading
//! every one of them in the writer (see user_events.rs).

use std::collections::{BTreeSet, HashMap, HashSet};

use rusqlite::functions::FunctionFlags;
use rusqlite::{params, Connection, OptionalExtension};
use xxhash_rust::xxh3::Xxh3;

use super::key_filter::KeyFilter;
use crate::store::StoreError;

/// The fewest events past the last indexed one after which they are added to
/// `message_keys`.
pub(super) const FLUSH_AT_LEAST: usize = 32_768;
/// The most: it bounds the writer's view (about 40 bytes a key, 16 more for a user) and
/// the admin API's scans of the newest events.
pub(super) const FLUSH_AT_MOST: usize = 262_144;

/// Events past the last indexed one after which they are added to `message_keys`, which
/// holds `indexed` keys: a quarter of that, within [`FLUSH_AT_LEAST`] and
/// [`FLUSH_AT_MOST`]. A flush writes every leaf its keys land on, and random keys land on
/// nearly every leaf once they outnumber the leaves, so with a fixed number of keys per
/// flush the pages written per key grew with the table; a number that grows with it keeps
/// them about the same.
fn flush_at(indexed: usize) -> usize {
    (indexed / 4).clamp(FLUSH_AT_LEAST, FLUSH_AT_MOST)
}

/// The key of a `userId` in the writer's view of the newest events. Only in memory, so
/// free to change between builds.
pub(super) fn user_key(user_id: &str) -> i64 {
    xxhash_rust::xxh3::xxh3_64(user_id.as_bytes()) as i64
}

/// The SQL name of [`message_key`], for the migration, the flush and the delete trigger.
const SQL_FUNCTION: &str = "webhookd_message_key";

/// The key of `(source, message_id)` in `message_keys`: stable across builds (XXH3 is a
/// fixed algorithm), so a database keeps working under a newer webhookd.
pub(super) fn message_key(source: &str, message_id: &str) -> i64 {
    let mut hasher = Xxh3::new();
    // The source's length first, so that ("ab", "c") and ("a", "bc") differ.
    hasher.update(&(source.len() as u64).to_le_bytes());
    hasher.update(source.as_bytes());
    hasher.update(message_id.as_bytes());
    hasher.digest() as i64
}

/// Makes [`message_key`] callable from SQL on `conn`; every connection needs it, since
/// deleting an event fires a trigger that calls it.
pub(super) fn register(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        SQL_FUNCTION,
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let source: String = ctx.get(0)?;
            let message_id: String = ctx.get(1)?;
            Ok(message_key(&source, &message_id))
        },
    )
}

/// The writer's view of the events not yet in `message_keys`.
#[derive(Debug)]
pub(super) struct RecentKeys {
    /// Events with an id up to this one are in `message_keys` (as committed).
    indexed_upto: i64,
    /// Key → the newest event id above `indexed_upto` with that key. May name an event
    /// that was rolled back or deleted since: every hit is checked against the row.
    recent: HashMap<i64, i64>,
    /// ([`user_key`] of its `userId`, id) of every event above `indexed_upto` that has a
    /// user (16 bytes each). Holds some events rolled back or deleted since, and may hold
    /// an id twice (SQLite reuses the id of a deleted newest event): every hit is checked
    /// against the row. Never lacks one: a user's events are found from it.
    recent_users: Vec<(i64, i64)>,
    /// A flush is waiting for the writer; no second one is queued meanwhile.
    flush_queued: bool,
    /// Every key in `message_keys` (and some no longer there).
    filter: KeyFilter,
    /// Keys added to `message_keys` outside a flush while one is queued: a filter the
    /// flush rebuilds from the table may have been read before them.
    indexed_meanwhile: Vec<i64>,
}

/// What a flush added to `message_keys`, for the writer's view once it has committed.
#[derive(Debug)]
pub(super) struct Flushed {
    /// The newest event now indexed.
    upto: i64,
    filter: FilterUpdate,
}

#[derive(Debug)]
enum FilterUpdate {
    /// The keys inserted, to add to the filter.
    Add(Vec<i64>),
    /// The filter had no room for them: one of the whole table, twice as large.
    Rebuilt(KeyFilter),
}

impl RecentKeys {
    /// Reads what is indexed and rebuilds the map from the events after it.
    pub(super) fn load(conn: &Connection) -> Result<RecentKeys, StoreError> {
        let indexed_upto = indexed_upto(conn)?;
        let mut recent = HashMap::new();
        let mut recent_users = Vec::new();
        let mut tail = conn.prepare(
            "SELECT id, source, message_id, user_id FROM events WHERE id > ?1 ORDER BY id",
        )?;
        let mut rows = tail.query(params![indexed_upto])?;
        while let Some(row) = rows.next()? {
            let (id, source, message_id): (i64, String, String) =
                (row.get(0)?, row.get(1)?, row.get(2)?);
            recent.insert(message_key(&source, &message_id), id);
            if let Some(user_id) = row.get::<_, Option<String>>(3)? {
                recent_users.push((user_key(&user_id), id));
            }
        }
        Ok(RecentKeys {
            indexed_upto,
            recent,
            recent_users,
            flush_queued: false,
            filter: KeyFilter::of_table(conn)?,
            indexed_meanwhile: Vec::new(),
        })
    }

    /// Records an event just inserted (in the writer's open transaction).
    pub(super) fn note(&mut self, key: i64, user_id: Option<&str>, event_id: i64) {
        self.recent.insert(key, event_id);
        if let Some(user_id) = user_id {
            self.recent_users.push((user_key(user_id), event_id));
        }
    }

    /// Ids of the events above `indexed_upto` that may be of a user whose [`user_key`] is
    /// in `wanted`: every one that is, and perhaps others (to check against the rows),
    /// each once, in id order.
    pub(super) fn recent_events_of(&self, wanted: &HashSet<i64>) -> BTreeSet<i64> {
        self.recent_users
            .iter()
            .filter(|(user, _)| wanted.contains(user))
            .map(|&(_, id)| id)
            .collect()
    }

    /// Whether a flush should be queued now; once it says yes, it says no until that
    /// flush is over ([`RecentKeys::flushed`]).
    pub(super) fn wants_flush(&mut self) -> bool {
        if self.flush_queued || self.recent.len() < flush_at(self.filter.len()) {
            return false;
        }
        self.flush_queued = true;
        true
    }

    #[cfg(test)]
    pub(super) fn indexed_upto(&self) -> i64 {
        self.indexed_upto
    }

    /// A flush's transaction is over: committed, or not at all (`None`).
    pub(super) fn flushed(&mut self, committed: Option<Flushed>) {
        self.flush_queued = false;
        let indexed_meanwhile = std::mem::take(&mut self.indexed_meanwhile);
        let Some(Flushed { upto, filter }) = committed else {
            return;
        };
        match filter {
            FilterUpdate::Add(keys) => keys.into_iter().for_each(|k| self.filter.insert(k)),
            FilterUpdate::Rebuilt(rebuilt) => {
                self.filter = rebuilt;
                indexed_meanwhile
                    .into_iter()
                    .for_each(|k| self.filter.insert(k));
            }
        }
        self.indexed_upto = upto;
        self.recent.retain(|_, id| *id > upto);
        self.recent_users.retain(|&(_, id)| id > upto);
    }

    /// Indexes an event at once when its id is at or below `indexed_upto` (read in the
    /// same transaction). That happens only when SQLite reuses the id of a deleted newest
    /// event (ids are the largest one plus one); such an event would be neither in the
    /// indexes (`message_keys`, `user_events`) nor in the newer events scanned.
    pub(super) fn index_if_reused(
        &mut self,
        conn: &Connection,
        indexed_upto: i64,
        key: i64,
        event_id: i64,
    ) -> Result<(), StoreError> {
        if event_id <= indexed_upto {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO message_keys (key, event_id) VALUES (?1, ?2)",
            )?
            .execute(params![key, event_id])?;
            super::user_events::index_one(conn, event_id)?;
            // Before the insert commits: a key the table may not hold costs a read only.
            self.filter.insert(key);
            if self.flush_queued {
                self.indexed_meanwhile.push(key);
            }
        }
        Ok(())
    }

    /// The latest `received_at` of an event of `source` with `message_id`, or `None`.
    /// Runs in the writer, so it sees the events of the open transaction too.
    pub(super) fn last_received(
        &self,
        conn: &Connection,
        source: &str,
        message_id: &str,
        key: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut received: Option<i64> = None;
        if let Some(&id) = self.recent.get(&key) {
            let mut row = conn.prepare_cached(
                "SELECT received_at FROM events WHERE id = ?1 AND source = ?2 AND message_id = ?3",
            )?;
            received = row
                .query_row(params![id, source, message_id], |r| r.get(0))
                .optional()?;
            if received.is_none() {
                // Rolled back, deleted or a collision: the map cannot tell whether an
                // older event in the tail matches, so the tail is read.
                let mut scan = conn.prepare_cached(
                    "SELECT max(received_at) FROM events
                     WHERE id > ?1 AND source = ?2 AND message_id = ?3",
                )?;
                received =
                    scan.query_row(params![self.indexed_upto, source, message_id], |r| r.get(0))?;
            }
        }
        let mut older = None;
        if !self.filter.may_hold(key) {
            return Ok(received); // A new messageId, nearly always.
        }
        let mut row = conn.prepare_cached(
            "SELECT received_at FROM events WHERE id = ?1 AND source = ?2 AND message_id = ?3",
        )?;
        for id in indexed_ids(conn, key)? {
            let at: Option<i64> = row
                .query_row(params![id, source, message_id], |r| r.get(0))
                .optional()?;
            older = older.max(at);
        }
        Ok(received.max(older))
    }
}

/// The events `message_keys` has under `key` (usually none or one). Looked up alone and
/// then checked row by row: before plans were made independent of bound values
/// (`SQLITE_DBCONFIG_ENABLE_QPSG` in `connect`), SQLite prepared a join of the two
/// tables again at every run, a parse per event in the writer.
fn indexed_ids(conn: &Connection, key: i64) -> Result<Vec<i64>, StoreError> {
    let ids = conn
        .prepare_cached("SELECT event_id FROM message_keys WHERE key = ?1")?
        .query_map(params![key], |r| r.get(0))?
        .collect::<Result<Vec<i64>, _>>()?;
    Ok(ids)
}

/// Adds every event after `keys.indexed_upto()` to `message_keys` (and to
/// `user_events`), sorted by key so that each leaf is written once; returns what the
/// writer's view takes on once this commits. Runs in the writer's transaction.
pub(super) fn flush(conn: &Connection, keys: &RecentKeys) -> Result<Flushed, StoreError> {
    let upto = keys.indexed_upto;
    let newest: i64 = conn.query_row(
        "SELECT coalesce(max(id), ?1) FROM events",
        params![upto],
        |r| r.get(0),
    )?;
    let added = conn
        .prepare_cached(&format!(
            "INSERT OR IGNORE INTO message_keys (key, event_id)
             SELECT {SQL_FUNCTION}(source, message_id), id FROM events
             WHERE id > ?1 AND id <= ?2 ORDER BY 1, 2
             RETURNING key"
        ))?
        .query_map(params![upto, newest], |r| r.get(0))?
        .collect::<Result<Vec<i64>, _>>()?;
    super::user_events::index_range(conn, upto, newest)?;
    conn.prepare_cached("UPDATE message_keys_upto SET indexed_upto = ?1")?
        .execute(params![newest])?;
    let filter = match keys.filter.has_room_for(added.len()) {
        true => FilterUpdate::Add(added),
        false => FilterUpdate::Rebuilt(KeyFilter::of_table(conn)?),
    };
    Ok(Flushed {
        upto: newest,
        filter,
    })
}

/// The id of the newest event of `source` with `message_id`, for readers: those not yet
/// indexed are scanned (at most about [`FLUSH_AT_MOST`] rows), the rest found by key.
pub(super) fn latest_event_id(
    conn: &Connection,
    source: &str,
    message_id: &str,
) -> Result<Option<i64>, StoreError> {
    // One snapshot, so that a flush committing meanwhile cannot hide an event between
    // the two lookups.
    let snapshot = conn.unchecked_transaction()?;
    let upto = indexed_upto(&snapshot)?;
    let newest: Option<i64> = snapshot
        .prepare_cached(
            "SELECT max(id) FROM events WHERE id > ?1 AND source = ?2 AND message_id = ?3",
        )?
        .query_row(params![upto, source, message_id], |r| r.get(0))?;
    let found = match newest {
        Some(id) => Some(id),
        None => {
            let mut matches = snapshot.prepare_cached(
                "SELECT 1 FROM events WHERE id = ?1 AND source = ?2 AND message_id = ?3",
            )?;
            let mut found = None;
            for id in indexed_ids(&snapshot, message_key(source, message_id))? {
                if matches.exists(params![id, source, message_id])? {
                    found = found.max(Some(id));
                }
            }
            found
        }
    };
    snapshot.finish()?;
    Ok(found)
}

pub(super) fn indexed_upto(conn: &Connection) -> Result<i64, StoreError> {
    // Read at every append: prepared once.
    Ok(conn
        .prepare_cached("SELECT indexed_upto FROM message_keys_upto")?
        .query_row([], |r| r.get(0))?)
}

/// What the SQLite store's unit tests of the writer's indexes share.
#[cfg(test)]
pub(super) mod testing {
    use super::*;
    use crate::store::NewEvent;

    /// A migrated store in `dir`, with the writer's view of its keys.
    pub(in crate::store::sqlite) fn migrated(dir: &std::path::Path) -> (Connection, RecentKeys) {
        let conn = Connection::open(dir.join("webhookd.db")).unwrap();
        register(&conn).unwrap();
        super::super::schema::migrate(&conn).unwrap();
        let keys = RecentKeys::load(&conn).unwrap();
        (conn, keys)
    }

    /// A `web` event of `user_id`, deduped since the epoch.
    pub(in crate::store::sqlite) fn event(message_id: &str, user_id: &str) -> NewEvent {
        NewEvent {
            source: "web".into(),
            message_id: message_id.into(),
            dedupe_since_ms: Some(0),
            user_id: Some(user_id.into()),
            event_type: "track",
            received_at_ms: 1_000,
            body: "{}".into(),
            destinations: Vec::new(),
        }
    }

    /// How many of the newest events' users the writer's view holds.
    pub(in crate::store::sqlite) fn users_in_view(keys: &RecentKeys) -> usize {
        keys.recent_users.len()
    }

    /// Flushes as the writer does, as if the flush committed.
    pub(in crate::store::sqlite) fn flush_now(conn: &Connection, keys: &mut RecentKeys) {
        let flushed = flush(conn, keys).unwrap();
        keys.flushed(Some(flushed));
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{flush_now, migrated};
    use super::*;
    use crate::store::{Appended, NewEvent};

    fn event(message_id: &str) -> NewEvent {
        super::testing::event(message_id, "u")
    }

    #[test]
    fn an_event_given_a_deleted_newest_id_is_still_found() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, mut keys) = migrated(dir.path());
        let append = super::super::ingest::append_events;
        append(&conn, &mut keys, &[event("a"), event("b")]).unwrap();
        flush_now(&conn, &mut keys);
        let upto = keys.indexed_upto();
        // The newest event goes (a deletion), and SQLite gives its id to the next one.
        conn.execute("DELETE FROM events WHERE message_id = 'b'", [])
            .unwrap();
        let stored = append(&conn, &mut keys, &[event("c")]).unwrap();
        assert_eq!(stored, [Appended::Stored { event_id: upto }]);
        // The next flush leaves it out of memory: it must be in the index by then.
        flush_now(&conn, &mut keys);
        assert_eq!(latest_event_id(&conn, "web", "c").unwrap(), Some(upto));
        let repeated = append(&conn, &mut keys, &[event("c")]).unwrap();
        assert_eq!(repeated, [Appended::Duplicate]);
        assert_eq!(latest_event_id(&conn, "web", "b").unwrap(), None);
    }

    #[test]
    fn a_flush_that_outgrows_the_filter_rebuilds_it_with_every_key() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, mut keys) = migrated(dir.path());
        let append = super::super::ingest::append_events;
        append(&conn, &mut keys, &[event("a"), event("b"), event("c")]).unwrap();
        flush_now(&conn, &mut keys);
        append(&conn, &mut keys, &[event("d"), event("e")]).unwrap();
        // Room for one key: the next flush must read the whole table.
        keys.filter = KeyFilter::with_capacity(1);
        keys.flush_queued = true;
        let flushed = flush(&conn, &keys).unwrap();
        assert!(matches!(flushed.filter, FilterUpdate::Rebuilt(_)));
        // Between the flush and its commit: the newest event goes, its id is reused by
        // an event indexed at once, after the rebuilt filter read the table.
        conn.execute("DELETE FROM events WHERE message_id = 'e'", [])
            .unwrap();
        let reused = append(&conn, &mut keys, &[event("f")]).unwrap();
        assert_eq!(reused, [Appended::Stored { event_id: 5 }]);
        keys.flushed(Some(flushed));
        for id in ["a", "c", "d", "f"] {
            let again = append(&conn, &mut keys, &[event(id)]).unwrap();
            assert_eq!(again, [Appended::Duplicate], "{id}");
        }
        let new = append(&conn, &mut keys, &[event("g"), event("e")]).unwrap();
        assert!(new.iter().all(|o| matches!(o, Appended::Stored { .. })));
    }

    /// Keys noted in `keys`, of events 1, 2, ..., until it wants a flush.
    fn keys_until_a_flush(keys: &mut RecentKeys) -> usize {
        let mut noted = 0;
        while !keys.wants_flush() {
            noted += 1;
            keys.note(noted as i64, None, noted as i64);
        }
        noted
    }

    #[test]
    fn a_flush_waits_for_more_keys_as_the_table_grows() {
        let dir = tempfile::tempdir().unwrap();
        let (_conn, mut keys) = migrated(dir.path());
        assert_eq!(keys_until_a_flush(&mut keys), FLUSH_AT_LEAST);
        // A table of 400,000 keys: a quarter of that.
        for (table, expected) in [(400_000, 100_000), (2_000_000, FLUSH_AT_MOST)] {
            keys.filter = KeyFilter::with_capacity(table);
            (0..table).for_each(|k| keys.filter.insert(-(k as i64)));
            keys.recent.clear();
            keys.flush_queued = false;
            assert_eq!(keys_until_a_flush(&mut keys), expected, "{table} keys");
        }
    }

    #[test]
    fn keys_are_stable_and_tell_sources_apart() {
        // Stored keys must mean the same under every later build: this value, recorded
        // when the keys were introduced, must never change.
        assert_eq!(message_key("web", "m-1"), message_key("web", "m-1"));
        assert_ne!(message_key("ab", "c"), message_key("a", "bc"));
        assert_ne!(message_key("web", "m-1"), message_key("web", "m-2"));
        assert_eq!(message_key("web", "m-1"), -7_936_182_611_463_508_569);
    }
}
