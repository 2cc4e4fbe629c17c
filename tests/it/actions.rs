//! Destinations like Segment's Webhooks (Actions), end to end through the real binary:
//! triggers, mapped bodies, methods, batches (full, partial after a wait, surviving a
//! SIGKILL half filled, retried and dead-lettered event by event), and Standard Webhooks
//! signatures verified by the official `standardwebhooks` package.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::receiver::{Receiver, Reply};
use crate::common::{
    admin, node_available, run_node, standard_webhooks_installed, standard_webhooks_verify,
    Webhookd, ADMIN_TOKEN, WRITE_KEY,
};

const WAIT: Duration = Duration::from_secs(30);
const SECRET_A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SECRET_B: &str = "whsec_c2Vjb25kIHNlY3JldCBvZiB3ZWJob29rZA==";

fn source(destinations: &str) -> String {
    format!(
        "[delivery]\nbackoff_initial_ms = 50\nbackoff_max_ms = 200\n\
         [[sources]]\nname = \"web\"\nwrite_key = \"{WRITE_KEY}\"\n{destinations}"
    )
}

fn track(service: &Webhookd, id: &str, event: &str, properties: Value) {
    let body = json!({"userId": "u1", "event": event, "messageId": id, "properties": properties,
        "traits": {"email": "a@example.com"}});
    let response = service.post("/v1/track", &body);
    assert_eq!(response.status, 200, "{response:?}");
}

fn hmac_sha1_hex(secret: &str, body: &[u8]) -> String {
    webhookd::delivery::signature::sign(secret, body)
}

/// Whether Segment's documented snippet verifies each `(signed JSON, signature)`: it
/// signs `JSON.stringify` of the parsed body, in Node.
fn snippet_verifies(secret: &str, items: &[(String, String)]) -> bool {
    if !node_available() {
        return true;
    }
    let input: Vec<Value> = items
        .iter()
        .map(|(body, signature)| json!({"body": body, "signature": signature}))
        .collect();
    let script = format!(
        r#"
        const crypto = require('crypto');
        const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
        console.log(JSON.stringify(input.every(({{ body, signature }}) => {{
          const digest = crypto.createHmac('sha1', {secret:?})
            .update(Buffer.from(JSON.stringify(JSON.parse(body)), 'utf-8')).digest('hex');
          return digest === signature;
        }})));
        "#
    );
    run_node(&script, &serde_json::to_string(&input).unwrap()).trim() == "true"
}

#[test]
fn a_trigger_selects_events_and_a_mapping_shapes_the_signed_body() {
    let orders = Receiver::ok();
    let everything = Receiver::ok();
    let config = source(&format!(
        "[[sources.destinations]]\nname = \"orders\"\nurls = [{:?}]\nshared_secret = \"s3cr3t\"\n\
         method = \"PUT\"\n\
         subscribe = 'type = \"track\" and event = \"Order Completed\" and properties.total > 10'\n\
         [sources.destinations.data]\n\
         order = {{ \"@path\" = \"$.properties.order_id\" }}\n\
         email = {{ \"@template\" = \"{{{{traits.email}}}}\" }}\n\
         coupon = {{ \"@if\" = {{ exists = {{ \"@path\" = \"$.properties.coupon\" }}, then = {{ \"@path\" = \"$.properties.coupon\" }}, else = \"none\" }} }}\n\
         [[sources.destinations]]\nname = \"all\"\nurls = [{:?}]\nmethod = \"PATCH\"\n",
        orders.url("/orders"),
        everything.url("/all")
    ));
    let service = Webhookd::start(&config);
    track(
        &service,
        "o1",
        "Order Completed",
        json!({"order_id": "A-1", "total": 30, "coupon": "SPRING"}),
    );
    track(
        &service,
        "o2",
        "Order Completed",
        json!({"order_id": "A-2", "total": 5}),
    );
    track(
        &service,
        "o3",
        "Product Viewed",
        json!({"order_id": "A-3", "total": 50}),
    );
    track(
        &service,
        "o4",
        "Order Completed",
        json!({"order_id": "A-4", "total": 11}),
    );
    assert!(everything.wait_for(4, WAIT));
    assert!(orders.wait_for(2, WAIT));
    // Only the matching events, mapped, signed over exactly the bytes sent, with PUT.
    let requests = orders.requests();
    let bodies: HashSet<String> = requests
        .iter()
        .map(|r| String::from_utf8(r.body.clone()).unwrap())
        .collect();
    assert_eq!(
        bodies,
        HashSet::from([
            r#"{"order":"A-1","email":"a@example.com","coupon":"SPRING"}"#.to_string(),
            r#"{"order":"A-4","email":"a@example.com","coupon":"none"}"#.to_string(),
        ])
    );
    assert!(requests.iter().all(|r| r.method == "PUT"));
    let signed: Vec<(String, String)> = requests
        .iter()
        .map(|r| {
            let signature = r.header("x-signature").unwrap().to_string();
            assert_eq!(signature, hmac_sha1_hex("s3cr3t", &r.body));
            (String::from_utf8(r.body.clone()).unwrap(), signature)
        })
        .collect();
    assert!(snippet_verifies("s3cr3t", &signed));
    // The other destination got every event, whole, with PATCH.
    assert!(everything.requests().iter().all(|r| r.method == "PATCH"));
    assert_eq!(everything.requests()[0].json()["type"], "track");
    // Events the trigger turned away got no delivery there, and are counted.
    let store = service.store();
    assert_eq!(store.deliveries("web", "o2").len(), 1);
    let text = ureq::get(&service.url("/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        text.contains(r#"webhookd_events_filtered_total{destination="orders",reason="subscribe",source="web"} 2"#),
        "{text}"
    );
}

#[test]
fn batches_arrive_as_arrays_signed_over_their_first_element() {
    let receiver = Receiver::ok();
    let config = source(&format!(
        "[[sources.destinations]]\nname = \"batched\"\nurls = [{:?}]\nshared_secret = \"s3cr3t\"\n\
         batch_size = 5\nbatch_wait_ms = 400\n",
        receiver.url("/batch")
    ));
    let service = Webhookd::start(&config);
    let items: Vec<Value> = (0..12)
        .map(|i| json!({"type": "track", "userId": "u", "event": "E", "messageId": format!("b-{i}")}))
        .collect();
    assert_eq!(
        service.post("/v1/batch", &json!({ "batch": items })).status,
        200
    );
    // Two full batches at once; the last two after the wait, as a partial batch.
    assert!(receiver.wait_for(3, WAIT), "{}", receiver.count());
    let requests = receiver.requests();
    let sizes: Vec<usize> = requests
        .iter()
        .map(|r| r.json().as_array().expect("a JSON array").len())
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 12, "{sizes:?}");
    assert!(sizes.iter().all(|n| *n <= 5), "{sizes:?}");
    assert_eq!(sizes.iter().filter(|n| **n == 5).count(), 2, "{sizes:?}");
    let partial = requests
        .iter()
        .find(|r| r.json().as_array().unwrap().len() == 2)
        .unwrap();
    let first_full = requests.iter().map(|r| r.at).min().unwrap();
    assert!(
        partial.at.duration_since(first_full) >= Duration::from_millis(300),
        "the partial batch waited"
    );
    let mut ids = Vec::new();
    let mut signed = Vec::new();
    for r in &requests {
        let array = r.json();
        let first = serde_json::to_string(&array[0]).unwrap();
        let first = webhookd::segment::to_canonical_json(&serde_json::from_str(&first).unwrap());
        let signature = r.header("x-signature").unwrap().to_string();
        assert_eq!(signature, hmac_sha1_hex("s3cr3t", first.as_bytes()));
        signed.push((first, signature));
        ids.extend(
            array
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["messageId"].as_str().unwrap().to_string()),
        );
    }
    assert!(snippet_verifies("s3cr3t", &signed));
    ids.sort();
    let mut expected: Vec<String> = (0..12).map(|i| format!("b-{i}")).collect();
    expected.sort();
    assert_eq!(
        ids, expected,
        "each event once, oldest first within a batch"
    );
}

#[test]
fn a_half_filled_batch_survives_a_sigkill() {
    let receiver = Receiver::ok();
    let config = source(&format!(
        "[[sources.destinations]]\nname = \"batched\"\nurls = [{:?}]\n\
         batch_size = 10\nbatch_wait_ms = 3000\n",
        receiver.url("/batch")
    ));
    let mut service = Webhookd::start(&config);
    for i in 0..3 {
        track(&service, &format!("k-{i}"), "E", json!({}));
    }
    // Killed while the batch waits for more: nothing was sent yet.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(receiver.count(), 0);
    service.restart();
    assert!(receiver.wait_for(1, WAIT));
    let ids: HashSet<String> = receiver
        .requests()
        .iter()
        .flat_map(|r| {
            r.json()
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["messageId"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        ids,
        HashSet::from(["k-0".into(), "k-1".into(), "k-2".into()])
    );
}

#[test]
fn a_failing_batch_is_retried_and_each_event_shows_its_attempts() {
    // Fails twice, then answers 200.
    let receiver = Receiver::start(|n, _| Reply::status(if n < 2 { 503 } else { 200 }));
    let config = source(&format!(
        "[[sources.destinations]]\nname = \"batched\"\nurls = [{:?}]\n\
         batch_size = 3\nbatch_wait_ms = 100\n",
        receiver.url("/batch")
    ));
    let service = Webhookd::start_with(&config, &format!("admin_token = {ADMIN_TOKEN:?}"));
    let items: Vec<Value> = (0..3)
        .map(|i| json!({"type": "track", "userId": "u", "event": "E", "messageId": format!("r-{i}")}))
        .collect();
    assert_eq!(
        service.post("/v1/batch", &json!({ "batch": items })).status,
        200
    );
    assert!(receiver.wait_for(3, WAIT));
    for i in 0..3 {
        let id = format!("r-{i}");
        let mut status = Value::Null;
        let delivered = crate::common::wait_until(WAIT, || {
            status = admin(
                "GET",
                &service.url(&format!("/admin/v1/messages/{id}")),
                None,
            )
            .body;
            status["events"][0]["deliveries"][0]["state"] == "delivered"
        });
        assert!(delivered, "{status}");
        let attempts = status["events"][0]["deliveries"][0]["attempts"]
            .as_array()
            .unwrap();
        assert_eq!(attempts.len(), 3, "{id}: {status}");
        let statuses: Vec<&Value> = attempts.iter().map(|a| &a["status"]).collect();
        assert_eq!(statuses, [&json!(503), &json!(503), &json!(200)]);
    }
}

#[test]
fn standard_webhooks_signatures_verify_with_the_official_package() {
    if !standard_webhooks_installed() {
        return;
    }
    // Fails once, so that one delivery is sent twice.
    let receiver = Receiver::start(|n, _| Reply::status(if n == 0 { 500 } else { 200 }));
    let config = source(&format!(
        "[[sources.destinations]]\nname = \"standard\"\nurls = [{:?}]\nshared_secret = \"s3cr3t\"\n\
         signing_secrets = [{SECRET_A:?}, {SECRET_B:?}]\n",
        receiver.url("/std")
    ));
    let service = Webhookd::start(&config);
    track(&service, "s-1", "E", json!({"n": 1}));
    assert!(receiver.wait_for(2, WAIT));
    track(&service, "s-2", "E", json!({"n": 2}));
    assert!(receiver.wait_for(3, WAIT));
    let requests = receiver.requests();
    // Both secrets sign; a receiver that knows only one of them verifies.
    assert_eq!(
        standard_webhooks_verify(SECRET_A, &requests),
        [true, true, true]
    );
    assert_eq!(
        standard_webhooks_verify(SECRET_B, &requests),
        [true, true, true]
    );
    let wrong = "whsec_d3Jvbmcgc2VjcmV0IHdyb25nIHNlY3JldA==";
    assert_eq!(
        standard_webhooks_verify(wrong, &requests),
        [false, false, false]
    );
    // The same webhook-id on a retry; another for another delivery.
    let ids: Vec<&str> = requests
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    assert_eq!(ids[0], ids[1]);
    assert_ne!(ids[1], ids[2]);
    // X-Signature still signs, beside them.
    assert_eq!(
        requests[2].header("x-signature").unwrap(),
        hmac_sha1_hex("s3cr3t", &requests[2].body)
    );
}
