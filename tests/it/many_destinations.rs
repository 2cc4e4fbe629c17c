//! 10,000 configured destinations with a few events each: delivery actors are spawned on
//! demand, cost little memory each, and stop when idle, to be spawned again when work
//! comes.

use std::time::Duration;

use serde_json::json;

use crate::common::receiver::Receiver;
use crate::common::{basic_auth, post, wait_until, Webhookd};

fn actors(service: &Webhookd) -> f64 {
    let mut text = String::new();
    let response = ureq::get(&service.url("/metrics")).call().unwrap();
    std::io::Read::read_to_string(&mut response.into_reader(), &mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("webhookd_delivery_actors "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn ten_thousand_destinations_cost_little_and_idle_actors_stop() {
    let receiver = Receiver::ok();
    let url = receiver.url("/hook");
    let (sources, per_source) = (1_000, 10);
    // Actors stay while the events arrive (so that all of them are measured), then a
    // reload makes idle ones stop within 2 s.
    let mut config = String::from("[delivery]\nidle_actor_stop_s = 600\n");
    let mut sources_toml = String::new();
    for s in 0..sources {
        sources_toml.push_str(&format!(
            "[[sources]]\nname = \"s{s}\"\nwrite_key = \"key-{s}\"\n"
        ));
        for d in 0..per_source {
            sources_toml.push_str(&format!(
                "[[sources.destinations]]\nname = \"d{d}\"\nurls = [{url:?}]\n"
            ));
        }
    }
    config.push_str(&sources_toml);
    let service = Webhookd::start(&config);
    let rss_before = service.peak_rss_mib();
    for s in 0..sources {
        let body = json!({"userId": "u", "event": "E", "messageId": format!("m-{s}")}).to_string();
        let response = post(
            &service.url("/v1/track"),
            &[("Authorization", &basic_auth(&format!("key-{s}")))],
            body.as_bytes(),
        );
        assert_eq!(response.status, 200);
    }
    let total = sources * per_source;
    assert!(
        receiver.wait_for(total, Duration::from_secs(120)),
        "{} of {total}",
        receiver.count()
    );
    let spawned = actors(&service);
    let rss_after = service.peak_rss_mib();
    // An upper bound: the growth also holds the metrics series of 10,000 destinations.
    let per_actor_kib = (rss_after - rss_before) * 1024.0 / spawned.max(1.0);
    eprintln!(
        "many destinations: {spawned} delivery actors running; peak RSS {rss_before:.0} -> {rss_after:.0} MiB, \
         at most {per_actor_kib:.0} KiB per actor (with its HTTP client)"
    );
    let threads = service.threads();
    eprintln!("many destinations: {threads} threads");
    assert!(threads < 64, "{threads} threads");
    assert_eq!(spawned, total as f64, "every destination's actor runs");
    assert!(per_actor_kib < 512.0, "{per_actor_kib:.0} KiB per actor");

    // Idle ones stop...
    service.rewrite_config(&format!(
        "[delivery]\nidle_actor_stop_s = 2\n{sources_toml}"
    ));
    service.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(60), || actors(&service) == 0.0),
        "{} actors still running; log ends:\n{}",
        actors(&service),
        service
            .log_text()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    // ...and come back when work comes.
    let body = json!({"userId": "u", "event": "E", "messageId": "again"}).to_string();
    assert_eq!(
        post(
            &service.url("/v1/track"),
            &[("Authorization", &basic_auth("key-7"))],
            body.as_bytes()
        )
        .status,
        200
    );
    assert!(receiver.wait_for(total + per_source, Duration::from_secs(30)));
}
