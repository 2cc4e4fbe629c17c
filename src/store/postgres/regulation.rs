//! Applying user deletion requests once, atomically, across every instance.

use std::collections::BTreeSet;

use deadpool_postgres::Pool;
use tokio_postgres::Row;

use super::ingest::REGULATION_LOCK;
use super::{notify, pg_error, pool_error};
use crate::store::{
    ClusterSignal, NotificationProgress, PurgedDelivery, Regulation, RegulationApplied,
    RegulationPlan, RegulationProgress, RegulationType, StoreError, Suppression,
};

pub(super) async fn add(pool: Pool, regulation: Regulation) -> Result<(), StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let subjects = serde_json::to_string(&regulation.subject_ids).unwrap_or_default();
    let sources = regulation
        .sources
        .as_ref()
        .map(|s| serde_json::to_string(s).unwrap_or_default());
    client
        .execute(
            "INSERT INTO regulations (id, type, subject_ids, sources, created_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &regulation.id,
                &regulation.regulation_type.as_str(),
                &subjects,
                &sources,
                &regulation.created_at_ms,
            ],
        )
        .await
        .map_err(pg_error)?;
    Ok(())
}

const COLUMNS: &str = "id, type, subject_ids, sources, created_at, applied_at";

fn from_row(row: &Row) -> Regulation {
    let parse = |text: String| serde_json::from_str::<Vec<String>>(&text).unwrap_or_default();
    Regulation {
        id: row.get(0),
        regulation_type: RegulationType::from_name(row.get(1))
            .unwrap_or(RegulationType::DeleteOnly),
        subject_ids: parse(row.get(2)),
        sources: row.get::<_, Option<String>>(3).map(parse),
        created_at_ms: row.get(4),
        applied_at_ms: row.get(5),
    }
}

pub(super) async fn unapplied(pool: Pool) -> Result<Vec<Regulation>, StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM regulations WHERE applied_at IS NULL ORDER BY created_at, id"
            ),
            &[],
        )
        .await
        .map_err(pg_error)?;
    Ok(rows.iter().map(from_row).collect())
}

pub(super) async fn recent(pool: Pool, limit: usize) -> Result<Vec<Regulation>, StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM regulations ORDER BY created_at DESC, id DESC LIMIT $1"
            ),
            &[&(limit as i64)],
        )
        .await
        .map_err(pg_error)?;
    Ok(rows.iter().map(from_row).collect())
}

pub(super) async fn apply(
    pool: Pool,
    plan: RegulationPlan,
) -> Result<RegulationApplied, StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(pg_error)?;
    // Exclusive: every append in progress on any instance finishes first, and none starts
    // until this commits; an event of a subject is either seen here or comes after.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&REGULATION_LOCK])
        .await
        .map_err(pg_error)?;
    let applied: Option<Option<i64>> = tx
        .query_opt(
            "SELECT applied_at FROM regulations WHERE id = $1 FOR UPDATE",
            &[&plan.regulation_id],
        )
        .await
        .map_err(pg_error)?
        .map(|r| r.get(0));
    if !matches!(applied, Some(None)) {
        tx.commit().await.map_err(pg_error)?;
        return Ok(RegulationApplied::default()); // Unknown, or applied already.
    }
    let now = plan.now_ms;
    let events = tx
        .query(
            "SELECT id, source, message_id FROM events
             WHERE user_id = ANY($1) AND type != 'delete'
               AND ($2::text[] IS NULL OR source = ANY($2))",
            &[&plan.subject_ids, &plan.sources],
        )
        .await
        .map_err(pg_error)?;
    let event_ids: Vec<i64> = events.iter().map(|r| r.get(0)).collect();
    let mut outcome = RegulationApplied::default();
    if !event_ids.is_empty() {
        let deliveries = tx
            .query(
                "SELECT id, source, destination, state FROM deliveries WHERE event_id = ANY($1)",
                &[&event_ids],
            )
            .await
            .map_err(pg_error)?;
        for row in deliveries {
            let state: String = row.get(3);
            if state != "delivered" {
                outcome.undelivered_removed += 1;
            }
            if state == "pending" {
                outcome.purged.push(PurgedDelivery {
                    delivery_id: row.get(0),
                    source: row.get(1),
                    destination: row.get(2),
                });
            }
        }
        // Attempts and deliveries go with their events (ON DELETE CASCADE); the dedupe
        // keys too, as on SQLite, where dedupe reads the events themselves.
        let sources: Vec<String> = events.iter().map(|r| r.get(1)).collect();
        let message_ids: Vec<String> = events.iter().map(|r| r.get(2)).collect();
        tx.execute(
            "DELETE FROM dedupe d USING unnest($1::text[], $2::text[]) AS k(source, message_id)
             WHERE d.source = k.source AND d.message_id = k.message_id",
            &[&sources, &message_ids],
        )
        .await
        .map_err(pg_error)?;
        outcome.events_removed = tx
            .execute("DELETE FROM events WHERE id = ANY($1)", &[&event_ids])
            .await
            .map_err(pg_error)?;
    }
    for source in &plan.suppress_in {
        tx.execute(
            "INSERT INTO suppressions (source, user_id, regulation_id, created_at)
             SELECT $1::text, u, $3::text, $4::int8 FROM unnest($2::text[]) AS u
             ON CONFLICT (source, user_id) DO UPDATE
                 SET regulation_id = EXCLUDED.regulation_id, created_at = EXCLUDED.created_at",
            &[source, &plan.subject_ids, &plan.regulation_id, &now],
        )
        .await
        .map_err(pg_error)?;
    }
    let mut woken = BTreeSet::new();
    for n in &plan.notifications {
        let event_id: i64 = tx
            .query_one(
                "INSERT INTO events (source, message_id, user_id, type, received_at, body)
                 VALUES ($1, $2, $3, 'delete', $4, $5) RETURNING id",
                &[&n.source, &n.message_id, &n.user_id, &now, &n.body],
            )
            .await
            .map_err(pg_error)?
            .get(0);
        tx.execute(
            "INSERT INTO regulation_events (regulation_id, event_id) VALUES ($1, $2)",
            &[&plan.regulation_id, &event_id],
        )
        .await
        .map_err(pg_error)?;
        tx.execute(
            "INSERT INTO deliveries (event_id, source, destination, next_attempt_at)
             SELECT $1::int8, $2::text, d, $3::int8 FROM unnest($4::text[]) AS d",
            &[&event_id, &n.source, &now, &n.destinations],
        )
        .await
        .map_err(pg_error)?;
        for d in &n.destinations {
            woken.insert((n.source.clone(), d.clone()));
        }
    }
    let purged_count = outcome.undelivered_removed as i64;
    tx.execute(
        "UPDATE regulations SET applied_at = $2, purged_deliveries = $3 WHERE id = $1",
        &[&plan.regulation_id, &now, &purged_count],
    )
    .await
    .map_err(pg_error)?;
    if !outcome.purged.is_empty() {
        notify(&tx, &ClusterSignal::Cancel(outcome.purged.clone())).await?;
    }
    if !woken.is_empty() {
        notify(&tx, &ClusterSignal::Work(woken.into_iter().collect())).await?;
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(outcome)
}

pub(super) async fn progress(
    pool: Pool,
    id: String,
) -> Result<Option<RegulationProgress>, StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let Some(row) = client
        .query_opt(
            &format!("SELECT {COLUMNS}, purged_deliveries FROM regulations WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(pg_error)?
    else {
        return Ok(None);
    };
    let regulation = from_row(&row);
    let purged: i64 = row.get(6);
    let rows = client
        .query(
            "SELECT d.source, d.destination, count(*),
                    count(*) FILTER (WHERE d.state = 'delivered'),
                    count(*) FILTER (WHERE d.state = 'pending'),
                    count(*) FILTER (WHERE d.state = 'dead')
             FROM regulation_events r JOIN deliveries d ON d.event_id = r.event_id
             WHERE r.regulation_id = $1
             GROUP BY d.source, d.destination ORDER BY d.source, d.destination",
            &[&id],
        )
        .await
        .map_err(pg_error)?;
    let notifications = rows
        .iter()
        .map(|r| NotificationProgress {
            source: r.get(0),
            destination: r.get(1),
            total: r.get::<_, i64>(2) as u64,
            delivered: r.get::<_, i64>(3) as u64,
            pending: r.get::<_, i64>(4) as u64,
            dead: r.get::<_, i64>(5) as u64,
        })
        .collect();
    Ok(Some(RegulationProgress {
        regulation,
        purged_deliveries: purged as u64,
        notifications,
    }))
}

pub(super) async fn suppressions(pool: Pool) -> Result<Vec<Suppression>, StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let rows = client
        .query(
            "SELECT source, user_id, regulation_id, created_at FROM suppressions
             ORDER BY source, user_id",
            &[],
        )
        .await
        .map_err(pg_error)?;
    Ok(rows
        .iter()
        .map(|r| Suppression {
            source: r.get(0),
            user_id: r.get(1),
            regulation_id: r.get(2),
            created_at_ms: r.get(3),
        })
        .collect())
}
