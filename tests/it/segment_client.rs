//! Segment's official Node client, pointed at webhookd, with nothing changed but the host.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::receiver::Receiver;
use crate::common::{one_source_config, Webhookd, WRITE_KEY};

const CLIENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");

/// The client library is installed by `npm ci` in tests/clients (`.ci/run` does it).
/// Without it the test says so and passes, except under CI, where it must run.
fn client_installed() -> bool {
    let installed = Path::new(CLIENTS)
        .join("node_modules/@segment/analytics-node")
        .is_dir();
    if !installed {
        assert!(
            std::env::var_os("CI").is_none(),
            "run `npm ci` in tests/clients: CI must run the Segment client test"
        );
        eprintln!("SKIPPED: @segment/analytics-node is not installed (npm ci in tests/clients)");
    }
    installed
}

#[test]
fn analytics_node_events_are_stored_as_sent() {
    if !client_installed() {
        return;
    }
    let service = Webhookd::start(&one_source_config());
    let out = Command::new("node")
        .current_dir(CLIENTS)
        .args(["analytics-node.mjs", &service.url(""), WRITE_KEY, "run1"])
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "client failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        service.log_text()
    );
    let sent: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(sent.len(), 6);
    for call in sent {
        let message_id = call["messageId"].as_str().unwrap();
        let stored = service
            .stored("web", message_id)
            .unwrap_or_else(|| panic!("{message_id} not stored"));
        let body: Value = serde_json::from_str(&stored.body).unwrap();
        assert_eq!(body["type"], call["type"]);
        // Every field the app passed arrives with the same meaning.
        for (key, value) in call["params"].as_object().unwrap() {
            if key == "properties" {
                let sent = value.as_object().unwrap();
                for (k, v) in sent {
                    assert_eq!(&body["properties"][k], v, "{message_id}.properties.{k}");
                }
            } else {
                assert_eq!(&body[key], value, "{message_id}.{key}");
            }
        }
        assert_eq!(
            body["context"]["library"]["name"],
            "@segment/analytics-node"
        );
        assert!(body["receivedAt"].is_string());
        assert!(
            body["originalTimestamp"].is_string(),
            "sentAt was given, so the timestamp moves"
        );
        assert!(body.get("writeKey").is_none());
    }
}

#[test]
fn integrations_flags_from_the_node_client_choose_destinations_as_segment_does() {
    if !client_installed() {
        return;
    }
    let webhooks = Receiver::ok();
    let orders = Receiver::ok();
    let config = format!(
        "[[sources]]\nname = \"web\"\nwrite_key = \"{WRITE_KEY}\"\n\
         [[sources.destinations]]\nname = \"primary\"\nurls = [{:?}]\n\
         [[sources.destinations]]\nname = \"orders\"\nintegration_name = \"Orders Hook\"\nurls = [{:?}]\n",
        webhooks.url("/hook"),
        orders.url("/hook")
    );
    let service = Webhookd::start(&config);
    let out = Command::new("node")
        .current_dir(CLIENTS)
        .args([
            "analytics-node-integrations.mjs",
            &service.url(""),
            WRITE_KEY,
            "flags",
        ])
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // (case, delivered to `primary` (named Webhooks), delivered to `orders`)
    let expected = [
        ("none", true, true),
        ("all-off", false, false),
        ("webhooks-off", false, true),
        ("all-off-webhooks-on", true, false),
        ("all-off-orders-options", false, true),
        ("wrong-case", true, true),
        ("all-on-orders-off", true, false),
    ];
    let store = service.store();
    for (case, to_webhooks, to_orders) in expected {
        let id = format!("flags-{case}");
        let event = store
            .find("web", &id)
            .unwrap_or_else(|| panic!("{id} not stored"));
        let body: Value = serde_json::from_str(&event.body).unwrap();
        assert_eq!(body["event"], "Flagged");
        let destinations: Vec<String> = store
            .deliveries("web", &id)
            .into_iter()
            .map(|d| d.destination)
            .collect();
        assert_eq!(
            destinations.contains(&"primary".to_string()),
            to_webhooks,
            "{case}: {destinations:?}"
        );
        assert_eq!(
            destinations.contains(&"orders".to_string()),
            to_orders,
            "{case}: {destinations:?}"
        );
    }
    // What was chosen arrives; nothing else does.
    assert!(webhooks.wait_for(4, Duration::from_secs(30)));
    assert!(orders.wait_for(4, Duration::from_secs(30)));
    let arrived = |r: &Receiver| {
        let mut ids: Vec<String> = r
            .requests()
            .iter()
            .map(|q| q.json()["messageId"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(
        arrived(&webhooks),
        [
            "flags-all-off-webhooks-on",
            "flags-all-on-orders-off",
            "flags-none",
            "flags-wrong-case"
        ]
    );
    assert_eq!(
        arrived(&orders),
        [
            "flags-all-off-orders-options",
            "flags-none",
            "flags-webhooks-off",
            "flags-wrong-case"
        ]
    );
}
