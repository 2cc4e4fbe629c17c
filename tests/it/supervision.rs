//! A delivery actor that fails is restarted by its supervisor and completes its pending
//! work from the store. Runs the service in this process, to reach the actor.

use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use webhookd::actors::router::FailDestination;
use webhookd::config::Config;

use crate::common::postgres::{postgres_available, suite_on_postgres, TestDatabase};
use crate::common::receiver::Receiver;
use crate::common::{basic_auth, post, web_to_hook, WRITE_KEY};

async fn poll(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

#[test]
fn a_failed_delivery_actor_is_restarted_and_finishes_its_work() {
    let (receiver, open) = Receiver::gated();
    let dir = tempfile::tempdir().unwrap();
    let database = suite_on_postgres().then(TestDatabase::create);
    let storage = match &database {
        Some(db) => format!("[storage]\nbackend = \"postgres\"\nurl = {:?}\n", db.url),
        None => format!(
            "[storage]\npath = {:?}\n",
            dir.path().join("webhookd.db").display().to_string()
        ),
    };
    let config = Config::from_toml(&format!(
        "{storage}[delivery]\nbackoff_initial_ms = 20\nbackoff_max_ms = 100\n{}",
        web_to_hook(&receiver)
    ))
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    actix_rt::System::new().block_on(async move {
        let (service, server) = webhookd::app::start(config, listener).await.unwrap();
        actix_rt::spawn(server);
        let url = format!("http://{}/v1/batch", service.addr);
        let items: Vec<_> = (0..20)
            .map(|i| json!({"type": "track", "userId": "u", "event": "E", "messageId": format!("sup-{i}")}))
            .collect();
        let body = json!({"batch": items}).to_string();
        // The test client blocks, so it runs off this thread's event loop.
        let response = actix_rt::task::spawn_blocking(move || {
            post(&url, &[("Authorization", &basic_auth(WRITE_KEY))], body.as_bytes())
        })
        .await
        .unwrap();
        assert_eq!(response.status, 200);
        assert!(poll(Duration::from_secs(30), || receiver.count() >= 20).await);

        let restarts = || service.metrics.actor_restarts.with_label_values(&["delivery"]).get();
        assert_eq!(restarts(), 0);
        let was_running = service
            .router
            .send(FailDestination { source: "web".into(), destination: "hook".into() })
            .await
            .unwrap();
        assert!(was_running);
        assert!(poll(Duration::from_secs(10), || restarts() == 1).await);

        // Only requests answered 200 count: those after the gate opens.
        let before = receiver.count();
        open.store(true, Ordering::SeqCst);
        let delivered = |r: &crate::common::receiver::Recorded| r.json()["messageId"].as_str().map(str::to_string);
        assert!(
            poll(Duration::from_secs(30), || {
                let ids: std::collections::HashSet<_> = receiver.requests().iter().skip(before).filter_map(delivered).collect();
                (0..20).all(|i| ids.contains(&format!("sup-{i}")))
            })
            .await
        );
        let rendered = service.metrics.render();
        assert!(rendered.contains("webhookd_actor_restarts_total{actor=\"delivery\"} 1"), "{rendered}");
    });
}

/// A claim of the failed life may still be on its way to PostgreSQL when the restart
/// releases that life's claims: the release must wait for it, or the claim commits after
/// the release and holds its deliveries until it runs out (20 s here). A lock on the
/// events table (which claims read and neither attempts' records nor the release touch)
/// holds the claim until the restart is done.
#[test]
fn a_restart_releases_the_failed_life_s_claims_after_its_last_claim_commits() {
    if !postgres_available() {
        return;
    }
    let (receiver, open) = Receiver::gated();
    let database = TestDatabase::create();
    let config = Config::from_toml(&format!(
        "[storage]\nbackend = \"postgres\"\nurl = {:?}\n[delivery]\nbackoff_initial_ms = 20\nbackoff_max_ms = 100\n{}",
        database.url,
        web_to_hook(&receiver)
    ))
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // Borrowed: the database is dropped (with a runtime of its own) after this one ends.
    let database = &database;
    actix_rt::System::new().block_on(async move {
        let (service, server) = webhookd::app::start(config, listener).await.unwrap();
        actix_rt::spawn(server);
        let url = format!("http://{}/v1/batch", service.addr);
        let items: Vec<_> = (0..20)
            .map(|i| json!({"type": "track", "userId": "u", "event": "E", "messageId": format!("held-{i}")}))
            .collect();
        let body = json!({"batch": items}).to_string();
        let response = actix_rt::task::spawn_blocking(move || {
            post(&url, &[("Authorization", &basic_auth(WRITE_KEY))], body.as_bytes())
        })
        .await
        .unwrap();
        assert_eq!(response.status, 200);
        // Failed once each: they are retried, claim after claim.
        assert!(poll(Duration::from_secs(30), || receiver.count() >= 20).await);

        let mut locker = database.client().await;
        let lock = locker.transaction().await.unwrap();
        lock.batch_execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        let watcher = database.client().await;
        let claim_waiting = || async {
            let row = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND wait_event_type = 'Lock'
                       AND query LIKE '%SET claimed_by = $7%'",
                    &[],
                )
                .await
                .unwrap();
            row.get::<_, i64>(0) > 0
        };
        let start = Instant::now();
        while !claim_waiting().await {
            assert!(start.elapsed() < Duration::from_secs(10), "no claim waited for the lock");
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }

        let restarts = || service.metrics.actor_restarts.with_label_values(&["delivery"]).get();
        let was_running = service
            .router
            .send(FailDestination { source: "web".into(), destination: "hook".into() })
            .await
            .unwrap();
        assert!(was_running);
        assert!(poll(Duration::from_secs(10), || restarts() == 1).await);
        lock.commit().await.unwrap();

        let before = receiver.count();
        open.store(true, Ordering::SeqCst);
        let delivered = |r: &crate::common::receiver::Recorded| r.json()["messageId"].as_str().map(str::to_string);
        assert!(
            poll(Duration::from_secs(15), || {
                let ids: std::collections::HashSet<_> = receiver.requests().iter().skip(before).filter_map(delivered).collect();
                (0..20).all(|i| ids.contains(&format!("held-{i}")))
            })
            .await,
            "the claim made before the restart held its deliveries"
        );
    });
}
