//! The Webhooks destination behaviour, against real receivers on 127.0.0.1.

use std::sync::atomic::Ordering;
use std::time::Duration;

use hmac::Mac;
use serde_json::{json, Value};

use crate::common::pki;
use crate::common::receiver::{Receiver, Reply};
use crate::common::{node_available, wait_until, Webhookd, WRITE_KEY};

const WAIT: Duration = Duration::from_secs(30);

/// A `[delivery]` section with fast retries unless `delivery` says otherwise, and one
/// source `web` with one destination.
fn config(delivery: &str, destination: &str) -> String {
    let mut section = delivery.to_string();
    for default in ["backoff_initial_ms = 50", "backoff_max_ms = 200"] {
        let key = default.split(' ').next().unwrap();
        if !delivery.contains(key) {
            section = format!("{default}\n{section}");
        }
    }
    format!(
        "[delivery]\n{section}\n\
         [[sources]]\nname = \"web\"\nwrite_key = \"{WRITE_KEY}\"\n\
         [[sources.destinations]]\nname = \"hook\"\n{destination}\n"
    )
}

fn urls(receivers: &[&Receiver]) -> String {
    let urls: Vec<String> = receivers
        .iter()
        .map(|r| format!("{:?}", r.url("/hook")))
        .collect();
    format!("urls = [{}]", urls.join(", "))
}

fn track(service: &Webhookd, message_id: &str) {
    let response = service.post(
        "/v1/track",
        &json!({"userId": "u1", "event": "E", "messageId": message_id}),
    );
    assert_eq!(response.status, 200, "{response:?}");
}

fn hmac_sha1_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[test]
fn every_event_type_arrives_with_segment_headers_and_a_valid_signature() {
    let receiver = Receiver::ok();
    let destination = format!(
        "urls = [{{ url = {:?}, headers = {{ \"X-Url\" = \"one\" }} }}]\n\
         headers = {{ \"X-Team\" = \"growth\" }}\nshared_secret = \"s3cr3t\"",
        receiver.url("/hook")
    );
    let service = Webhookd::start(&config("", &destination));
    let events = [
        (
            "identify",
            json!({"userId": "u1", "traits": {"name": "Ünïcødé ✓", "n": 1.0, "big": 12345678901234567890u64}}),
        ),
        (
            "track",
            json!({"userId": "u1", "event": "Purchased", "properties": {"revenue": 39.95, "1": "a", "b\u{2028}": "\u{1}"}}),
        ),
        (
            "page",
            json!({"anonymousId": "a1", "name": "Pricing", "properties": {"path": "/pricing"}}),
        ),
        (
            "screen",
            json!({"userId": "u1", "name": "Main", "context": {"device": {"type": "ios"}}}),
        ),
        (
            "group",
            json!({"userId": "u1", "groupId": "g1", "traits": {"employees": 329}}),
        ),
        ("alias", json!({"previousId": "a1", "userId": "u1"})),
    ];
    for (kind, mut event) in events.clone() {
        event["messageId"] = json!(format!("six-{kind}"));
        assert_eq!(service.post(&format!("/v1/{kind}"), &event).status, 200);
    }
    assert!(
        receiver.wait_for(6, WAIT),
        "got {} requests",
        receiver.count()
    );
    let requests = receiver.requests();
    let mut seen_types: Vec<String> = Vec::new();
    for request in &requests {
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("user-agent"), Some("Segment.io/1.0"));
        assert_eq!(request.header("x-team"), Some("growth"));
        assert_eq!(request.header("x-url"), Some("one"));
        let signature = request.header("x-signature").expect("signed");
        assert_eq!(signature, hmac_sha1_hex("s3cr3t", &request.body));
        let body = request.json();
        assert_eq!(body["version"], 1);
        assert!(body.get("writeKey").is_none());
        seen_types.push(body["type"].as_str().unwrap().to_string());
    }
    seen_types.sort();
    assert_eq!(
        seen_types,
        ["alias", "group", "identify", "page", "screen", "track"]
    );

    // Segment's documented snippet verifies every body, run by Node itself.
    if node_available() {
        let bodies: Vec<Value> = requests
            .iter()
            .map(|r| json!({"body": String::from_utf8(r.body.clone()).unwrap(), "signature": r.header("x-signature")}))
            .collect();
        let script = r#"
            const crypto = require('crypto');
            const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
            const results = input.map(({ body, signature }) => {
              const req = { body: JSON.parse(body), headers: { 'x-signature': signature } };
              const digest = crypto.createHmac('sha1', 's3cr3t')
                .update(Buffer.from(JSON.stringify(req.body), 'utf-8')).digest('hex');
              return req.headers['x-signature'] === digest;
            });
            console.log(JSON.stringify(results));
        "#;
        let output = crate::common::run_node(script, &serde_json::to_string(&bodies).unwrap());
        assert_eq!(output.trim(), "[true,true,true,true,true,true]");
    }
    // Each delivery is recorded as delivered, with its attempt.
    let store = service.store();
    let status = store.wait_for_state("web", "six-track", "delivered", WAIT);
    assert_eq!(status[0].attempts.len(), 1);
    assert_eq!(status[0].attempts[0].status, Some(200));
    assert_eq!(status[0].attempts[0].response_body.as_deref(), Some("ok"));
}

#[test]
fn success_on_any_url_ends_the_delivery() {
    let failing = Receiver::start(|_, _| Reply::status(500));
    let succeeding = Receiver::ok();
    let not_found = Receiver::start(|_, _| Reply::status(404));
    let service = Webhookd::start(&config("", &urls(&[&failing, &succeeding, &not_found])));
    track(&service, "any-1");
    let status = service
        .store()
        .wait_for_state("web", "any-1", "delivered", WAIT);
    assert_eq!(status[0].attempt_count, 1);
    assert_eq!(status[0].attempts.len(), 3);
    // A later event passing through shows nothing more was sent for the first.
    track(&service, "any-2");
    service
        .store()
        .wait_for_state("web", "any-2", "delivered", WAIT);
    assert_eq!(
        (failing.count(), succeeding.count(), not_found.count()),
        (2, 2, 2)
    );
}

#[test]
fn server_errors_are_retried_until_delivered() {
    let receiver = Receiver::start(|n, _| Reply::status(if n < 2 { 500 } else { 200 }));
    let service = Webhookd::start(&config("", &urls(&[&receiver])));
    track(&service, "retry-1");
    let status = service
        .store()
        .wait_for_state("web", "retry-1", "delivered", WAIT);
    let statuses: Vec<Option<u16>> = status[0].attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(500), Some(500), Some(200)]);
    assert_eq!(status[0].attempt_count, 3);
    assert_eq!(receiver.count(), 3);
}

#[test]
fn client_errors_are_not_retried() {
    let receiver = Receiver::start(|_, _| Reply::status(404));
    let redirect = Receiver::start(|_, _| {
        Reply::status(302).header("Location", "http://127.0.0.1:9/elsewhere")
    });
    let service = Webhookd::start(&config("", &urls(&[&receiver, &redirect])));
    track(&service, "nf-1");
    let status = service.store().wait_for_state("web", "nf-1", "dead", WAIT);
    assert_eq!(status[0].attempt_count, 1);
    assert!(
        status[0]
            .last_error
            .as_deref()
            .unwrap()
            .starts_with("no URL worth retrying"),
        "{status:?}"
    );
    assert_eq!((receiver.count(), redirect.count()), (1, 1));
}

#[test]
fn retry_after_is_honoured() {
    let receiver = Receiver::start(|n, _| {
        if n == 0 {
            Reply::status(429).header("Retry-After", "1")
        } else {
            Reply::status(200)
        }
    });
    // Without Retry-After the retry would come within 50 ms.
    let service = Webhookd::start(&config("backoff_max_ms = 5000", &urls(&[&receiver])));
    track(&service, "ra-1");
    service
        .store()
        .wait_for_state("web", "ra-1", "delivered", WAIT);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    let gap = requests[1].at - requests[0].at;
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
}

#[test]
fn a_receiver_slower_than_the_timeout_is_retried() {
    let receiver = Receiver::start(|n, _| {
        if n == 0 {
            Reply::status(200).after(Duration::from_secs(3))
        } else {
            Reply::status(200)
        }
    });
    let service = Webhookd::start(&config("timeout_ms = 300", &urls(&[&receiver])));
    track(&service, "slow-1");
    let status = service
        .store()
        .wait_for_state("web", "slow-1", "delivered", WAIT);
    let first = &status[0].attempts[0];
    assert_eq!(first.status, None);
    assert_eq!(
        first.error.as_deref(),
        Some("timeout: no response within 300 ms")
    );
    assert_eq!(status[0].attempts.last().unwrap().status, Some(200));
}

#[test]
fn connection_refused_is_retried_until_the_receiver_comes_up() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let destination = format!("urls = [\"http://{addr}/hook\"]");
    let service = Webhookd::start(&config("", &destination));
    track(&service, "refused-1");
    let store = service.store();
    assert!(wait_until(WAIT, || {
        let d = store.deliveries("web", "refused-1");
        d.first().is_some_and(|d| d.attempts.len() >= 2)
    }));
    let status = store.deliveries("web", "refused-1");
    assert_eq!(status[0].state, "pending");
    assert_eq!(
        status[0].attempts[0].error.as_deref(),
        Some("connection refused")
    );
    let receiver = Receiver::start_on(std::net::TcpListener::bind(addr).unwrap(), None, |_, _| {
        Reply::status(200)
    });
    store.wait_for_state("web", "refused-1", "delivered", WAIT);
    assert_eq!(receiver.count(), 1);
}

#[test]
fn a_delivery_is_dead_lettered_when_the_retry_window_ends() {
    let receiver = Receiver::start(|_, _| Reply::status(503));
    let service = Webhookd::start(&config("retry_window_s = 1", &urls(&[&receiver])));
    track(&service, "window-1");
    let status = service
        .store()
        .wait_for_state("web", "window-1", "dead", WAIT);
    let reason = status[0].last_error.as_deref().unwrap();
    assert!(
        reason.starts_with("retry window of 1 s over after"),
        "{reason}"
    );
    assert!(reason.ends_with("last error: HTTP 503"), "{reason}");
    assert!(status[0].attempt_count >= 2);
    // Every request made is recorded, and none is made after the dead letter.
    assert_eq!(receiver.count(), status[0].attempts.len());
    track(&service, "window-2");
    service
        .store()
        .wait_for_state("web", "window-2", "dead", WAIT);
    let first_again = service.store().deliveries("web", "window-1");
    assert_eq!(first_again[0].attempts.len(), status[0].attempts.len());
}

#[test]
fn a_self_signed_certificate_is_refused_before_any_request() {
    let identity = pki::self_signed();
    let receiver = Receiver::start_tls(identity.server_config, |_, _| Reply::status(200));
    let service = Webhookd::start(&config("", &urls(&[&receiver])));
    track(&service, "tls-bad");
    let status = service
        .store()
        .wait_for_state("web", "tls-bad", "dead", WAIT);
    let error = status[0].attempts[0].error.as_deref().unwrap();
    assert!(
        error.starts_with("TLS handshake failed: invalid peer certificate"),
        "{error}"
    );
    assert_eq!(status[0].attempt_count, 1, "a TLS failure is not retried");
    assert_eq!(receiver.count(), 0);
}

#[test]
fn a_private_ca_is_trusted_through_extra_root_certs() {
    let identity = pki::ca_signed();
    let receiver = Receiver::start_tls(identity.server_config, |_, _| Reply::status(200));
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, identity.ca_pem.unwrap()).unwrap();
    let delivery = format!("extra_root_certs = {:?}", ca_path.display().to_string());
    let service = Webhookd::start(&config(&delivery, &urls(&[&receiver])));
    track(&service, "tls-ca");
    service
        .store()
        .wait_for_state("web", "tls-ca", "delivered", WAIT);
    assert_eq!(receiver.count(), 1);
    assert_eq!(receiver.requests()[0].json()["messageId"], "tls-ca");
}

#[test]
fn a_hanging_destination_does_not_delay_another() {
    let hanging = Receiver::start(|_, _| Reply::status(200).after(Duration::from_secs(3600)));
    let healthy = Receiver::ok();
    let text = format!(
        "[delivery]\ntimeout_ms = 60000\nmax_in_flight = 4\n\
         [[sources]]\nname = \"web\"\nwrite_key = \"{WRITE_KEY}\"\n\
         [[sources.destinations]]\nname = \"hanging\"\n{}\n\
         [[sources.destinations]]\nname = \"healthy\"\n{}\n",
        urls(&[&hanging]),
        urls(&[&healthy])
    );
    let service = Webhookd::start(&text);
    for i in 0..40 {
        track(&service, &format!("iso-{i}"));
    }
    assert!(
        healthy.wait_for(40, WAIT),
        "healthy got {}",
        healthy.count()
    );
    // The hanging destination holds its in-flight limit, and no attempt has even ended.
    assert!(hanging.count() <= 4, "{}", hanging.count());
    let store = service.store();
    assert_eq!(store.pending("web", "hanging"), 40);
    assert!(store
        .deliveries("web", "iso-0")
        .iter()
        .any(|d| d.destination == "healthy" && d.state == "delivered"));
}

#[test]
fn sigkill_with_deliveries_pending_loses_nothing() {
    let (receiver, open) = Receiver::gated();
    let mut service = Webhookd::start(&config("backoff_max_ms = 100", &urls(&[&receiver])));
    let ids: Vec<String> = (0..100).map(|i| format!("kill-{i}")).collect();
    for chunk in ids.chunks(25) {
        let items: Vec<Value> = chunk
            .iter()
            .map(|id| json!({"type": "track", "userId": "u", "event": "E", "messageId": id}))
            .collect();
        assert_eq!(
            service.post("/v1/batch", &json!({"batch": items})).status,
            200
        );
    }
    assert!(receiver.wait_for(50, WAIT));
    service.kill();
    // Only requests answered 200 count: those after the gate opens.
    let before = receiver.count();
    open.store(true, Ordering::SeqCst);
    service.restart();
    let arrived = || {
        let bodies: std::collections::HashSet<String> = receiver
            .requests()
            .iter()
            .skip(before)
            .filter(|r| r.json().is_object())
            .map(|r| r.json()["messageId"].as_str().unwrap().to_string())
            .collect();
        bodies
    };
    assert!(
        wait_until(WAIT, || ids.iter().all(|id| arrived().contains(id))),
        "missing: {:?}",
        ids.iter()
            .filter(|id| !arrived().contains(*id))
            .collect::<Vec<_>>()
    );
    assert_eq!(service.pending_count("web", "hook"), 0);
}

#[test]
fn a_healthy_receiver_gets_each_event_exactly_once() {
    let receiver = Receiver::ok();
    let service = Webhookd::start(&config("max_in_flight = 8", &urls(&[&receiver])));
    for batch in 0..6 {
        let items: Vec<Value> = (0..50)
            .map(|i| json!({"type": "track", "userId": "u", "event": "E", "messageId": format!("once-{batch}-{i}")}))
            .collect();
        assert_eq!(
            service.post("/v1/batch", &json!({"batch": items})).status,
            200
        );
    }
    let store = service.store();
    assert!(wait_until(WAIT, || store.pending("web", "hook") == 0));
    let mut ids: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| r.json()["messageId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 300, "duplicates or losses");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 300);
}
