//! Destinations' controls (disabled, URLs gone, failing since), and retention.

use deadpool_postgres::Pool;

use super::{notify, pg_error, pool_error};
use crate::store::encoding::{list_from_text, list_to_text};
use crate::store::{ClusterSignal, ControlChange, DestinationControl, Prune, Pruned, StoreError};

pub(super) async fn controls(pool: Pool) -> Result<Vec<DestinationControl>, StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let rows = client
        .query(
            "SELECT source, destination, disabled_at, disabled_reason, gone_urls, failing_since
             FROM destination_controls",
            &[],
        )
        .await
        .map_err(pg_error)?;
    Ok(rows
        .iter()
        .map(|r| DestinationControl {
            source: r.get(0),
            destination: r.get(1),
            disabled_at_ms: r.get(2),
            disabled_reason: r.get(3),
            gone_urls: list_from_text(r.get(4)),
            failing_since_ms: r.get(5),
        })
        .collect())
}

pub(super) async fn change(
    pool: Pool,
    source: String,
    destination: String,
    change: ControlChange,
) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute(
        "INSERT INTO destination_controls (source, destination) VALUES ($1, $2)
         ON CONFLICT DO NOTHING",
        &[&source, &destination],
    )
    .await
    .map_err(pg_error)?;
    let key: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&source, &destination];
    match &change {
        ControlChange::UrlGone { url } => {
            let gone: Option<String> = tx
                .query_one(
                    "SELECT gone_urls FROM destination_controls
                     WHERE source = $1 AND destination = $2 FOR UPDATE",
                    &key,
                )
                .await
                .map_err(pg_error)?
                .get(0);
            let mut urls = list_from_text(gone);
            if !urls.contains(url) {
                urls.push(url.clone());
            }
            tx.execute(
                "UPDATE destination_controls SET gone_urls = $3 WHERE source = $1 AND destination = $2",
                &[&source, &destination, &list_to_text(&urls)],
            )
            .await
        }
        ControlChange::Failing { since_ms } => {
            tx.execute(
                "UPDATE destination_controls SET failing_since = $3 WHERE source = $1 AND destination = $2",
                &[&source, &destination, since_ms],
            )
            .await
        }
        ControlChange::Disabled { reason, at_ms } => {
            tx.execute(
                "UPDATE destination_controls SET disabled_at = $3, disabled_reason = $4
                 WHERE source = $1 AND destination = $2",
                &[&source, &destination, at_ms, reason],
            )
            .await
        }
        ControlChange::Enabled => {
            tx.execute(
                "DELETE FROM destination_controls WHERE source = $1 AND destination = $2",
                &key,
            )
            .await
        }
        ControlChange::UrlsReset => {
            tx.execute(
                "UPDATE destination_controls SET gone_urls = NULL WHERE source = $1 AND destination = $2",
                &key,
            )
            .await
        }
    }
    .map_err(pg_error)?;
    if change == ControlChange::Enabled {
        // Its owner, wherever it runs, sends again.
        let signal = ClusterSignal::Paused {
            destination: (source.clone(), destination.clone()),
            paused: false,
        };
        notify(&tx, &signal).await?;
    }
    tx.commit().await.map_err(pg_error)
}

/// One pruning step, as on SQLite (see there), plus dedupe entries out of the window:
/// here the dedupe keys are a table of their own.
pub(super) async fn prune(pool: Pool, prune: Prune) -> Result<Pruned, StoreError> {
    let started = std::time::Instant::now();
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(pg_error)?;
    let limit = prune.limit as i64;
    let rows = tx
        .query(
            "SELECT e.id, e.received_at,
                    e.type != 'delete' AND NOT EXISTS (SELECT 1 FROM deliveries d
                        WHERE d.event_id = e.id
                          AND (d.state = 'pending'
                               OR (d.state = 'delivered' AND d.finished_at >= $2)
                               OR (d.state = 'dead' AND d.finished_at >= $3)))
             FROM events e WHERE e.id > $1 ORDER BY e.id LIMIT $4",
            &[
                &prune.after_id,
                &prune.delivered_before_ms,
                &prune.dead_before_ms,
                &limit,
            ],
        )
        .await
        .map_err(pg_error)?;
    let mut pruned = Pruned::default();
    let mut doomed: Vec<i64> = Vec::new();
    for row in &rows {
        let (id, received_at, finished): (i64, i64, bool) = (row.get(0), row.get(1), row.get(2));
        if received_at >= prune.delivered_before_ms {
            pruned.next_after = None;
            break;
        }
        if finished {
            doomed.push(id);
        }
        pruned.next_after = Some(id);
    }
    if !doomed.is_empty() {
        pruned.events = tx
            .execute("DELETE FROM events WHERE id = ANY($1)", &[&doomed])
            .await
            .map_err(pg_error)?;
    }
    pruned.dedupe_entries = tx
        .execute(
            "DELETE FROM dedupe WHERE ctid IN (
                 SELECT ctid FROM dedupe WHERE received_at < $1 ORDER BY received_at LIMIT $2)",
            &[&prune.dedupe_before_ms, &limit],
        )
        .await
        .map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)?;
    pruned.held = started.elapsed();
    Ok(pruned)
}

pub(super) async fn size_bytes(pool: Pool) -> Result<u64, StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let size: i64 = client
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await
        .map_err(pg_error)?
        .get(0);
    Ok(size as u64)
}
