//! The store contract: one suite, written against `dyn Store`, run on every backend. A
//! backend passes all of it or is not done. PostgreSQL cases need a server (they skip,
//! saying so, when none answers, except under CI).

use std::sync::Arc;

use webhookd::config::{StorageBackend, StorageConfig, StorageUrl};
use webhookd::store::{
    self, Appended, AttemptOutcome, AttemptRecord, Claim, ControlChange, DeadLetterQuery,
    DeliveryUpdate, DestinationControl, Heartbeat, InstanceInfo, Lease, NewEvent, Notification,
    Prune, Regulation, RegulationPlan, RegulationType, ReplaySelection, Store, StoreError,
    StoreHealth,
};

use crate::common::postgres::{postgres_available, TestDatabase};

/// One backend's store for one case, with what keeps it alive.
pub struct Backend {
    pub store: Arc<dyn Store>,
    runtime: actix_rt::SystemRunner,
    config: StorageConfig,
    _dir: Option<tempfile::TempDir>,
    database: Option<TestDatabase>,
}

impl Backend {
    fn sqlite() -> Option<Backend> {
        let dir = tempfile::tempdir().unwrap();
        let config = StorageConfig {
            path: dir.path().join("contract.db"),
            ..StorageConfig::default()
        };
        Some(Backend::open(config, Some(dir), None))
    }

    fn postgres() -> Option<Backend> {
        if !postgres_available() {
            return None;
        }
        let database = TestDatabase::create();
        let config = StorageConfig {
            backend: StorageBackend::Postgres,
            url: Some(StorageUrl::new(database.url.clone())),
            pool_size: 4,
            ..StorageConfig::default()
        };
        Some(Backend::open(config, None, Some(database)))
    }

    fn open(
        config: StorageConfig,
        dir: Option<tempfile::TempDir>,
        database: Option<TestDatabase>,
    ) -> Backend {
        let runtime = actix_rt::System::new();
        let store = runtime
            .block_on(store::open(&config, Box::new(|_, _| {})))
            .unwrap();
        Backend {
            store,
            runtime,
            config,
            _dir: dir,
            database,
        }
    }

    fn run<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(future)
    }

    /// Opens the same store again, beside this one (a second instance on PostgreSQL;
    /// on SQLite without taking the process lock).
    fn reopen_beside(&self) -> Result<Arc<dyn Store>, StoreError> {
        match self.config.backend {
            StorageBackend::Sqlite => Ok(Arc::new(webhookd::store::SqliteStore::open_beside(
                &self.config.path,
            )?)),
            StorageBackend::Postgres => self.run(store::open(&self.config, Box::new(|_, _| {}))),
        }
    }

    /// Opens the same store again as a service would (SQLite: taking the process lock).
    fn reopen(&self) -> Result<Arc<dyn Store>, StoreError> {
        self.run(store::open(&self.config, Box::new(|_, _| {})))
    }
}

const T0: i64 = 1_700_000_000_000;
const LEASE_MS: i64 = 1_000;

fn event(source: &str, message_id: &str, user: &str, destinations: &[&str]) -> NewEvent {
    NewEvent {
        source: source.into(),
        message_id: message_id.into(),
        dedupe_since_ms: Some(T0 - 60_000),
        user_id: Some(user.into()),
        event_type: "track",
        received_at_ms: T0,
        body: format!(r#"{{"messageId":"{message_id}","userId":"{user}"}}"#),
        destinations: destinations.iter().map(|d| d.to_string()).collect(),
    }
}

fn instance(id: &str) -> InstanceInfo {
    InstanceInfo {
        id: id.into(),
        address: format!("{id}:8080"),
        version: "test".into(),
        started_at_ms: T0,
        config_fingerprint: "f".into(),
    }
}

fn key(source: &str, destination: &str) -> (String, String) {
    (source.into(), destination.into())
}

/// A heartbeat of `id` at `now` wanting `wanted`; the leases it owns after.
fn beat(
    b: &Backend,
    store: &dyn Store,
    id: &str,
    wanted: &[(String, String)],
    now: i64,
) -> Vec<Lease> {
    let answer = b
        .run(store.heartbeat(Heartbeat {
            instance: instance(id),
            wanted: wanted.to_vec(),
            now_ms: now,
            lease_ms: LEASE_MS,
        }))
        .unwrap();
    answer.owned
}

fn claim(lease: &Lease, claimer: &str, now: i64, limit: usize) -> Claim {
    Claim {
        source: lease.source.clone(),
        destination: lease.destination.clone(),
        claimer: claimer.into(),
        lease: lease.clone(),
        now_ms: now,
        claim_until_ms: now + 10_000,
        limit,
    }
}

fn outcome(delivery_id: i64, claimer: &str, now: i64, update: DeliveryUpdate) -> AttemptOutcome {
    AttemptOutcome {
        delivery_id,
        claimer: claimer.into(),
        now_ms: now,
        first_attempt_at_ms: now,
        attempts: vec![AttemptRecord {
            attempted_at_ms: now,
            url: "http://receiver/hook".into(),
            status: Some(503),
            error: Some("HTTP 503".into()),
            latency_ms: 3,
            response_body: Some("try later".into()),
        }],
        update,
    }
}

fn stored_id(appended: &Appended) -> i64 {
    match appended {
        Appended::Stored { event_id } => *event_id,
        other => panic!("not stored: {other:?}"),
    }
}

fn append_dedupes_within_the_window(b: &Backend) {
    let s = b.store.as_ref();
    let first = b
        .run(s.append(vec![
            event("web", "m1", "u1", &["d"]),
            event("web", "m1", "u1", &["d"]),
            event("app", "m1", "u1", &["d"]),
        ]))
        .unwrap();
    stored_id(&first[0]);
    assert_eq!(
        first[1],
        Appended::Duplicate,
        "the same id twice in one call"
    );
    stored_id(&first[2]); // Another source may use the same id.
    let again = b
        .run(s.append(vec![event("web", "m1", "u1", &["d"])]))
        .unwrap();
    assert_eq!(again, [Appended::Duplicate]);
    // Once the earlier one is out of the window, the id is new again.
    let mut later = event("web", "m1", "u1", &["d"]);
    later.dedupe_since_ms = Some(T0 + 1);
    later.received_at_ms = T0 + 100_000;
    stored_id(&b.run(s.append(vec![later])).unwrap()[0]);
    // No dedupe asked (an id made by webhookd): stored whatever is there.
    let mut made = event("web", "m1", "u1", &["d"]);
    made.dedupe_since_ms = None;
    stored_id(&b.run(s.append(vec![made])).unwrap()[0]);
    assert_eq!(b.run(s.pending_count("web", "d")).unwrap(), 3);
    let found = b.run(s.find_event("web", "m1")).unwrap().unwrap();
    assert_eq!(found.user_id.as_deref(), Some("u1"));
}

/// More random ids than SQLite keeps in memory before indexing them, so that both the
/// indexed ones and the newest are looked up; again after opening the store anew (which
/// rebuilds what was in memory), and once more after the window.
fn many_random_ids_dedupe_exactly(b: &Backend) {
    let ids: Vec<String> = (0..40_000)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let append_all = |store: &dyn Store, since: i64| -> Vec<Appended> {
        let mut outcomes = Vec::new();
        for chunk in ids.chunks(500) {
            let events = chunk
                .iter()
                .map(|id| {
                    let mut e = event("web", id, "u", &["d"]);
                    e.dedupe_since_ms = Some(since);
                    e
                })
                .collect();
            outcomes.extend(b.run(store.append(events)).unwrap());
        }
        outcomes
    };
    let within = T0 - 60_000;
    let first = append_all(b.store.as_ref(), within);
    assert!(first.iter().all(|o| matches!(o, Appended::Stored { .. })));
    let again = append_all(b.store.as_ref(), within);
    let stored_again = again.iter().filter(|o| **o != Appended::Duplicate).count();
    assert_eq!(stored_again, 0, "ids stored twice within the window");
    for id in [&ids[0], &ids[20_000], &ids[39_999]] {
        let found = b.run(b.store.find_event("web", id)).unwrap();
        assert_eq!(found.map(|e| e.message_id).as_ref(), Some(id));
    }
    assert_eq!(
        b.run(b.store.find_event("web", "never-sent")).unwrap(),
        None
    );

    let reopened = b.reopen_beside().unwrap();
    let after_reopen = append_all(reopened.as_ref(), within);
    let stored_again = after_reopen
        .iter()
        .filter(|o| **o != Appended::Duplicate)
        .count();
    assert_eq!(stored_again, 0, "ids stored twice after reopening");
    // Received at T0, so with the window starting at T0 they are all outside it.
    let after_window = append_all(reopened.as_ref(), T0);
    assert!(after_window
        .iter()
        .all(|o| matches!(o, Appended::Stored { .. })));
    assert_eq!(b.run(reopened.pending_count("web", "d")).unwrap(), 80_000);
}

fn claims_hold_under_a_live_lease_and_lapse(b: &Backend) {
    let s = b.store.as_ref();
    b.run(
        s.append(
            (0..3)
                .map(|i| event("web", &format!("c{i}"), "u", &["d"]))
                .collect(),
        ),
    )
    .unwrap();
    let lease = beat(b, s, "i1", &[key("web", "d")], T0)[0].clone();
    let now = T0 + 10;
    // A claim from an older epoch, or another instance, gets nothing.
    let mut stale = lease.clone();
    stale.epoch -= 1;
    assert!(b
        .run(s.claim_due(claim(&stale, "x", now, 5)))
        .unwrap()
        .due
        .is_empty());
    let mut other = lease.clone();
    other.instance = "i2".into();
    assert!(b
        .run(s.claim_due(claim(&other, "x", now, 5)))
        .unwrap()
        .due
        .is_empty());
    let first = b.run(s.claim_due(claim(&lease, "a", now, 2))).unwrap();
    assert_eq!(first.due.len(), 2);
    let second = b.run(s.claim_due(claim(&lease, "b", now, 5))).unwrap();
    assert_eq!(
        second.due.len(),
        1,
        "claimed deliveries are not claimed twice"
    );
    assert!(b
        .run(s.claim_due(claim(&lease, "c", now, 5)))
        .unwrap()
        .due
        .is_empty());
    // A claim from an older epoch, or another instance, gets nothing.
    let mut stale = lease.clone();
    stale.epoch -= 1;
    assert!(b
        .run(s.claim_due(claim(&stale, "x", now, 5)))
        .unwrap()
        .due
        .is_empty());
    let mut other = lease.clone();
    other.instance = "i2".into();
    assert!(b
        .run(s.claim_due(claim(&other, "x", now, 5)))
        .unwrap()
        .due
        .is_empty());
    // Claims run out; the lease too, without a heartbeat.
    let renewed = beat(b, s, "i1", &[key("web", "d")], now + 10_000);
    assert_eq!(renewed[0].epoch, lease.epoch, "a renewal keeps the epoch");
    let lapsed = b
        .run(s.claim_due(claim(&lease, "d", now + 10_001, 5)))
        .unwrap();
    assert_eq!(lapsed.due.len(), 3, "claims ran out");
    b.run(s.release_claims("d")).unwrap();
    assert!(
        b.run(s.claim_due(claim(&lease, "e", now + 10_000 + LEASE_MS + 1, 5)))
            .unwrap()
            .due
            .is_empty(),
        "the lease ran out"
    );
    // A released claimer's deliveries are free at once.
    let back = beat(b, s, "i1", &[key("web", "d")], now + 12_000);
    assert_eq!(
        b.run(s.claim_due(claim(&back[0], "f", now + 12_000, 5)))
            .unwrap()
            .due
            .len(),
        3
    );
}

fn leases_spread_and_pass_on(b: &Backend) {
    let s = b.store.as_ref();
    let wanted = vec![key("web", "a"), key("web", "b")];
    let owned = beat(b, s, "i1", &wanted, T0);
    assert_eq!(owned.len(), 2, "alone, an instance owns everything");
    // A second instance: nothing is free yet; the first gives up its share.
    assert!(beat(b, s, "i2", &wanted, T0 + 100).is_empty());
    let answer = b
        .run(s.heartbeat(Heartbeat {
            instance: instance("i1"),
            wanted: wanted.clone(),
            now_ms: T0 + 200,
            lease_ms: LEASE_MS,
        }))
        .unwrap();
    assert_eq!(answer.shed.len(), 1, "beyond the fair share of 1");
    b.run(s.release_leases(answer.shed.clone())).unwrap();
    let taken = beat(b, s, "i2", &wanted, T0 + 300);
    assert_eq!(taken.len(), 1);
    assert_eq!(
        (taken[0].source.clone(), taken[0].destination.clone()),
        (
            answer.shed[0].source.clone(),
            answer.shed[0].destination.clone()
        )
    );
    assert!(
        taken[0].epoch > answer.shed[0].epoch,
        "a new owner, a new epoch"
    );
    // The first instance stops beating: after its lease, the second takes the rest.
    let kept = beat(b, s, "i1", &wanted, T0 + 400);
    assert_eq!(kept.len(), 1);
    assert_eq!(beat(b, s, "i2", &wanted, T0 + 1_000).len(), 1, "not yet");
    let all = beat(b, s, "i2", &wanted, T0 + 400 + LEASE_MS + 1);
    assert_eq!(all.len(), 2);
    let instances = b.run(s.instances(T0 + 400 + LEASE_MS + 1)).unwrap();
    let i1 = instances.iter().find(|i| i.info.id == "i1").unwrap();
    let i2 = instances.iter().find(|i| i.info.id == "i2").unwrap();
    assert!(!i1.live && i2.live);
    assert_eq!((i1.destinations_owned, i2.destinations_owned), (0, 2));
    // Leaving frees its leases at once.
    b.run(s.shutdown("i2")).unwrap();
    assert_eq!(beat(b, s, "i3", &wanted, T0 + 1_500).len(), 2);
}

fn attempts_are_recorded_under_the_claim_only(b: &Backend) {
    let s = b.store.as_ref();
    b.run(s.append(vec![
        event("web", "r1", "u", &["d"]),
        event("web", "r2", "u", &["d"]),
    ]))
    .unwrap();
    let lease = beat(b, s, "i1", &[key("web", "d")], T0)[0].clone();
    let due = b.run(s.claim_due(claim(&lease, "a", T0, 5))).unwrap().due;
    let (one, two) = (due[0].delivery_id, due[1].delivery_id);
    // A retry, with a URL given up on by value.
    let retry = DeliveryUpdate::RetryAt {
        at_ms: T0 + 50,
        given_up_urls: vec!["http://gone/".into()],
    };
    b.run(s.record_attempt(outcome(one, "a", T0 + 5, retry)))
        .unwrap();
    let page = b.run(s.claim_due(claim(&lease, "b", T0 + 10, 5))).unwrap();
    assert!(page.due.is_empty(), "not due yet");
    assert_eq!(page.next_due_at_ms, Some(T0 + 50));
    let again = b
        .run(s.claim_due(claim(&lease, "b", T0 + 60, 5)))
        .unwrap()
        .due;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].delivery_id, one);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].first_attempt_at_ms, Some(T0 + 5));
    assert_eq!(again[0].given_up_urls, ["http://gone/"]);
    // The old claimer's record no longer counts: "b" holds it now.
    b.run(s.record_attempt(outcome(one, "a", T0 + 61, DeliveryUpdate::Delivered)))
        .unwrap();
    b.run(s.record_attempt(outcome(one, "b", T0 + 62, DeliveryUpdate::Delivered)))
        .unwrap();
    let statuses = b.run(s.deliveries_of("web", "r1")).unwrap();
    assert_eq!(statuses[0].state, "delivered");
    assert_eq!(statuses[0].attempt_count, 2);
    assert_eq!(statuses[0].attempts.len(), 2);
    assert_eq!(statuses[0].last_error, None, "delivered: no last error");
    assert_eq!(
        statuses[0].attempts[0].response_body.as_deref(),
        Some("try later")
    );
    // Dead-lettered, then replayed with a fresh window and every URL.
    let dead = DeliveryUpdate::Dead {
        reason: "no URL worth retrying".into(),
    };
    b.run(s.record_attempt(outcome(two, "a", T0 + 70, dead)))
        .unwrap();
    let letters = b
        .run(s.dead_letters(DeadLetterQuery {
            limit: 10,
            ..DeadLetterQuery::default()
        }))
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].delivery_id, two);
    assert_eq!(letters[0].dead_at_ms, T0 + 70);
    // By id, only within the destinations given (the configured ones).
    let elsewhere = b
        .run(s.replay_dead_letters(
            ReplaySelection::Ids {
                ids: vec![two],
                within: vec![key("web", "other")],
            },
            T0 + 75,
        ))
        .unwrap();
    assert!(elsewhere.is_empty());
    let replayed = b
        .run(s.replay_dead_letters(
            ReplaySelection::Destination {
                source: "web".into(),
                destination: "d".into(),
                since_ms: Some(T0),
                until_ms: None,
            },
            T0 + 80,
        ))
        .unwrap();
    assert_eq!(replayed, [("web".to_string(), "d".to_string(), 1)]);
    let revived = b
        .run(s.claim_due(claim(&lease, "c", T0 + 80, 5)))
        .unwrap()
        .due;
    assert_eq!(revived.len(), 1);
    assert_eq!(revived[0].first_attempt_at_ms, None);
    assert!(revived[0].given_up_urls.is_empty());
    // Replaying what is not dead does nothing.
    let none = b
        .run(s.replay_dead_letters(
            ReplaySelection::Ids {
                ids: vec![one],
                within: vec![key("web", "d")],
            },
            T0 + 90,
        ))
        .unwrap();
    assert!(none.is_empty());
    let stats = b.run(s.destination_stats(T0 + 100)).unwrap();
    let d = stats.iter().find(|x| x.destination == "d").unwrap();
    assert_eq!((d.pending, d.dead), (1, 0));
}

/// Outcomes handed in together, each one fenced by its own claim: 300 at once, half by
/// their claimer and half by another, every one answered; only the first half counts.
fn outcomes_recorded_together_are_each_fenced(b: &Backend) {
    let s = b.store.as_ref();
    let ids: Vec<String> = (0..300).map(|n| format!("t{n}")).collect();
    let events = ids.iter().map(|id| event("web", id, "u", &["d"])).collect();
    b.run(s.append(events)).unwrap();
    let lease = beat(b, s, "i1", &[key("web", "d")], T0)[0].clone();
    let due = b.run(s.claim_due(claim(&lease, "a", T0, 300))).unwrap().due;
    assert_eq!(due.len(), 300);
    let recorded: Vec<_> = due
        .iter()
        .enumerate()
        .map(|(n, d)| {
            let claimer = if n % 2 == 0 { "a" } else { "someone else" };
            s.record_attempt(outcome(
                d.delivery_id,
                claimer,
                T0 + 1,
                DeliveryUpdate::Delivered,
            ))
        })
        .collect();
    for answer in b.run(futures_util::future::join_all(recorded)) {
        answer.unwrap();
    }
    for (n, d) in due.iter().enumerate() {
        let statuses = b.run(s.deliveries_of("web", &d.message_id)).unwrap();
        let expected = if n % 2 == 0 { "delivered" } else { "pending" };
        assert_eq!(statuses[0].state, expected, "{}", d.message_id);
    }
}

fn connection_failures_alone_give_stats(b: &Backend) {
    let s = b.store.as_ref();
    b.run(s.append(vec![event("web", "f1", "u", &["d"])]))
        .unwrap();
    let lease = beat(b, s, "i1", &[key("web", "d")], T0)[0].clone();
    let due = b.run(s.claim_due(claim(&lease, "a", T0, 5))).unwrap().due;
    let mut failed = outcome(
        due[0].delivery_id,
        "a",
        T0,
        DeliveryUpdate::RetryAt {
            at_ms: T0 + 1_000,
            given_up_urls: vec![],
        },
    );
    failed.attempts[0].status = None;
    failed.attempts[0].error = Some("connection refused".into());
    failed.attempts[0].response_body = None;
    b.run(s.record_attempt(failed)).unwrap();
    let stats = b.run(s.destination_stats(T0 + 10)).unwrap();
    assert_eq!(stats[0].attempts_last_hour, 1);
    assert_eq!(stats[0].successes_last_hour, 0);
    assert_eq!(stats[0].last_error.as_deref(), Some("connection refused"));
}

/// Attempts of the last hour are counted by the minute: requests made under the claim,
/// each URL's, and none older than the hour.
fn attempts_of_the_last_hour_are_counted(b: &Backend) {
    const MINUTE: i64 = 60_000;
    let s = b.store.as_ref();
    let events = (0..4).map(|n| event("web", &format!("h{n}"), "u", &["d"]));
    b.run(s.append(events.collect())).unwrap();
    let lease = beat(b, s, "i1", &[key("web", "d")], T0)[0].clone();
    let due = b.run(s.claim_due(claim(&lease, "a", T0, 4))).unwrap().due;
    assert_eq!(due.len(), 4);
    let answered = |at_ms: i64, status: u16| AttemptRecord {
        attempted_at_ms: at_ms,
        url: format!("http://receiver/{status}"),
        status: Some(status),
        error: (status >= 300).then(|| format!("HTTP {status}")),
        latency_ms: 3,
        response_body: None,
    };
    let delivered = |n: usize, claimer: &str, attempts: Vec<AttemptRecord>| AttemptOutcome {
        attempts,
        ..outcome(due[n].delivery_id, claimer, T0, DeliveryUpdate::Delivered)
    };
    for recorded in [
        delivered(0, "a", vec![answered(T0 - 120 * MINUTE, 200)]),
        delivered(1, "a", vec![answered(T0 - 30 * MINUTE, 200)]),
        // Two URLs: one failed, one succeeded.
        delivered(2, "a", vec![answered(T0, 503), answered(T0 + 5, 204)]),
        // Not under its claim: not recorded, not counted.
        delivered(3, "someone else", vec![answered(T0, 200)]),
    ] {
        b.run(s.record_attempt(recorded)).unwrap();
    }
    let last_hour = |now: i64| {
        let stats = b.run(s.destination_stats(now)).unwrap();
        let d = stats.iter().find(|d| d.destination == "d").unwrap();
        (d.attempts_last_hour, d.successes_last_hour)
    };
    assert_eq!(last_hour(T0 + 10), (3, 2));
    // Renamed: the counts go with the deliveries.
    assert_eq!(b.run(s.rename_destination("web", "d", "e")).unwrap(), 4);
    let last_hour = |now: i64| {
        let stats = b.run(s.destination_stats(now)).unwrap();
        assert!(stats.iter().all(|d| d.destination != "d"), "{stats:?}");
        let e = stats.iter().find(|d| d.destination == "e").unwrap();
        (e.attempts_last_hour, e.successes_last_hour)
    };
    assert_eq!(last_hour(T0 + 10), (3, 2));
    // Forty minutes on, the attempt of thirty minutes before has left the hour.
    assert_eq!(last_hour(T0 + 40 * MINUTE), (2, 1));
    assert_eq!(last_hour(T0 + 2 * 60 * MINUTE), (0, 0));
}

fn regulations_remove_their_users_once(b: &Backend) {
    let s = b.store.as_ref();
    b.run(s.append(vec![
        event("web", "g1", "gone", &["d"]),
        event("web", "g2", "gone", &["d"]),
        event("web", "g3", "gone", &["d"]),
        event("web", "k1", "kept", &["d"]),
        event("app", "g4", "gone", &["d"]),
    ]))
    .unwrap();
    let lease = beat(b, s, "i1", &[key("web", "d")], T0)[0].clone();
    let due = b.run(s.claim_due(claim(&lease, "a", T0, 2))).unwrap().due;
    b.run(s.record_attempt(outcome(
        due[0].delivery_id,
        "a",
        T0,
        DeliveryUpdate::Delivered,
    )))
    .unwrap();
    let dead = DeliveryUpdate::Dead {
        reason: "gone".into(),
    };
    b.run(s.record_attempt(outcome(due[1].delivery_id, "a", T0, dead)))
        .unwrap();
    let regulation = Regulation {
        id: "reg-1".into(),
        regulation_type: RegulationType::SuppressWithDelete,
        subject_ids: vec!["gone".into()],
        sources: Some(vec!["web".into()]),
        created_at_ms: T0,
        applied_at_ms: None,
    };
    b.run(s.add_regulation(regulation)).unwrap();
    assert_eq!(b.run(s.unapplied_regulations()).unwrap().len(), 1);
    let plan = RegulationPlan {
        regulation_id: "reg-1".into(),
        suppress_in: vec!["web".into()],
        subject_ids: vec!["gone".into()],
        sources: Some(vec!["web".into()]),
        notifications: vec![Notification {
            source: "web".into(),
            user_id: "gone".into(),
            message_id: "delete-reg-1-0".into(),
            body: r#"{"type":"delete","userId":"gone"}"#.into(),
            destinations: vec!["d".into(), "e".into()],
        }],
        now_ms: T0 + 100,
    };
    let applied = b.run(s.apply_regulation(plan.clone())).unwrap();
    assert_eq!(
        applied.events_removed, 3,
        "delivered, dead and pending alike"
    );
    assert_eq!(applied.undelivered_removed, 2);
    assert_eq!(applied.purged.len(), 1, "the pending one, to cancel");
    for id in ["g1", "g2", "g3"] {
        assert!(b.run(s.find_event("web", id)).unwrap().is_none(), "{id}");
        assert!(
            b.run(s.deliveries_of("web", id)).unwrap().is_empty(),
            "{id}"
        );
    }
    assert!(b.run(s.find_event("web", "k1")).unwrap().is_some());
    assert!(
        b.run(s.find_event("app", "g4")).unwrap().is_some(),
        "another source"
    );
    // An actor that missed the cancellation asks: only the kept one is pending.
    let kept = b.run(s.deliveries_of("web", "k1")).unwrap()[0].delivery_id;
    let held = vec![
        due[0].delivery_id,
        due[1].delivery_id,
        applied.purged[0].delivery_id,
        kept,
    ];
    assert_eq!(b.run(s.still_pending(held)).unwrap(), [kept]);
    // Applied once.
    let twice = b.run(s.apply_regulation(plan)).unwrap();
    assert_eq!((twice.events_removed, twice.purged.len()), (0, 0));
    assert!(b.run(s.unapplied_regulations()).unwrap().is_empty());
    let progress = b.run(s.regulation_progress("reg-1")).unwrap().unwrap();
    assert_eq!(progress.regulation.applied_at_ms, Some(T0 + 100));
    assert_eq!(progress.purged_deliveries, 2);
    assert_eq!(progress.notifications.len(), 2);
    assert!(progress
        .notifications
        .iter()
        .all(|n| n.total == 1 && n.pending == 1));
    // Suppressed: later events of the user in that source are dropped.
    let mut later = event("web", "g5", "gone", &["d"]);
    later.received_at_ms = T0 + 200;
    assert_eq!(
        b.run(s.append(vec![later])).unwrap(),
        [Appended::Suppressed]
    );
    assert_eq!(b.run(s.suppressions()).unwrap().len(), 1);
    assert!(b.run(s.lift_suppression("web", "gone")).unwrap());
    assert!(!b.run(s.lift_suppression("web", "gone")).unwrap());
    let mut after = event("web", "g6", "gone", &["d"]);
    after.received_at_ms = T0 + 300;
    stored_id(&b.run(s.append(vec![after])).unwrap()[0]);
}

fn a_users_events_and_recent_regulations_are_listed(b: &Backend) {
    let s = b.store.as_ref();
    b.run(s.append(vec![
        event("web", "u1", "someone", &["d"]),
        event("web", "o1", "other", &["d"]),
        event("app", "u2", "someone", &["d"]),
        event("web", "u3", "someone", &[]),
    ]))
    .unwrap();
    let ids = |events: Vec<webhookd::store::StoredEvent>| {
        events
            .into_iter()
            .map(|e| (e.source, e.message_id))
            .collect::<Vec<_>>()
    };
    let newest_first = ids(b.run(s.events_of_user("someone", 10)).unwrap());
    assert_eq!(
        newest_first,
        [("web", "u3"), ("app", "u2"), ("web", "u1")].map(|(s, m)| (s.to_string(), m.to_string()))
    );
    assert_eq!(b.run(s.events_of_user("someone", 2)).unwrap().len(), 2);
    assert!(b.run(s.events_of_user("nobody", 10)).unwrap().is_empty());
    for (i, id) in ["r1", "r2", "r3"].into_iter().enumerate() {
        let regulation = Regulation {
            id: id.into(),
            regulation_type: RegulationType::DeleteOnly,
            subject_ids: vec!["x".into()],
            sources: None,
            created_at_ms: T0 + i as i64,
            applied_at_ms: None,
        };
        b.run(s.add_regulation(regulation)).unwrap();
    }
    let recent: Vec<String> = b
        .run(s.recent_regulations(2))
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(recent, ["r3", "r2"]);
}

fn pauses_are_kept(b: &Backend) {
    let s = b.store.as_ref();
    b.run(s.set_paused("web", "d", true, T0)).unwrap();
    b.run(s.set_paused("web", "d", true, T0)).unwrap();
    assert_eq!(b.run(s.paused_destinations()).unwrap(), [key("web", "d")]);
    let stats = b.run(s.destination_stats(T0)).unwrap();
    assert!(stats[0].paused);
    b.run(s.set_paused("web", "d", false, T0)).unwrap();
    assert!(b.run(s.paused_destinations()).unwrap().is_empty());
}

fn controls_are_kept_and_changed(b: &Backend) {
    let s = b.store.as_ref();
    assert!(b.run(s.destination_controls()).unwrap().is_empty());
    let change = |c: ControlChange| b.run(s.change_control("web", "d", c, T0)).unwrap();
    change(ControlChange::UrlGone {
        url: "http://a/".into(),
    });
    change(ControlChange::UrlGone {
        url: "http://a/".into(),
    });
    change(ControlChange::UrlGone {
        url: "http://b/".into(),
    });
    change(ControlChange::Failing { since_ms: Some(T0) });
    change(ControlChange::Disabled {
        reason: "why".into(),
        at_ms: T0 + 1,
    });
    let expected = DestinationControl {
        source: "web".into(),
        destination: "d".into(),
        disabled_at_ms: Some(T0 + 1),
        disabled_reason: Some("why".into()),
        gone_urls: vec!["http://a/".into(), "http://b/".into()],
        failing_since_ms: Some(T0),
    };
    assert_eq!(
        b.run(s.destination_controls()).unwrap(),
        std::slice::from_ref(&expected)
    );
    change(ControlChange::UrlsReset);
    change(ControlChange::Failing { since_ms: None });
    let reset = DestinationControl {
        gone_urls: vec![],
        failing_since_ms: None,
        ..expected
    };
    assert_eq!(b.run(s.destination_controls()).unwrap(), [reset]);
    change(ControlChange::Enabled);
    assert!(b.run(s.destination_controls()).unwrap().is_empty());
}

fn pruning_removes_finished_work_only(b: &Backend) {
    let s = b.store.as_ref();
    let mut no_destination = event("web", "none", "u", &[]);
    no_destination.destinations.clear();
    let appended = b
        .run(s.append(vec![
            event("web", "delivered", "u", &["d"]),
            event("web", "pending", "u", &["d"]),
            event("web", "dead", "u", &["d"]),
            event("web", "late", "u", &["d"]),
            no_destination,
        ]))
        .unwrap();
    assert!(appended
        .iter()
        .all(|a| matches!(a, Appended::Stored { .. })));
    let lease = beat(b, s, "i1", &[key("web", "d")], T0)[0].clone();
    let due = b.run(s.claim_due(claim(&lease, "a", T0, 10))).unwrap().due;
    let id = |m: &str| due.iter().find(|d| d.message_id == m).unwrap().delivery_id;
    let finish = |m: &str, at: i64, update: DeliveryUpdate| {
        b.run(s.record_attempt(outcome(id(m), "a", at, update)))
            .unwrap()
    };
    finish("delivered", T0 + 10, DeliveryUpdate::Delivered);
    finish(
        "dead",
        T0 + 10,
        DeliveryUpdate::Dead {
            reason: "gone".into(),
        },
    );
    finish("late", T0 + 1_000, DeliveryUpdate::Delivered);
    let before = T0 + 500;
    let prune = Prune {
        after_id: 0,
        delivered_before_ms: before,
        dead_before_ms: before,
        dedupe_before_ms: before,
        limit: 100,
    };
    let pruned = b.run(s.prune(prune)).unwrap();
    assert_eq!(pruned.events, 3, "{pruned:?}");
    let last = pruned.next_after.expect("the pass goes on");
    let rest = b
        .run(s.prune(Prune {
            after_id: last,
            ..prune
        }))
        .unwrap();
    assert_eq!((rest.events, rest.next_after), (0, None));
    let find = |m: &str| b.run(s.find_event("web", m)).unwrap();
    for gone in ["delivered", "dead", "none"] {
        assert!(find(gone).is_none(), "{gone} kept");
    }
    assert!(find("pending").is_some(), "a pending event was pruned");
    assert!(find("late").is_some(), "a recent delivery was pruned");
    // Out of the window, a pruned messageId is new again.
    let mut again = event("web", "delivered", "u", &["d"]);
    again.dedupe_since_ms = Some(before);
    again.received_at_ms = before + 1;
    stored_id(&b.run(s.append(vec![again])).unwrap()[0]);
    assert!(b.run(s.size_bytes()).unwrap() > 0);
}

fn the_store_is_healthy_and_probes(b: &Backend) {
    let s = b.store.as_ref();
    assert_eq!(s.health(), StoreHealth::Writable);
    b.run(s.probe()).unwrap();
    assert_eq!(s.health(), StoreHealth::Writable);
}

fn a_full_sqlite_store_says_so_and_recovers(b: &Backend) {
    let s = b.store.as_ref();
    b.run(s.set_size_limit(Some(64 * 1024))).unwrap();
    let big: Vec<NewEvent> = (0..200)
        .map(|i| {
            let mut e = event("web", &format!("big{i}"), "u", &["d"]);
            e.body = "x".repeat(2_000);
            e
        })
        .collect();
    let full = b.run(s.append(big));
    assert!(matches!(full, Err(StoreError::Full)), "{full:?}");
    assert_eq!(s.health(), StoreHealth::Full);
    assert!(b.run(s.probe()).is_err());
    b.run(s.set_size_limit(None)).unwrap();
    b.run(s.probe()).unwrap();
    assert_eq!(s.health(), StoreHealth::Writable);
}

fn a_newer_schema_is_refused(b: &Backend) {
    match b.config.backend {
        StorageBackend::Sqlite => {
            let conn = rusqlite::Connection::open(&b.config.path).unwrap();
            conn.pragma_update(None, "user_version", 99).unwrap();
        }
        StorageBackend::Postgres => {
            let url = b.config.url.as_ref().unwrap().expose().to_string();
            crate::common::postgres::run(async move {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(connection);
                client
                    .execute("INSERT INTO webhookd_schema (version) VALUES (99)", &[])
                    .await
                    .unwrap();
            });
        }
    }
    let refused = b.reopen_beside().err().expect("a newer schema is refused");
    assert!(
        matches!(refused, StoreError::SchemaTooNew { found: 99, .. }),
        "{refused}"
    );
    assert!(refused
        .to_string()
        .contains("newer than this webhookd knows"));
}

/// Each case, run on each backend.
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $case() { super::$case(&super::Backend::sqlite().unwrap()) })*
        }
        mod postgres {
            $(#[test] fn $case() {
                if let Some(backend) = super::Backend::postgres() { super::$case(&backend) }
            })*
        }
    };
}

contract!(
    append_dedupes_within_the_window,
    many_random_ids_dedupe_exactly,
    claims_hold_under_a_live_lease_and_lapse,
    leases_spread_and_pass_on,
    attempts_are_recorded_under_the_claim_only,
    outcomes_recorded_together_are_each_fenced,
    connection_failures_alone_give_stats,
    attempts_of_the_last_hour_are_counted,
    regulations_remove_their_users_once,
    a_users_events_and_recent_regulations_are_listed,
    pauses_are_kept,
    controls_are_kept_and_changed,
    pruning_removes_finished_work_only,
    the_store_is_healthy_and_probes,
    a_newer_schema_is_refused,
);

/// The size cap is SQLite's (a PostgreSQL server's disk is its own).
#[test]
fn a_full_store_says_so_and_recovers_on_sqlite() {
    a_full_sqlite_store_says_so_and_recovers(&Backend::sqlite().unwrap());
}

/// On SQLite, outcomes handed in while the writer is busy share its write jobs (a job, a
/// savepoint and a message each cost the writer more than the record itself).
#[test]
fn outcomes_handed_in_together_share_write_jobs_on_sqlite() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let config = StorageConfig {
        path: dir.path().join("contract.db"),
        ..StorageConfig::default()
    };
    let jobs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&jobs);
    let runtime = actix_rt::System::new();
    let store = webhookd::store::SqliteStore::open_observed(
        &config.path,
        None,
        Box::new(move |_, n| {
            counted.fetch_add(n, Ordering::SeqCst);
        }),
    )
    .unwrap();
    let b = Backend {
        store: Arc::new(store),
        runtime,
        config,
        _dir: Some(dir),
        database: None,
    };
    let s = b.store.as_ref();
    let events = (0..300)
        .map(|n| event("web", &format!("j{n}"), "u", &["d"]))
        .collect();
    b.run(s.append(events)).unwrap();
    let lease = beat(&b, s, "i1", &[key("web", "d")], T0)[0].clone();
    let due = b.run(s.claim_due(claim(&lease, "a", T0, 300))).unwrap().due;
    let before = jobs.load(Ordering::SeqCst);
    let recorded: Vec<_> = due
        .iter()
        .map(|d| {
            s.record_attempt(outcome(
                d.delivery_id,
                "a",
                T0 + 1,
                DeliveryUpdate::Delivered,
            ))
        })
        .collect();
    for answer in b.run(futures_util::future::join_all(recorded)) {
        answer.unwrap();
    }
    let used = jobs.load(Ordering::SeqCst) - before;
    assert!(used < 150, "300 outcomes took {used} write jobs");
}

#[test]
fn a_second_process_cannot_open_a_sqlite_store() {
    let b = Backend::sqlite().unwrap();
    let Err(second) = b.reopen() else {
        panic!("opened twice")
    };
    assert!(
        second
            .to_string()
            .contains("another webhookd is running on this database"),
        "{second}"
    );
}

/// A PostgreSQL store is open only once it listens: a cancellation another instance sends
/// right after is heard (an instance deaf to it would send what a regulation purged).
#[test]
fn a_postgres_store_hears_cancellations_from_the_moment_it_is_open() {
    use webhookd::store::{ClusterSignal, PurgedDelivery};
    if !postgres_available() {
        return;
    }
    let b = Backend::postgres().unwrap();
    // Connected before the store opens, so the cancellation leaves at once.
    let other = b.run(b.database.as_ref().unwrap().client());
    for round in 0..5 {
        let store = b.reopen_beside().unwrap();
        let cancel = ClusterSignal::Cancel(vec![PurgedDelivery {
            source: "web".into(),
            destination: "d".into(),
            delivery_id: round,
        }]);
        let payload = serde_json::json!({"origin": "another instance", "signal": cancel});
        b.run(other.execute("SELECT pg_notify('webhookd', $1)", &[&payload.to_string()]))
            .unwrap();
        let mut signals = store.take_signals().expect("a PostgreSQL store signals");
        let heard = b.run(async {
            actix_rt::time::timeout(std::time::Duration::from_secs(10), signals.recv()).await
        });
        assert_eq!(heard.ok().flatten(), Some(cancel), "round {round}");
    }
}

/// A PostgreSQL store whose listener is cut off says, once it listens again, that signals
/// may have been missed, and hears them again.
#[test]
fn a_postgres_store_says_when_it_may_have_missed_signals() {
    use webhookd::store::ClusterSignal;
    if !postgres_available() {
        return;
    }
    let b = Backend::postgres().unwrap();
    let mut signals = b.store.take_signals().expect("a PostgreSQL store signals");
    let other = b.run(b.database.as_ref().unwrap().client());
    let cut = b
        .run(other.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
            &[],
        ))
        .unwrap();
    assert_eq!(cut, 1, "one listener");
    let next = |signals: &mut tokio::sync::mpsc::Receiver<ClusterSignal>| {
        b.run(async {
            actix_rt::time::timeout(std::time::Duration::from_secs(10), signals.recv())
                .await
                .ok()
                .flatten()
        })
    };
    assert_eq!(next(&mut signals), Some(ClusterSignal::Missed));
    let work = ClusterSignal::Work(vec![key("web", "d")]);
    let payload = serde_json::json!({"origin": "another instance", "signal": work});
    b.run(other.execute("SELECT pg_notify('webhookd', $1)", &[&payload.to_string()]))
        .unwrap();
    assert_eq!(next(&mut signals), Some(work));
}
