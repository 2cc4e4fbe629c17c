//! The instance registry and destination leases on a shared database.
//!
//! A lease holds while its owner's `lease_until` (heartbeat + `lease_s`) is in the
//! future: one heartbeat renews all of an instance's leases. Taking a lease is an upsert
//! that succeeds only if its owner is not live, and bumps the epoch; two instances
//! racing for the same lease cannot both win (the second sees the first's row).

use std::collections::HashSet;

use deadpool_postgres::{GenericClient, Pool};
use rand::seq::SliceRandom;

use super::{pg_error, pool_error};
use crate::store::{
    DestinationKey, Heartbeat, HeartbeatAnswer, InstanceInfo, InstanceRecord, Lease, StoreError,
};

/// Instances silent for this long are forgotten.
const FORGET_AFTER_MS: i64 = 3_600_000;

pub(super) async fn heartbeat(pool: Pool, hb: Heartbeat) -> Result<HeartbeatAnswer, StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(pg_error)?;
    let me = &hb.instance;
    let now = hb.now_ms;
    let lease_until = now + hb.lease_ms;
    tx.execute(
        "INSERT INTO instances (id, address, version, started_at, heartbeat_at, lease_until, config_fingerprint)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (id) DO UPDATE SET address = $2, heartbeat_at = $5, lease_until = $6,
             config_fingerprint = $7",
        &[
            &me.id,
            &me.address,
            &me.version,
            &me.started_at_ms,
            &now,
            &lease_until,
            &me.config_fingerprint,
        ],
    )
    .await
    .map_err(pg_error)?;
    let forget = now - FORGET_AFTER_MS;
    tx.execute("DELETE FROM instances WHERE lease_until < $1", &[&forget])
        .await
        .map_err(pg_error)?;
    let live: i64 = tx
        .query_one(
            "SELECT count(*) FROM instances WHERE lease_until > $1",
            &[&now],
        )
        .await
        .map_err(pg_error)?
        .get(0);

    let wanted: HashSet<&DestinationKey> = hb.wanted.iter().collect();
    let mut owned = owned_by(&tx, &me.id).await?;
    let dropped: Vec<Lease> = owned
        .iter()
        .filter(|l| !wanted.contains(&(l.source.clone(), l.destination.clone())))
        .cloned()
        .collect();
    release_in(&tx, &dropped).await?;
    owned.retain(|l| !dropped.contains(l));

    let fair_share = hb.wanted.len().div_ceil(live.max(1) as usize);
    if owned.len() < fair_share {
        let mine: HashSet<DestinationKey> = owned
            .iter()
            .map(|l| (l.source.clone(), l.destination.clone()))
            .collect();
        let others: Vec<&DestinationKey> =
            hb.wanted.iter().filter(|k| !mine.contains(*k)).collect();
        let (sources, destinations): (Vec<&str>, Vec<&str>) =
            others.iter().map(|(s, d)| (s.as_str(), d.as_str())).unzip();
        // Held by a live instance: not free.
        let held: HashSet<DestinationKey> = tx
            .query(
                "SELECT l.source, l.destination FROM destination_leases l
                 JOIN instances i ON i.id = l.owner
                 JOIN unnest($1::text[], $2::text[]) AS k(source, destination)
                   ON l.source = k.source AND l.destination = k.destination
                 WHERE i.lease_until > $3",
                &[&sources, &destinations, &now],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let mut free: Vec<&DestinationKey> =
            others.into_iter().filter(|k| !held.contains(*k)).collect();
        // Instances starting together do not all reach for the same leases first.
        free.shuffle(&mut rand::rng());
        free.truncate(fair_share - owned.len());
        // Sorted: two instances taking overlapping leases lock rows in the same order.
        free.sort();
        let (sources, destinations): (Vec<&str>, Vec<&str>) =
            free.iter().map(|(s, d)| (s.as_str(), d.as_str())).unzip();
        let taken = tx
            .query(
                "INSERT INTO destination_leases (source, destination, owner, epoch)
                 SELECT source, destination, $3::text, 1
                 FROM unnest($1::text[], $2::text[]) AS k(source, destination)
                 ON CONFLICT (source, destination) DO UPDATE
                     SET owner = EXCLUDED.owner, epoch = destination_leases.epoch + 1
                     WHERE NOT EXISTS (
                         SELECT 1 FROM instances i
                         WHERE i.id = destination_leases.owner AND i.lease_until > $4)
                 RETURNING source, destination, epoch",
                &[&sources, &destinations, &me.id, &now],
            )
            .await
            .map_err(pg_error)?;
        owned.extend(taken.iter().map(|r| Lease {
            source: r.get(0),
            destination: r.get(1),
            instance: me.id.clone(),
            epoch: r.get(2),
        }));
    }
    let shed = owned.iter().skip(fair_share).cloned().collect();
    let instances = instances(&tx, now).await?;
    tx.commit().await.map_err(pg_error)?;
    Ok(HeartbeatAnswer {
        owned,
        shed,
        instances,
    })
}

async fn owned_by(client: &impl GenericClient, instance: &str) -> Result<Vec<Lease>, StoreError> {
    let rows = client
        .query(
            "SELECT source, destination, epoch FROM destination_leases WHERE owner = $1
             ORDER BY source, destination",
            &[&instance],
        )
        .await
        .map_err(pg_error)?;
    Ok(rows
        .iter()
        .map(|r| Lease {
            source: r.get(0),
            destination: r.get(1),
            instance: instance.to_string(),
            epoch: r.get(2),
        })
        .collect())
}

async fn release_in(client: &impl GenericClient, leases: &[Lease]) -> Result<(), StoreError> {
    if leases.is_empty() {
        return Ok(());
    }
    let sources: Vec<&str> = leases.iter().map(|l| l.source.as_str()).collect();
    let destinations: Vec<&str> = leases.iter().map(|l| l.destination.as_str()).collect();
    let owners: Vec<&str> = leases.iter().map(|l| l.instance.as_str()).collect();
    let epochs: Vec<i64> = leases.iter().map(|l| l.epoch).collect();
    client
        // The row stays, owned by nobody: whoever takes it next gets the next epoch, so
        // that claims made under this one are void then.
        .execute(
            "UPDATE destination_leases l SET owner = ''
             FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[])
                 AS k(source, destination, owner, epoch)
             WHERE l.source = k.source AND l.destination = k.destination
               AND l.owner = k.owner AND l.epoch = k.epoch",
            &[&sources, &destinations, &owners, &epochs],
        )
        .await
        .map_err(pg_error)?;
    Ok(())
}

pub(super) async fn release(pool: Pool, leases: Vec<Lease>) -> Result<(), StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    release_in(&client, &leases).await
}

/// The instance leaves: its leases are free at once.
pub(super) async fn leave(pool: Pool, instance: String) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute(
        "UPDATE destination_leases SET owner = '' WHERE owner = $1",
        &[&instance],
    )
    .await
    .map_err(pg_error)?;
    tx.execute(
        "UPDATE instances SET lease_until = 0 WHERE id = $1",
        &[&instance],
    )
    .await
    .map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)
}

pub(super) async fn instances(
    client: &impl GenericClient,
    now: i64,
) -> Result<Vec<InstanceRecord>, StoreError> {
    let rows = client
        .query(
            "SELECT i.id, i.address, i.version, i.started_at, i.config_fingerprint,
                    i.heartbeat_at, i.lease_until,
                    (SELECT count(*) FROM destination_leases l WHERE l.owner = i.id)
             FROM instances i ORDER BY i.started_at, i.id",
            &[],
        )
        .await
        .map_err(pg_error)?;
    Ok(rows
        .iter()
        .map(|r| InstanceRecord {
            info: InstanceInfo {
                id: r.get(0),
                address: r.get(1),
                version: r.get(2),
                started_at_ms: r.get(3),
                config_fingerprint: r.get(4),
            },
            heartbeat_at_ms: r.get(5),
            live: r.get::<_, i64>(6) > now,
            destinations_owned: r.get::<_, i64>(7) as u64,
        })
        .collect())
}
