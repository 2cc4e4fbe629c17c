//! Segment's official Node client, pointed at webhookd, with nothing changed but the host.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

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
