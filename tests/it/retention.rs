//! Retention through the real binary, at a small size (the large run is the benchmark's):
//! finished work is pruned in steps, what is pending never is, and under steady load the
//! store stops growing.

use std::net::TcpListener;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::receiver::Receiver;
use crate::common::{basic_auth, post, wait_until, Webhookd, WRITE_KEY};

const WAIT: Duration = Duration::from_secs(60);
const ROUNDS: usize = 12;
const PER_ROUND: usize = 2_000;

fn send(service: &Webhookd, write_key: &str, count: usize, prefix: &str) {
    for chunk in (0..count).collect::<Vec<_>>().chunks(100) {
        let items: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"type": "track", "userId": "u", "event": "E", "messageId": format!("{prefix}-{i}"),
                "properties": {"padding": "x".repeat(200)}}))
            .collect();
        let response = post(
            &service.url("/v1/batch"),
            &[
                ("Authorization", &basic_auth(write_key)),
                ("Content-Type", "application/json"),
            ],
            json!({ "batch": items }).to_string().as_bytes(),
        );
        assert_eq!(response.status, 200, "{response:?}");
    }
}

#[test]
fn finished_work_is_pruned_pending_work_is_kept_and_the_store_stops_growing() {
    let receiver = Receiver::ok();
    let down = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let service = Webhookd::start_with(
        &format!(
            "[delivery]\nretry_window_s = 3600\nbackoff_initial_ms = 50\nbackoff_max_ms = 1000\n\
             [retention]\ndelivered_s = 1\ndead_letter_s = 1\n\
             [[sources]]\nname = \"web\"\nwrite_key = \"{WRITE_KEY}\"\n\
             [[sources.destinations]]\nname = \"hook\"\nurls = [{:?}]\n\
             [[sources]]\nname = \"held\"\nwrite_key = \"HELD_KEY\"\n\
             [[sources.destinations]]\nname = \"down\"\nurls = [\"http://{down}/hook\"]\n",
            receiver.url("/hook")
        ),
        "dedupe_window_s = 1",
    );
    // Events whose receiver is down: pending, whatever their age.
    send(&service, "HELD_KEY", 300, "held");

    let pruned = || service.metric("webhookd_pruned_total", &["what=\"events\""]);
    let mut sizes = Vec::new();
    for round in 0..ROUNDS {
        send(&service, WRITE_KEY, PER_ROUND, &format!("r{round}"));
        let delivered = (round + 1) * PER_ROUND;
        assert!(receiver.wait_for(delivered, WAIT), "round {round}");
        // Every earlier round is pruned before the next starts.
        let before = (round * PER_ROUND) as f64;
        assert!(
            wait_until(WAIT, || pruned() >= before),
            "round {round}: {} pruned",
            pruned()
        );
        sizes.push(service.store_bytes());
    }
    eprintln!("store size by round: {sizes:?}");

    // Nothing pending was pruned: every held event is there, still pending.
    let store = service.store();
    assert_eq!(store.pending("held", "down"), 300);
    let held: Vec<String> = (0..300).map(|i| format!("held-{i}")).collect();
    assert!(store.missing("held", &held).is_empty());
    assert!(service.metric("webhookd_store_size_bytes", &[]) > 0.0);

    // Under steady load the store stops growing (SQLite reuses the pages freed; on
    // PostgreSQL that is autovacuum's, on its own schedule: the benchmark shows it).
    if service.database.is_none() {
        let settled = sizes[2..5].iter().copied().max().unwrap();
        let last = *sizes.last().unwrap();
        assert!(
            (last as f64) < settled as f64 * 1.5,
            "grew from {settled} to {last} bytes: {sizes:?}"
        );
    }
}
