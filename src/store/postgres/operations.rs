//! What operators need: destination health, dead letters and their replay, pausing.

use std::collections::BTreeMap;

use deadpool_postgres::Pool;
use tokio_postgres::types::ToSql;

use super::{notify, pg_error, pool_error};
use crate::store::attempt_counts::last_hour_from;
use crate::store::{
    ClusterSignal, DeadLetter, DeadLetterQuery, DestinationKey, DestinationStats, ReplaySelection,
    StoreError,
};

pub(super) async fn destination_stats(
    pool: Pool,
    now: i64,
) -> Result<Vec<DestinationStats>, StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let mut stats: BTreeMap<DestinationKey, DestinationStats> = BTreeMap::new();
    let pending = client
        .query(
            "SELECT g.source, g.destination, g.n, e.received_at
             FROM (SELECT source, destination, count(*) AS n, min(id) AS oldest
                   FROM deliveries WHERE state = 'pending' GROUP BY source, destination) g
             JOIN deliveries o ON o.id = g.oldest JOIN events e ON e.id = o.event_id",
            &[],
        )
        .await
        .map_err(pg_error)?;
    for row in pending {
        let s = entry(&mut stats, row.get(0), row.get(1));
        s.pending = row.get::<_, i64>(2) as u64;
        s.oldest_pending_received_at_ms = row.get(3);
    }
    let dead = client
        .query(
            "SELECT source, destination, count(*) FROM deliveries WHERE state = 'dead'
             GROUP BY source, destination",
            &[],
        )
        .await
        .map_err(pg_error)?;
    for row in dead {
        entry(&mut stats, row.get(0), row.get(1)).dead = row.get::<_, i64>(2) as u64;
    }
    let recent = client
        .query(
            "SELECT source, destination, sum(attempts)::int8, sum(successes)::int8
             FROM attempt_counts WHERE minute >= $1 GROUP BY source, destination",
            &[&last_hour_from(now)],
        )
        .await
        .map_err(pg_error)?;
    for row in recent {
        let s = entry(&mut stats, row.get(0), row.get(1));
        s.attempts_last_hour = row.get::<_, i64>(2) as u64;
        s.successes_last_hour = row.get::<_, i64>(3) as u64;
    }
    let errors = client
        .query(
            "SELECT source, destination, error, at FROM destination_errors",
            &[],
        )
        .await
        .map_err(pg_error)?;
    for row in errors {
        let s = entry(&mut stats, row.get(0), row.get(1));
        s.last_error = Some(row.get(2));
        s.last_error_at_ms = Some(row.get(3));
    }
    let paused = client
        .query("SELECT source, destination FROM paused_destinations", &[])
        .await
        .map_err(pg_error)?;
    for row in paused {
        entry(&mut stats, row.get(0), row.get(1)).paused = true;
    }
    Ok(stats.into_values().collect())
}

fn entry(
    stats: &mut BTreeMap<DestinationKey, DestinationStats>,
    source: String,
    destination: String,
) -> &mut DestinationStats {
    stats
        .entry((source.clone(), destination.clone()))
        .or_insert_with(|| DestinationStats {
            source,
            destination,
            ..DestinationStats::default()
        })
}

pub(super) async fn dead_letters(
    pool: Pool,
    query: DeadLetterQuery,
) -> Result<Vec<DeadLetter>, StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let limit = query.limit as i64;
    let rows = client
        .query(
            "SELECT d.id, d.source, d.destination, e.message_id, e.type, d.attempts,
                    d.last_error, d.finished_at, d.first_attempt_at
             FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.state = 'dead'
               AND ($1::text IS NULL OR d.source = $1)
               AND ($2::text IS NULL OR d.destination = $2)
               AND ($3::int8 IS NULL OR d.finished_at >= $3)
               AND ($4::int8 IS NULL OR d.finished_at < $4)
               AND ($5::int8 IS NULL OR d.id > $5)
             ORDER BY d.id LIMIT $6",
            &[
                &query.source,
                &query.destination,
                &query.since_ms,
                &query.until_ms,
                &query.after_id,
                &limit,
            ],
        )
        .await
        .map_err(pg_error)?;
    Ok(rows
        .iter()
        .map(|r| DeadLetter {
            delivery_id: r.get(0),
            source: r.get(1),
            destination: r.get(2),
            message_id: r.get(3),
            event_type: r.get(4),
            attempt_count: r.get::<_, i32>(5) as u32,
            last_error: r.get(6),
            dead_at_ms: r.get::<_, Option<i64>>(7).unwrap_or(0),
            first_attempt_at_ms: r.get(8),
        })
        .collect())
}

pub(super) async fn replay(
    pool: Pool,
    selection: ReplaySelection,
    now: i64,
) -> Result<Vec<(String, String, u64)>, StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(pg_error)?;
    // A fresh retry window (first_attempt_at NULL) and every URL again.
    let revive = "UPDATE deliveries SET state = 'pending', next_attempt_at = $1,
                  first_attempt_at = NULL, given_up_urls = NULL, finished_at = NULL,
                  claimed_by = NULL, claim_until = NULL";
    let (filter, params): (&str, Vec<Box<dyn ToSql + Sync + Send>>) = match selection {
        ReplaySelection::Ids { ids, within } => {
            let (sources, destinations): (Vec<String>, Vec<String>) = within.into_iter().unzip();
            (
                "id = ANY($2) AND (source, destination) IN
                     (SELECT * FROM unnest($3::text[], $4::text[]))",
                vec![Box::new(ids), Box::new(sources), Box::new(destinations)],
            )
        }
        ReplaySelection::Destination {
            source,
            destination,
            since_ms,
            until_ms,
        } => (
            "source = $2 AND destination = $3 AND finished_at >= $4 AND finished_at < $5",
            vec![
                Box::new(source),
                Box::new(destination),
                Box::new(since_ms.unwrap_or(i64::MIN)),
                Box::new(until_ms.unwrap_or(i64::MAX)),
            ],
        ),
    };
    let mut all: Vec<&(dyn ToSql + Sync)> = vec![&now];
    all.extend(params.iter().map(|p| &**p as &(dyn ToSql + Sync)));
    let rows = tx
        .query(
            &format!("{revive} WHERE state = 'dead' AND {filter} RETURNING source, destination"),
            &all,
        )
        .await
        .map_err(pg_error)?;
    let mut counts: BTreeMap<DestinationKey, u64> = BTreeMap::new();
    for row in rows {
        *counts.entry((row.get(0), row.get(1))).or_default() += 1;
    }
    if !counts.is_empty() {
        notify(&tx, &ClusterSignal::Work(counts.keys().cloned().collect())).await?;
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(counts.into_iter().map(|((s, d), n)| (s, d, n)).collect())
}

pub(super) async fn set_paused(
    pool: Pool,
    key: DestinationKey,
    paused: bool,
    now: i64,
) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(pg_error)?;
    let (source, destination) = (&key.0, &key.1);
    if paused {
        tx.execute(
            "INSERT INTO paused_destinations (source, destination, paused_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            &[source, destination, &now],
        )
        .await
    } else {
        tx.execute(
            "DELETE FROM paused_destinations WHERE source = $1 AND destination = $2",
            &[source, destination],
        )
        .await
    }
    .map_err(pg_error)?;
    notify(
        &tx,
        &ClusterSignal::Paused {
            destination: key.clone(),
            paused,
        },
    )
    .await?;
    tx.commit().await.map_err(pg_error)
}

/// See [`crate::store::Store::rename_destination`].
pub(super) async fn rename_destination(
    pool: Pool,
    source: String,
    from: String,
    to: String,
) -> Result<u64, StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(pg_error)?;
    let moved = tx
        .execute(
            "UPDATE deliveries SET destination = $3, claimed_by = NULL, claim_until = NULL
             WHERE source = $1 AND destination = $2",
            &[&source, &from, &to],
        )
        .await
        .map_err(pg_error)?;
    for table in [
        "paused_destinations",
        "destination_controls",
        "destination_errors",
    ] {
        // The new name's own row, if it has one, wins.
        tx.execute(
            &format!(
                "UPDATE {table} SET destination = $3 WHERE source = $1 AND destination = $2
                 AND NOT EXISTS (SELECT 1 FROM {table} WHERE source = $1 AND destination = $3)"
            ),
            &[&source, &from, &to],
        )
        .await
        .map_err(pg_error)?;
        tx.execute(
            &format!("DELETE FROM {table} WHERE source = $1 AND destination = $2"),
            &[&source, &from],
        )
        .await
        .map_err(pg_error)?;
    }
    // The counts of both names add up, minute by minute.
    tx.execute(
        "INSERT INTO attempt_counts AS c (source, destination, minute, attempts, successes)
         SELECT source, $3, minute, attempts, successes FROM attempt_counts
         WHERE source = $1 AND destination = $2
         ON CONFLICT (source, destination, minute) DO UPDATE
             SET attempts = c.attempts + EXCLUDED.attempts,
                 successes = c.successes + EXCLUDED.successes",
        &[&source, &from, &to],
    )
    .await
    .map_err(pg_error)?;
    tx.execute(
        "DELETE FROM attempt_counts WHERE source = $1 AND destination = $2",
        &[&source, &from],
    )
    .await
    .map_err(pg_error)?;
    tx.execute(
        "DELETE FROM destination_leases WHERE source = $1 AND destination = $2",
        &[&source, &from],
    )
    .await
    .map_err(pg_error)?;
    if moved > 0 {
        notify(&tx, &ClusterSignal::Work(vec![(source, to)])).await?;
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(moved)
}
