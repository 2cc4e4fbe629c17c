//! The SQLite schema: created on open when missing.

pub(super) const SCHEMA: &str = "
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
-- the index alone. Client messageIds are random, so this is the one index with random
-- inserts (those webhookd makes are time-ordered); the others grow at their end.
CREATE INDEX IF NOT EXISTS events_by_message ON events (source, message_id, received_at);

-- One row per event and enabled destination; the delivery actors' durable work list.
CREATE TABLE IF NOT EXISTS deliveries (
    id               INTEGER PRIMARY KEY,
    event_id         INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    source           TEXT NOT NULL,
    destination      TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | dead
    attempts         INTEGER NOT NULL DEFAULT 0,
    first_attempt_at INTEGER,                          -- ms since the Unix epoch
    next_attempt_at  INTEGER NOT NULL,                 -- ms since the Unix epoch
    retry_urls       INTEGER NOT NULL DEFAULT -1,      -- bit i set: URL i may be tried
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

-- Always empty: a write here, rolled back, tells whether the store has space again.
CREATE TABLE IF NOT EXISTS write_probe (b BLOB);
";
