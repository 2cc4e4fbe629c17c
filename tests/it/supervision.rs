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

/// The service's config: `storage` (a TOML section), fast retries, `web` to the receiver.
fn fast_retries(storage: &str, receiver: &Receiver) -> Config {
    Config::from_toml(&format!(
        "{storage}[delivery]\nbackoff_initial_ms = 20\nbackoff_max_ms = 100\n{}",
        web_to_hook(receiver)
    ))
    .unwrap()
}

fn delivery_restarts(service: &webhookd::app::Service) -> u64 {
    service
        .metrics
        .actor_restarts
        .with_label_values(&["delivery"])
        .get()
}

/// Makes the `web`/`hook` delivery actor fail, and waits for its supervisor to restart it
/// (the first restart).
async fn fail_and_await_restart(service: &webhookd::app::Service) {
    let was_running = service
        .router
        .send(FailDestination {
            source: "web".into(),
            destination: "hook".into(),
        })
        .await
        .unwrap();
    assert!(was_running);
    assert!(poll(Duration::from_secs(10), || delivery_restarts(service) == 1).await);
}

/// Posts one batch of 20 events, `{prefix}-0` to `{prefix}-19`, to the service at `addr`.
async fn post_twenty(addr: std::net::SocketAddr, prefix: &str) {
    let url = format!("http://{addr}/v1/batch");
    let items: Vec<_> = (0..20)
        .map(|i| json!({"type": "track", "userId": "u", "event": "E", "messageId": format!("{prefix}-{i}")}))
        .collect();
    let body = json!({"batch": items}).to_string();
    // The test client blocks, so it runs off this thread's event loop.
    let response = actix_rt::task::spawn_blocking(move || {
        post(
            &url,
            &[("Authorization", &basic_auth(WRITE_KEY))],
            body.as_bytes(),
        )
    })
    .await
    .unwrap();
    assert_eq!(response.status, 200);
}

/// Whether each of the 20 events of `prefix` arrived among the requests after the first
/// `before`, within `limit`.
async fn all_twenty_arrive(
    receiver: &Receiver,
    before: usize,
    prefix: &str,
    limit: Duration,
) -> bool {
    let delivered =
        |r: &crate::common::receiver::Recorded| r.json()["messageId"].as_str().map(str::to_string);
    poll(limit, || {
        let ids: std::collections::HashSet<_> = receiver
            .requests()
            .iter()
            .skip(before)
            .filter_map(delivered)
            .collect();
        (0..20).all(|i| ids.contains(&format!("{prefix}-{i}")))
    })
    .await
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
    let config = fast_retries(&storage, &receiver);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    actix_rt::System::new().block_on(async move {
        let (service, server) = webhookd::app::start(config, listener).await.unwrap();
        actix_rt::spawn(server);
        post_twenty(service.addr, "sup").await;
        assert!(poll(Duration::from_secs(30), || receiver.count() >= 20).await);

        assert_eq!(delivery_restarts(&service), 0);
        fail_and_await_restart(&service).await;

        // Only requests answered 200 count: those after the gate opens.
        let before = receiver.count();
        open.store(true, Ordering::SeqCst);
        assert!(all_twenty_arrive(&receiver, before, "sup", Duration::from_secs(30)).await);
        let rendered = service.metrics.render();
        assert!(
            rendered.contains("webhookd_actor_restarts_total{actor=\"delivery\"} 1"),
            "{rendered}"
        );
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
    let config = fast_retries(
        &format!(
            "[storage]\nbackend = \"postgres\"\nurl = {:?}\n",
            database.url
        ),
        &receiver,
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // Borrowed: the database is dropped (with a runtime of its own) after this one ends.
    let database = &database;
    actix_rt::System::new().block_on(async move {
        let (service, server) = webhookd::app::start(config, listener).await.unwrap();
        actix_rt::spawn(server);
        post_twenty(service.addr, "held").await;
        // Failed once each: they are retried, claim after claim.
        assert!(poll(Duration::from_secs(30), || receiver.count() >= 20).await);

        let lock = database.lock_table("events").await;
        lock.until_a_claim_waits().await;

        fail_and_await_restart(&service).await;
        lock.release().await;

        let before = receiver.count();
        open.store(true, Ordering::SeqCst);
        assert!(
            all_twenty_arrive(&receiver, before, "held", Duration::from_secs(15)).await,
            "the claim made before the restart held its deliveries"
        );
    });
}
