//! The instance registry and destination leases. One process holds a SQLite file (it is
//! locked), so here one instance owns every destination; the rules are the same as on a
//! shared database, so that the delivery actors work the same way on both.

use std::collections::HashSet;

use rusqlite::{params, Connection};

use crate::store::{
    DestinationKey, Heartbeat, HeartbeatAnswer, InstanceInfo, InstanceRecord, Lease, StoreError,
};

/// Instances silent for this long are forgotten.
const FORGET_AFTER_MS: i64 = 3_600_000;

pub(super) fn heartbeat(conn: &Connection, hb: &Heartbeat) -> Result<HeartbeatAnswer, StoreError> {
    let me = &hb.instance;
    let now = hb.now_ms;
    conn.prepare_cached(
        "INSERT INTO instances (id, address, version, started_at, heartbeat_at, lease_until, config_fingerprint)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET address = ?2, heartbeat_at = ?5, lease_until = ?6,
             config_fingerprint = ?7",
    )?
    .execute(params![
        me.id,
        me.address,
        me.version,
        me.started_at_ms,
        now,
        now + hb.lease_ms,
        me.config_fingerprint
    ])?;
    conn.prepare_cached("DELETE FROM instances WHERE lease_until < ?1")?
        .execute(params![now - FORGET_AFTER_MS])?;
    let live: i64 = conn
        .prepare_cached("SELECT count(*) FROM instances WHERE lease_until > ?1")?
        .query_row(params![now], |row| row.get(0))?;

    let wanted: HashSet<&DestinationKey> = hb.wanted.iter().collect();
    let mut owned = owned_by(conn, &me.id)?;
    // Destinations no longer configured here are given back.
    let dropped: Vec<Lease> = owned
        .iter()
        .filter(|l| !wanted.contains(&(l.source.clone(), l.destination.clone())))
        .cloned()
        .collect();
    release(conn, &dropped)?;
    owned.retain(|l| !dropped.contains(l));

    let fair_share = hb.wanted.len().div_ceil(live.max(1) as usize);
    if owned.len() < fair_share {
        let mine: HashSet<DestinationKey> = owned
            .iter()
            .map(|l| (l.source.clone(), l.destination.clone()))
            .collect();
        let mut current = conn.prepare_cached(
            "SELECT l.epoch, coalesce(i.lease_until, 0) > ?3
             FROM destination_leases l LEFT JOIN instances i ON i.id = l.owner
             WHERE l.source = ?1 AND l.destination = ?2",
        )?;
        let mut take = conn.prepare_cached(
            "INSERT OR REPLACE INTO destination_leases (source, destination, owner, epoch)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (source, destination) in &hb.wanted {
            if owned.len() >= fair_share {
                break;
            }
            if mine.contains(&(source.clone(), destination.clone())) {
                continue;
            }
            let lease: Option<(i64, bool)> = current
                .query_map(params![source, destination, now], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?
                .next()
                .transpose()?;
            let epoch = match lease {
                Some((_, true)) => continue, // A live owner holds it.
                Some((epoch, false)) => epoch + 1,
                None => 1,
            };
            take.execute(params![source, destination, me.id, epoch])?;
            owned.push(Lease {
                source: source.clone(),
                destination: destination.clone(),
                instance: me.id.clone(),
                epoch,
            });
        }
    }
    let shed = owned.iter().skip(fair_share).cloned().collect();
    Ok(HeartbeatAnswer {
        owned,
        shed,
        instances: instances(conn, now)?,
    })
}

fn owned_by(conn: &Connection, instance: &str) -> Result<Vec<Lease>, StoreError> {
    let leases = conn
        .prepare_cached(
            "SELECT source, destination, epoch FROM destination_leases WHERE owner = ?1
             ORDER BY source, destination",
        )?
        .query_map(params![instance], |row| {
            Ok(Lease {
                source: row.get(0)?,
                destination: row.get(1)?,
                instance: instance.to_string(),
                epoch: row.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(leases)
}

pub(super) fn release(conn: &Connection, leases: &[Lease]) -> Result<(), StoreError> {
    // The row stays, owned by nobody: whoever takes it next gets the next epoch, so that
    // claims made under this one are void then.
    let mut free = conn.prepare_cached(
        "UPDATE destination_leases SET owner = ''
         WHERE source = ?1 AND destination = ?2 AND owner = ?3 AND epoch = ?4",
    )?;
    for l in leases {
        free.execute(params![l.source, l.destination, l.instance, l.epoch])?;
    }
    Ok(())
}

/// The instance leaves: its leases are free at once.
pub(super) fn leave(conn: &Connection, instance: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE destination_leases SET owner = '' WHERE owner = ?1",
        params![instance],
    )?;
    conn.execute(
        "UPDATE instances SET lease_until = 0 WHERE id = ?1",
        params![instance],
    )?;
    Ok(())
}

pub(super) fn instances(conn: &Connection, now: i64) -> Result<Vec<InstanceRecord>, StoreError> {
    let records = conn
        .prepare_cached(
            "SELECT i.id, i.address, i.version, i.started_at, i.config_fingerprint,
                    i.heartbeat_at, i.lease_until,
                    (SELECT count(*) FROM destination_leases l WHERE l.owner = i.id)
             FROM instances i ORDER BY i.started_at, i.id",
        )?
        .query_map([], |row| {
            Ok(InstanceRecord {
                info: InstanceInfo {
                    id: row.get(0)?,
                    address: row.get(1)?,
                    version: row.get(2)?,
                    started_at_ms: row.get(3)?,
                    config_fingerprint: row.get(4)?,
                },
                heartbeat_at_ms: row.get(5)?,
                live: row.get::<_, i64>(6)? > now,
                destinations_owned: row.get::<_, i64>(7)? as u64,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(records)
}
