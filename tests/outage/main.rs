//! The PostgreSQL server itself stops under load and comes back. A test binary of its own:
//! cargo runs test binaries one after another, so no other test loses its database while
//! this one has the server down.
//!
//! While the server is down, ingest answers 503 (nothing is acknowledged that is not
//! stored) and `/readyz` 503; when it is back, everything resumes without a restart and
//! every acknowledged event is delivered.

#[path = "../it/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use common::postgres::{postgres_available, server_control, TestDatabase};
use common::receiver::Receiver;
use common::{basic_auth, get, try_post, wait_until, Webhookd, WRITE_KEY};

#[test]
fn a_postgresql_restart_under_load_loses_nothing_and_needs_no_restart() {
    if !postgres_available() {
        return;
    }
    let Some(server) = server_control() else {
        return;
    };
    let receiver = Receiver::ok();
    let database = Arc::new(TestDatabase::create());
    let service = Webhookd::start_on(Some(database), &common::web_to_hook(&receiver), "");
    let url = service.url("/v1/track");
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let (refused, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let client = {
        let (acked, refused, stop) = (Arc::clone(&acked), Arc::clone(&refused), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("outage-{n}");
                let body = json!({"userId": "u", "event": "E", "messageId": id}).to_string();
                match try_post(
                    &url,
                    &[("Authorization", &basic_auth(WRITE_KEY))],
                    body.as_bytes(),
                ) {
                    Ok(r) if r.status == 200 => acked.lock().unwrap().push(id),
                    Ok(r) => {
                        assert_eq!(r.status, 503, "{r:?}");
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("ingest must answer while the database is down: {e}"),
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    assert!(wait_until(Duration::from_secs(30), || acked
        .lock()
        .unwrap()
        .len()
        >= 50));

    server.stop();
    let down = wait_until(Duration::from_secs(30), || {
        get(&service.url("/readyz")).status == 503 && refused.load(Ordering::Relaxed) > 0
    });
    let readyz = get(&service.url("/readyz"));
    std::thread::sleep(Duration::from_secs(2));
    server.start();
    assert!(down, "not unready while the database was down: {readyz:?}");
    assert!(
        wait_until(Duration::from_secs(60), || get(&service.url("/readyz"))
            .status
            == 200),
        "not ready again:\n{}",
        service.log_text()
    );
    let before = acked.lock().unwrap().len();
    assert!(
        wait_until(Duration::from_secs(30), || acked.lock().unwrap().len()
            > before + 20),
        "ingest did not resume"
    );
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();

    let acked = acked.lock().unwrap().clone();
    let arrived = || -> std::collections::HashSet<String> {
        receiver
            .requests()
            .iter()
            .filter_map(|r| r.json()["messageId"].as_str().map(str::to_string))
            .collect()
    };
    let all = wait_until(Duration::from_secs(60), || {
        let seen = arrived();
        acked.iter().all(|id| seen.contains(id))
    });
    let seen = arrived();
    let missing = acked.iter().filter(|id| !seen.contains(*id)).count();
    eprintln!(
        "outage: {} acknowledged, {} refused with 503 while PostgreSQL was down, {missing} missing",
        acked.len(),
        refused.load(Ordering::Relaxed)
    );
    assert!(
        all,
        "{missing} acknowledged events never arrived:\n{}",
        service.log_text()
    );
}
