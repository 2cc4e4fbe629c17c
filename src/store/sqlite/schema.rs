//! The SQLite schema, as numbered migrations. `PRAGMA user_version` holds the number of
//! the last one applied; opening applies the missing ones in one transaction, and
//! refuses a database migrated by a newer webhookd.

use rusqlite::Connection;

use crate::store::StoreError;

/// Migration `n` (from 1) is `MIGRATIONS[n - 1]`. Never edit one that has shipped: add one.
const MIGRATIONS: &[&str] = &[
    // 1: events, deliveries and attempts; operators' state; regulations. (`IF NOT
    // EXISTS`: databases made before migrations were numbered already have these.)
    "
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY,
    source      TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    user_id     TEXT,
    type        TEXT NOT NULL,
    received_at INTEGER NOT NULL,  -- ms since the Unix epoch
    body        TEXT NOT NULL      -- canonical JSON, as sent to webhooks
);
-- Message lookups and dedupe: a (source, messageId) whose latest event was received within
-- the dedupe window is not stored again. It covers received_at, so a dedupe check reads
-- the index alone.
CREATE INDEX IF NOT EXISTS events_by_message ON events (source, message_id, received_at);

-- One row per event and destination; the delivery actors' durable work list.
CREATE TABLE IF NOT EXISTS deliveries (
    id               INTEGER PRIMARY KEY,
    event_id         INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    source           TEXT NOT NULL,
    destination      TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | dead
    attempts         INTEGER NOT NULL DEFAULT 0,
    first_attempt_at INTEGER,                          -- ms since the Unix epoch
    next_attempt_at  INTEGER NOT NULL,                 -- ms since the Unix epoch
    retry_urls       INTEGER NOT NULL DEFAULT -1,      -- unused since migration 2
    last_error       TEXT,
    finished_at      INTEGER                           -- delivered or dead-lettered
);
CREATE INDEX IF NOT EXISTS deliveries_due
    ON deliveries (source, destination, next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_by_event ON deliveries (event_id);

-- Every request made: one row per URL per attempt.
CREATE TABLE IF NOT EXISTS attempts (
    id            INTEGER PRIMARY KEY,
    delivery_id   INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempted_at  INTEGER NOT NULL,  -- ms since the Unix epoch
    url           TEXT NOT NULL,
    status        INTEGER,           -- HTTP status; NULL when no response came
    error         TEXT,              -- why it failed, when it did
    latency_ms    INTEGER NOT NULL,
    response_body TEXT               -- the first 1 KB
);
CREATE INDEX IF NOT EXISTS attempts_by_delivery ON attempts (delivery_id);
CREATE INDEX IF NOT EXISTS attempts_by_time ON attempts (attempted_at);
CREATE INDEX IF NOT EXISTS deliveries_dead
    ON deliveries (source, destination, finished_at) WHERE state = 'dead';

-- Each destination's latest failure, for operators.
CREATE TABLE IF NOT EXISTS destination_errors (
    source      TEXT NOT NULL,
    destination TEXT NOT NULL,
    error       TEXT NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (source, destination)
) WITHOUT ROWID;

-- Destinations an operator paused: their events are stored, nothing is sent.
CREATE TABLE IF NOT EXISTS paused_destinations (
    source      TEXT NOT NULL,
    destination TEXT NOT NULL,
    paused_at   INTEGER NOT NULL,
    PRIMARY KEY (source, destination)
) WITHOUT ROWID;

-- User deletion requests; applied_at is set in the transaction that applies one.
CREATE TABLE IF NOT EXISTS regulations (
    id                TEXT PRIMARY KEY,
    type              TEXT NOT NULL,     -- DELETE_ONLY | SUPPRESS_WITH_DELETE
    subject_ids       TEXT NOT NULL,     -- JSON array of userIds
    sources           TEXT,              -- JSON array of source names; NULL: all
    created_at        INTEGER NOT NULL,
    applied_at        INTEGER,
    purged_deliveries INTEGER NOT NULL DEFAULT 0
);

-- Users whose later events a source drops at ingest.
CREATE TABLE IF NOT EXISTS suppressions (
    source        TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    regulation_id TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (source, user_id)
) WITHOUT ROWID;
",
    // 2: URLs given up on by value, claims and leases, the instance registry, the
    // notifications of each regulation, and the user index deletions need.
    "
ALTER TABLE deliveries ADD COLUMN given_up_urls TEXT;  -- JSON array of URLs; NULL: none
ALTER TABLE deliveries ADD COLUMN claimed_by TEXT;     -- the delivery actor attempting it
ALTER TABLE deliveries ADD COLUMN claim_until INTEGER; -- ms; after this the claim is void
ALTER TABLE deliveries ADD COLUMN claim_epoch INTEGER; -- the lease epoch it was claimed under

-- A deletion finds every event of its users, delivered or not.
CREATE INDEX events_by_user ON events (user_id) WHERE user_id IS NOT NULL;

-- The delete notifications a regulation queued, for its progress.
CREATE TABLE regulation_events (
    regulation_id TEXT NOT NULL,
    event_id      INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    PRIMARY KEY (regulation_id, event_id)
) WITHOUT ROWID;

-- Every instance that runs on this store, and until when its leases hold.
CREATE TABLE instances (
    id                 TEXT PRIMARY KEY,
    address            TEXT NOT NULL,
    version            TEXT NOT NULL,
    started_at         INTEGER NOT NULL,
    heartbeat_at       INTEGER NOT NULL,
    lease_until        INTEGER NOT NULL,
    config_fingerprint TEXT NOT NULL
) WITHOUT ROWID;

-- Which instance drives each destination; epoch grows at every change of owner.
CREATE TABLE destination_leases (
    source      TEXT NOT NULL,
    destination TEXT NOT NULL,
    owner       TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    PRIMARY KEY (source, destination)
) WITHOUT ROWID;
CREATE INDEX destination_leases_by_owner ON destination_leases (owner);

-- Always empty: a write here, rolled back, tells whether the store has space again.
CREATE TABLE IF NOT EXISTS write_probe (b BLOB);
",
    // 3: what webhookd decided about destinations from their receivers' answers.
    "
CREATE TABLE destination_controls (
    source          TEXT NOT NULL,
    destination     TEXT NOT NULL,
    disabled_at     INTEGER,
    disabled_reason TEXT,
    gone_urls       TEXT,      -- JSON array of URLs that answered 410 Gone
    failing_since   INTEGER,
    PRIMARY KEY (source, destination)
) WITHOUT ROWID;
",
    // 4: events found by a hash of (source, messageId), indexed in sorted groups instead
    // of one random index write per event (see message_keys.rs).
    "
CREATE TABLE message_keys (
    key      INTEGER NOT NULL,  -- webhookd_message_key(source, message_id)
    event_id INTEGER NOT NULL,
    PRIMARY KEY (key, event_id)
) WITHOUT ROWID;
-- Events up to this id are in message_keys; the newer ones are looked up in memory.
CREATE TABLE message_keys_upto (indexed_upto INTEGER NOT NULL);
INSERT INTO message_keys (key, event_id)
    SELECT webhookd_message_key(source, message_id), id FROM events ORDER BY 1, 2;
INSERT INTO message_keys_upto (indexed_upto) SELECT coalesce(max(id), 0) FROM events;
DROP INDEX events_by_message;
CREATE TRIGGER events_unkeyed AFTER DELETE ON events BEGIN
    DELETE FROM message_keys
        WHERE key = webhookd_message_key(OLD.source, OLD.message_id) AND event_id = OLD.id;
END;
",
    // 5: a user's events found through `user_events`, filled in sorted groups with
    // message_keys, instead of an index entry written per event (see user_events.rs).
    "
CREATE TABLE user_events (
    user_id  TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    PRIMARY KEY (user_id, event_id)
) WITHOUT ROWID;
INSERT INTO user_events (user_id, event_id)
    SELECT user_id, id FROM events
    WHERE user_id IS NOT NULL AND id <= (SELECT indexed_upto FROM message_keys_upto)
    ORDER BY 1, 2;
DROP INDEX events_by_user;
CREATE TRIGGER events_user_unindexed AFTER DELETE ON events WHEN OLD.user_id IS NOT NULL
BEGIN
    DELETE FROM user_events WHERE user_id = OLD.user_id AND event_id = OLD.id;
END;
",
    // 6: attempts counted per destination and minute, so that the last hour's are read
    // from about sixty rows per destination (see attempt_counts.rs); the last hour's
    // attempts so far are counted in.
    "
CREATE TABLE attempt_counts (
    source      TEXT NOT NULL,
    destination TEXT NOT NULL,
    minute      INTEGER NOT NULL,  -- attempted_at / 60000
    attempts    INTEGER NOT NULL,  -- requests made
    successes   INTEGER NOT NULL,  -- requests answered 2xx
    PRIMARY KEY (source, destination, minute)
) WITHOUT ROWID;
INSERT INTO attempt_counts (source, destination, minute, attempts, successes)
    SELECT d.source, d.destination, a.attempted_at / 60000, count(*),
           coalesce(sum(a.status BETWEEN 200 AND 299), 0)
    FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
    WHERE a.attempted_at >= (unixepoch() - 3600) * 1000
    GROUP BY 1, 2, 3;
",
];

/// The schema version this build writes.
pub(super) const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`CURRENT_VERSION`], or refuses one that is newer.
pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version > CURRENT_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: version,
            known: CURRENT_VERSION,
        });
    }
    if version == CURRENT_VERSION {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let applied = (|| {
        for (n, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            conn.execute_batch(migration)?;
            conn.pragma_update(None, "user_version", n as i64 + 1)?;
            log::info!("store: schema migrated to version {}", n + 1);
        }
        Ok::<(), rusqlite::Error>(())
    })();
    match applied {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database file as webhookd left it at schema `version` (kept while the directory
    /// lives).
    fn database_at(version: usize) -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join(format!("v{version}.db"))).unwrap();
        super::super::message_keys::register(&conn).unwrap();
        for migration in &MIGRATIONS[..version] {
            conn.execute_batch(migration).unwrap();
        }
        conn.pragma_update(None, "user_version", version as i64)
            .unwrap();
        (dir, conn)
    }

    #[test]
    fn users_are_indexed_from_a_version_4_database_up_to_its_indexed_events() {
        let (_dir, conn) = database_at(4);
        // Three events, the first two indexed (by message key) before the upgrade.
        for (message_id, user_id) in [("a", Some("u")), ("b", None), ("c", Some("u"))] {
            conn.execute(
                "INSERT INTO events (source, message_id, user_id, type, received_at, body)
                 VALUES ('web', ?1, ?2, 'track', 0, '{}')",
                rusqlite::params![message_id, user_id],
            )
            .unwrap();
        }
        conn.execute("UPDATE message_keys_upto SET indexed_upto = 2", [])
            .unwrap();
        migrate(&conn).unwrap();
        let indexed: Vec<(String, i64)> = conn
            .prepare("SELECT user_id, event_id FROM user_events")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // The third is newer than the indexed ones: found by the scan of those.
        assert_eq!(indexed, [("u".to_string(), 1)]);
        let old_index: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'events_by_user'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old_index, 0);
    }

    #[test]
    fn a_version_5_database_counts_the_last_hours_attempts_in() {
        let (_dir, conn) = database_at(5);
        conn.execute_batch(
            "INSERT INTO events (id, source, message_id, type, received_at, body)
                 VALUES (1, 'web', 'm', 'track', 0, '{}');
             INSERT INTO deliveries (id, event_id, source, destination, next_attempt_at)
                 VALUES (1, 1, 'web', 'd', 0);",
        )
        .unwrap();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        // Ten and twenty minutes ago (one success), and two hours ago.
        for (ago_min, status) in [(10, 200), (20, 503), (120, 200)] {
            conn.execute(
                "INSERT INTO attempts (delivery_id, attempted_at, url, status, latency_ms)
                 VALUES (1, ?1, 'http://r/', ?2, 1)",
                rusqlite::params![now_ms - ago_min * 60_000, status],
            )
            .unwrap();
        }
        migrate(&conn).unwrap();
        let counted: (i64, i64, i64) = conn
            .query_row(
                "SELECT count(*), sum(attempts), sum(successes) FROM attempt_counts",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(counted, (2, 2, 1));
    }
}
