//! The PostgreSQL schema, as numbered migrations recorded in `webhookd_schema`. Opening
//! applies the missing ones in one transaction under an advisory lock (instances that
//! start together migrate once), and refuses a database migrated by a newer webhookd.

use tokio_postgres::Client;

use super::pg_error;
use crate::store::StoreError;

/// Key of the transaction-level advisory lock that serializes migrations.
const MIGRATION_LOCK: i64 = 0x7765_6268_6f6f_6b01;

/// Migration `n` (from 1) is `MIGRATIONS[n - 1]`. Never edit one that has shipped: add one.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE events (
    id          BIGSERIAL PRIMARY KEY,
    source      TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    user_id     TEXT,
    type        TEXT NOT NULL,
    received_at BIGINT NOT NULL,   -- ms since the Unix epoch
    body        TEXT NOT NULL      -- canonical JSON, as sent to webhooks
);
CREATE INDEX events_by_message ON events (source, message_id, id);
-- A deletion finds every event of its users.
CREATE INDEX events_by_user ON events (user_id) WHERE user_id IS NOT NULL;

-- Dedupe by a unique key: the latest time each (source, messageId) was stored.
CREATE TABLE dedupe (
    source      TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (source, message_id)
);

-- One row per event and destination; the delivery actors' durable work list. Claims
-- are updated often: room on each page keeps those updates cheap (HOT).
CREATE TABLE deliveries (
    id               BIGSERIAL PRIMARY KEY,
    event_id         BIGINT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    source           TEXT NOT NULL,
    destination      TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | dead
    attempts         INT NOT NULL DEFAULT 0,
    first_attempt_at BIGINT,
    next_attempt_at  BIGINT NOT NULL,
    given_up_urls    TEXT,                             -- JSON array of URLs; NULL: none
    last_error       TEXT,
    finished_at      BIGINT,
    claimed_by       TEXT,                             -- the delivery actor attempting it
    claim_until      BIGINT,                           -- ms; after this the claim is void
    claim_epoch      BIGINT                            -- the lease epoch it was claimed under
) WITH (fillfactor = 70);
-- Due work in claim order (next_attempt_at, id): a claim reads the index from its start,
-- never sorts the backlog.
CREATE INDEX deliveries_due
    ON deliveries (source, destination, next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX deliveries_by_event ON deliveries (event_id);
CREATE INDEX deliveries_dead
    ON deliveries (source, destination, finished_at) WHERE state = 'dead';

-- Every request made: one row per URL per attempt.
CREATE TABLE attempts (
    id            BIGSERIAL PRIMARY KEY,
    delivery_id   BIGINT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempted_at  BIGINT NOT NULL,
    url           TEXT NOT NULL,
    status        INT,
    error         TEXT,
    latency_ms    BIGINT NOT NULL,
    response_body TEXT
);
CREATE INDEX attempts_by_delivery ON attempts (delivery_id);
CREATE INDEX attempts_by_time ON attempts (attempted_at);

CREATE TABLE destination_errors (
    source      TEXT NOT NULL,
    destination TEXT NOT NULL,
    error       TEXT NOT NULL,
    at          BIGINT NOT NULL,
    PRIMARY KEY (source, destination)
);

CREATE TABLE paused_destinations (
    source      TEXT NOT NULL,
    destination TEXT NOT NULL,
    paused_at   BIGINT NOT NULL,
    PRIMARY KEY (source, destination)
);

CREATE TABLE regulations (
    id                TEXT PRIMARY KEY,
    type              TEXT NOT NULL,
    subject_ids       TEXT NOT NULL,   -- JSON array of userIds
    sources           TEXT,            -- JSON array of source names; NULL: all
    created_at        BIGINT NOT NULL,
    applied_at        BIGINT,
    purged_deliveries BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE suppressions (
    source        TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    regulation_id TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (source, user_id)
);

CREATE TABLE regulation_events (
    regulation_id TEXT NOT NULL,
    event_id      BIGINT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    PRIMARY KEY (regulation_id, event_id)
);

CREATE TABLE instances (
    id                 TEXT PRIMARY KEY,
    address            TEXT NOT NULL,
    version            TEXT NOT NULL,
    started_at         BIGINT NOT NULL,
    heartbeat_at       BIGINT NOT NULL,
    lease_until        BIGINT NOT NULL,
    config_fingerprint TEXT NOT NULL
);

CREATE TABLE destination_leases (
    source      TEXT NOT NULL,
    destination TEXT NOT NULL,
    owner       TEXT NOT NULL,
    epoch       BIGINT NOT NULL,
    PRIMARY KEY (source, destination)
);
CREATE INDEX destination_leases_by_owner ON destination_leases (owner);

-- Always empty: a write here, rolled back, tells whether the database takes writes.
CREATE TABLE write_probe (b BYTEA);
",
    "
-- What webhookd decided about destinations from their receivers' answers.
CREATE TABLE destination_controls (
    source          TEXT NOT NULL,
    destination     TEXT NOT NULL,
    disabled_at     BIGINT,
    disabled_reason TEXT,
    gone_urls       TEXT,      -- JSON array of URLs that answered 410 Gone
    failing_since   BIGINT,
    PRIMARY KEY (source, destination)
);
-- Retention removes dedupe entries out of the window, oldest first.
CREATE INDEX dedupe_by_time ON dedupe (received_at);
",
    "
-- Attempts counted per destination and minute, so that the last hour's are read from
-- about sixty rows per destination (see attempt_counts.rs); the last hour's attempts so
-- far are counted in.
CREATE TABLE attempt_counts (
    source      TEXT NOT NULL,
    destination TEXT NOT NULL,
    minute      BIGINT NOT NULL,  -- attempted_at / 60000
    attempts    BIGINT NOT NULL,  -- requests made
    successes   BIGINT NOT NULL,  -- requests answered 2xx
    PRIMARY KEY (source, destination, minute)
);
INSERT INTO attempt_counts (source, destination, minute, attempts, successes)
    SELECT d.source, d.destination, a.attempted_at / 60000, count(*),
           count(*) FILTER (WHERE a.status BETWEEN 200 AND 299)
    FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
    WHERE a.attempted_at >= (extract(epoch FROM now())::bigint - 3600) * 1000
    GROUP BY 1, 2, 3;
",
];

/// The schema version this build writes.
pub(super) const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`CURRENT_VERSION`], or refuses one that is newer.
pub(super) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS webhookd_schema (
             version    BIGINT PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(pg_error)?;
    let version: i64 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM webhookd_schema", &[])
        .await
        .map_err(pg_error)?
        .get(0);
    if version > CURRENT_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: version,
            known: CURRENT_VERSION,
        });
    }
    for (n, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let number = n as i64 + 1;
        tx.batch_execute(migration).await.map_err(pg_error)?;
        tx.execute(
            "INSERT INTO webhookd_schema (version) VALUES ($1)",
            &[&number],
        )
        .await
        .map_err(pg_error)?;
        log::info!("store: schema migrated to version {number}");
    }
    tx.commit().await.map_err(pg_error)
}
