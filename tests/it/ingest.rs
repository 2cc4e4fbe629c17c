//! The Segment-compatible ingest API, end to end through the store.

use std::io::Write;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{basic_auth, get, one_source_config, post, wait_until, Webhookd, WRITE_KEY};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn every_endpoint_stores_its_event_type() {
    let service = Webhookd::start(&one_source_config());
    let cases = [
        (
            "identify",
            json!({"userId": "u1", "traits": {"plan": "pro"}}),
        ),
        ("track", json!({"userId": "u1", "event": "Signed Up"})),
        ("page", json!({"anonymousId": "a1", "name": "Pricing"})),
        ("screen", json!({"userId": "u1", "name": "Main"})),
        ("group", json!({"userId": "u1", "groupId": "g1"})),
        ("alias", json!({"previousId": "a1", "userId": "u1"})),
    ];
    for (kind, mut event) in cases {
        let message_id = format!("m-{kind}");
        event["messageId"] = json!(message_id);
        let response = service.post(&format!("/v1/{kind}"), &event);
        assert_eq!(response.status, 200, "{kind}: {response:?}");
        assert_eq!(response.body, json!({"success": true}));
        let stored = service.stored("web", &message_id).expect("stored");
        assert_eq!(stored.event_type, kind);
        let body: Value = serde_json::from_str(&stored.body).unwrap();
        assert_eq!(body["type"], kind);
    }
    let batch = json!({"batch": [
        {"type": "track", "userId": "u2", "event": "A", "messageId": "b-1"},
        {"type": "identify", "userId": "u2", "messageId": "b-2"},
    ]});
    let response = service.post("/v1/batch", &batch);
    assert_eq!(response.body, json!({"success": true}));
    assert_eq!(service.stored("web", "b-1").unwrap().event_type, "track");
    assert_eq!(service.stored("web", "b-2").unwrap().event_type, "identify");
    // One pending delivery per stored event for the source's one destination.
    assert_eq!(service.pending_count("web", "primary"), 8);
}

#[test]
fn both_forms_of_write_key_authenticate_and_the_key_is_never_stored() {
    let service = Webhookd::start(&one_source_config());
    let in_body =
        json!({"writeKey": WRITE_KEY, "userId": "u", "event": "E", "messageId": "k-body"});
    let response = post(
        &service.url("/v1/track"),
        &[("Content-Type", "application/json")],
        in_body.to_string().as_bytes(),
    );
    assert_eq!(response.status, 200, "{response:?}");
    let response = service.post(
        "/v1/track",
        &json!({"userId": "u", "event": "E", "messageId": "k-basic"}),
    );
    assert_eq!(response.status, 200, "{response:?}");
    for id in ["k-body", "k-basic"] {
        let body = service.stored("web", id).unwrap().body;
        assert!(!body.contains(WRITE_KEY), "{body}");
    }
    let in_batch = json!({"writeKey": WRITE_KEY, "batch": [
        {"type": "track", "userId": "u", "event": "E", "messageId": "k-batch", "writeKey": WRITE_KEY}]});
    let response = post(
        &service.url("/v1/batch"),
        &[],
        in_batch.to_string().as_bytes(),
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert!(!service
        .stored("web", "k-batch")
        .unwrap()
        .body
        .contains(WRITE_KEY));
    assert!(!service.log_text().contains(WRITE_KEY));
}

#[test]
fn missing_or_unknown_write_keys_are_401() {
    let service = Webhookd::start(&one_source_config());
    let event = json!({"userId": "u", "event": "E"}).to_string();
    let url = service.url("/v1/track");
    let none = post(&url, &[], event.as_bytes());
    assert_eq!(none.status, 401);
    assert_eq!(
        none.error(),
        "a write key is required: Basic auth or `writeKey` in the body"
    );
    let wrong = post(
        &url,
        &[("Authorization", &basic_auth("nope"))],
        event.as_bytes(),
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.error(), "unknown write key");
    let bearer = post(&url, &[("Authorization", "Bearer abc")], event.as_bytes());
    assert_eq!(bearer.status, 401);
    let wrong_in_body = json!({"writeKey": "nope", "userId": "u", "event": "E"}).to_string();
    assert_eq!(post(&url, &[], wrong_in_body.as_bytes()).status, 401);
    assert!(!service.log_text().contains("nope"));
}

#[test]
fn gzip_bodies_are_inflated_within_the_limit() {
    let service = Webhookd::start(&one_source_config());
    let auth = basic_auth(WRITE_KEY);
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
        ("Content-Encoding", "gzip"),
    ];
    let event = json!({"userId": "u", "event": "Zipped", "messageId": "gz-1"});
    let response = post(
        &service.url("/v1/track"),
        &headers,
        &gzip(event.to_string().as_bytes()),
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(service.stored_body("gz-1")["event"], "Zipped");

    // 10 MB of spaces inflates far past the 32 KB limit from a few KB of gzip.
    let mut bomb = b"{\"userId\":\"u\",\"event\":\"E\",\"x\":\"".to_vec();
    bomb.extend(std::iter::repeat_n(b' ', 10_000_000));
    bomb.extend(b"\"}");
    let small = gzip(&bomb);
    assert!(small.len() < 32_768);
    let response = post(&service.url("/v1/track"), &headers, &small);
    assert_eq!(response.status, 413);
    assert_eq!(response.error(), "body is over 32768 bytes");

    let response = post(&service.url("/v1/track"), &headers, b"not gzip at all");
    assert_eq!(response.status, 400);
    assert_eq!(response.error(), "body is not valid gzip");
}

#[test]
fn content_types_json_and_text_plain_are_accepted_others_are_415() {
    let service = Webhookd::start(&one_source_config());
    let auth = basic_auth(WRITE_KEY);
    let event = json!({"userId": "u", "event": "Beacon", "messageId": "ct-1"}).to_string();
    let url = service.url("/v1/track");
    let plain = post(
        &url,
        &[
            ("Authorization", &auth),
            ("Content-Type", "text/plain;charset=UTF-8"),
        ],
        event.as_bytes(),
    );
    assert_eq!(plain.status, 200, "{plain:?}");
    assert!(service.stored("web", "ct-1").is_some());
    let form = post(
        &url,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        event.as_bytes(),
    );
    assert_eq!(form.status, 415);
    assert_eq!(
        form.error(),
        "Content-Type must be application/json or text/plain"
    );
    let brotli = post(
        &url,
        &[("Authorization", &auth), ("Content-Encoding", "br")],
        event.as_bytes(),
    );
    assert_eq!(brotli.status, 415);
    assert_eq!(brotli.error(), "Content-Encoding must be gzip or identity");
}

#[test]
fn bad_requests_get_a_json_error_naming_the_problem() {
    let service = Webhookd::start(&one_source_config());
    let auth = basic_auth(WRITE_KEY);
    let send = |path: &str, body: &str| {
        post(
            &service.url(path),
            &[("Authorization", &auth)],
            body.as_bytes(),
        )
    };

    let malformed = send("/v1/track", "{\"userId\": ");
    assert_eq!(malformed.status, 400);
    assert!(
        malformed.error().starts_with("body is not valid JSON"),
        "{malformed:?}"
    );
    let array = send("/v1/track", "[1]");
    assert_eq!(
        (array.status, array.error()),
        (400, "body must be a JSON object")
    );

    let cases = [
        (
            "/v1/track",
            json!({"event": "E"}),
            "`userId` or `anonymousId` is required",
        ),
        (
            "/v1/track",
            json!({"userId": "u"}),
            "`event` is required for track events",
        ),
        (
            "/v1/group",
            json!({"userId": "u"}),
            "`groupId` is required for group events",
        ),
        (
            "/v1/alias",
            json!({"userId": "u"}),
            "`previousId` is required for alias events",
        ),
        (
            "/v1/alias",
            json!({"previousId": "p", "anonymousId": "a"}),
            "`userId` is required for alias events",
        ),
        (
            "/v1/page",
            json!({"userId": "u", "timestamp": "last tuesday"}),
            "`timestamp` is not an ISO 8601 date-time",
        ),
        (
            "/v1/page",
            json!({"userId": "u", "messageId": "m".repeat(101)}),
            "`messageId` has 101 characters; at most 100 are allowed",
        ),
    ];
    for (path, body, error) in cases {
        let response = send(path, &body.to_string());
        assert_eq!(response.status, 400, "{body}");
        assert_eq!(response.error(), error);
    }
    let batch_missing = send("/v1/batch", "{}");
    assert_eq!(
        (batch_missing.status, batch_missing.error()),
        (400, "`batch` is required: an array of events")
    );

    let big = json!({"userId": "u", "event": "E", "pad": "x".repeat(33_000)}).to_string();
    let too_big = send("/v1/track", &big);
    assert_eq!(
        (too_big.status, too_big.error()),
        (413, "body is over 32768 bytes")
    );

    let many: Vec<Value> = (0..2_501)
        .map(|_| json!({"type": "page", "userId": "u"}))
        .collect();
    let too_many = send("/v1/batch", &json!({"batch": many}).to_string());
    assert_eq!(too_many.status, 413);
    assert_eq!(
        too_many.error(),
        "`batch` has 2501 events; at most 2500 are allowed"
    );

    let huge_items: Vec<Value> = (0..20)
        .map(|_| json!({"type": "page", "userId": "u", "pad": "x".repeat(30_000)}))
        .collect();
    let huge_batch = send("/v1/batch", &json!({"batch": huge_items}).to_string());
    assert_eq!(
        (huge_batch.status, huge_batch.error()),
        (413, "body is over 512000 bytes")
    );

    let unknown = send("/v1/purchase", "{}");
    assert_eq!(
        (unknown.status, unknown.error()),
        (404, "no endpoint POST /v1/purchase")
    );
    // Nothing of the above was stored.
    assert_eq!(service.pending_count("web", "primary"), 0);
}

#[test]
fn a_batch_accepts_valid_items_and_reports_the_others() {
    let service = Webhookd::start(&one_source_config());
    let batch = json!({"batch": [
        {"type": "track", "userId": "u", "event": "Ok", "messageId": "p-0"},
        {"type": "track", "userId": "u", "messageId": "p-1"},
        "not an object",
        {"type": "purchase", "userId": "u", "messageId": "p-3"},
        {"type": "page", "userId": "u", "messageId": "p-4", "pad": "x".repeat(33_000)},
        {"type": "identify", "anonymousId": "a", "messageId": "p-5"},
    ]});
    let response = service.post("/v1/batch", &batch);
    assert_eq!(response.status, 200);
    assert_eq!(response.body["success"], true);
    let rejected = response.body["rejected"].as_array().unwrap();
    let summary: Vec<(u64, &str)> = rejected
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["error"].as_str().unwrap()))
        .collect();
    assert_eq!(summary[0], (1, "`event` is required for track events"));
    assert_eq!(summary[1], (2, "event must be a JSON object"));
    assert_eq!(
        summary[2],
        (
            3,
            "`type` must be one of identify, track, page, screen, group, alias"
        )
    );
    assert_eq!(summary[3].0, 4);
    assert!(summary[3].1.starts_with("event is 330"), "{}", summary[3].1);
    assert!(
        summary[3].1.ends_with("bytes; at most 32768 are allowed"),
        "{}",
        summary[3].1
    );
    assert_eq!(summary.len(), 4);
    assert!(service.stored("web", "p-0").is_some());
    assert!(service.stored("web", "p-5").is_some());
    for id in ["p-1", "p-3", "p-4"] {
        assert!(service.stored("web", id).is_none(), "{id}");
    }
}

#[test]
fn events_are_enriched_as_segment_does() {
    let service = Webhookd::start(&one_source_config());
    let before = chrono::Utc::now();
    let response = service.post(
        "/v1/track",
        &json!({"userId": "u", "event": "Skewed", "messageId": "e-1",
            "timestamp": "2024-05-01T11:59:00.000Z", "sentAt": "2024-05-01T11:59:05.000Z"}),
    );
    assert_eq!(response.status, 200);
    let after = chrono::Utc::now();
    let body = service.stored_body("e-1");
    let received =
        chrono::DateTime::parse_from_rfc3339(body["receivedAt"].as_str().unwrap()).unwrap();
    assert!(received >= before - chrono::Duration::milliseconds(1) && received <= after);
    assert_eq!(
        body["receivedAt"].as_str().unwrap().len(),
        "2024-05-01T12:00:10.000Z".len()
    );
    let timestamp =
        chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).unwrap();
    // The client's clock ran 5 s behind sending: the event happened 5 s before arrival.
    assert_eq!(received - timestamp, chrono::Duration::seconds(5));
    assert_eq!(body["originalTimestamp"], "2024-05-01T11:59:00.000Z");
    assert_eq!(body["context"]["ip"], "127.0.0.1");
    assert_eq!(body["version"], 1);

    // No messageId: one is made; no timestamp: it is receivedAt; a client's ip is kept.
    let batch = json!({"sentAt": "2024-05-01T11:59:05.000Z", "context": {"library": {"name": "x"}, "ip": "9.9.9.9"},
        "batch": [{"type": "identify", "userId": "u", "context": {"ip": "1.2.3.4"}}]});
    assert_eq!(service.post("/v1/batch", &batch).status, 200);
    let body = service.sql_text("SELECT body FROM events WHERE type = 'identify'");
    let body: Value = serde_json::from_str(&body).unwrap();
    let message_id = body["messageId"].as_str().unwrap();
    assert!(message_id.len() > 30, "{message_id}");
    assert_eq!(body["timestamp"], body["receivedAt"]);
    assert_eq!(body["sentAt"], "2024-05-01T11:59:05.000Z");
    assert_eq!(
        body["context"],
        json!({"library": {"name": "x"}, "ip": "1.2.3.4"})
    );
}

#[test]
fn a_repeated_message_id_is_acknowledged_but_stored_once_even_after_restart() {
    let two_sources = format!(
        "{}\n[[sources]]\nname = \"app\"\nwrite_key = \"WRITE_KEY_APP\"\n",
        one_source_config()
    );
    let mut service = Webhookd::start(&two_sources);
    let event = json!({"userId": "u", "event": "Once", "messageId": "dup-1"});
    for _ in 0..3 {
        assert_eq!(service.post("/v1/track", &event).status, 200);
    }
    assert_eq!(service.pending_count("web", "primary"), 1);
    service.restart();
    assert_eq!(service.post("/v1/track", &event).status, 200);
    let mut item = event.clone();
    item["type"] = json!("track");
    let batch = json!({"batch": [item.clone(), item]});
    assert_eq!(
        service.post("/v1/batch", &batch).body,
        json!({"success": true})
    );
    assert_eq!(service.pending_count("web", "primary"), 1);
    // Another source may use the same messageId.
    let response = post(
        &service.url("/v1/track"),
        &[("Authorization", &basic_auth("WRITE_KEY_APP"))],
        event.to_string().as_bytes(),
    );
    assert_eq!(response.status, 200);
    assert!(service.stored("app", "dup-1").is_some());
}

#[test]
fn dedupe_ends_with_its_window() {
    let service = Webhookd::start_with(&one_source_config(), "dedupe_window_s = 1");
    let event = json!({"userId": "u", "event": "Twice", "messageId": "win-1"});
    assert_eq!(service.post("/v1/track", &event).status, 200);
    assert_eq!(service.post("/v1/track", &event).status, 200);
    assert_eq!(service.pending_count("web", "primary"), 1);
    // Once the window has passed, the same messageId is stored again.
    let stored_again = wait_until(Duration::from_secs(10), || {
        assert_eq!(service.post("/v1/track", &event).status, 200);
        service.pending_count("web", "primary") == 2
    });
    assert!(stored_again);
}

/// Random ids as real clients send them, from several connections at once, more than
/// the store indexes at a time; every one sent again after a SIGKILL is a duplicate.
#[test]
fn random_ids_sent_again_after_a_crash_are_duplicates() {
    const SENDERS: usize = 4;
    const PER_SENDER: usize = 9_000;
    let mut service = Webhookd::start(&one_source_config());
    let ids: Vec<String> = (0..SENDERS * PER_SENDER)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let send_all = |service: &Webhookd| {
        std::thread::scope(|scope| {
            for part in ids.chunks(PER_SENDER) {
                scope.spawn(move || {
                    for batch in part.chunks(100) {
                        let items: Vec<Value> = batch
                            .iter()
                            .map(|id| json!({"type": "track", "userId": "u", "event": "E", "messageId": id}))
                            .collect();
                        let response = service.post("/v1/batch", &json!({ "batch": items }));
                        assert_eq!(response.status, 200, "{response:?}");
                    }
                });
            }
        });
    };
    send_all(&service);
    assert_eq!(service.pending_count("web", "primary"), ids.len() as u64);
    service.restart();
    send_all(&service);
    assert_eq!(service.pending_count("web", "primary"), ids.len() as u64);
    for id in [&ids[0], &ids[ids.len() / 2], &ids[ids.len() - 1]] {
        assert!(service.stored("web", id).is_some(), "{id}");
    }
}

#[test]
fn a_restart_finds_every_acknowledged_event() {
    let mut service = Webhookd::start(&one_source_config());
    for i in 0..50 {
        let event = json!({"userId": "u", "event": "Kept", "messageId": format!("r-{i}")});
        assert_eq!(service.post("/v1/track", &event).status, 200);
    }
    service.restart();
    for i in 0..50 {
        assert!(service.stored("web", &format!("r-{i}")).is_some(), "r-{i}");
    }
    assert_eq!(service.pending_count("web", "primary"), 50);
}

#[test]
fn a_source_without_destinations_acknowledges_its_events() {
    let service = Webhookd::start(&format!(
        "[[sources]]\nname = \"web\"\nwrite_key = \"{WRITE_KEY}\"\n"
    ));
    let response = service.post(
        "/v1/track",
        &json!({"userId": "u", "event": "E", "messageId": "nd-1"}),
    );
    assert_eq!(response.status, 200);
    assert!(service.stored("web", "nd-1").is_some());
    assert_eq!(service.pending_count("web", "primary"), 0);
}

#[test]
fn health_and_readiness_answer() {
    let service = Webhookd::start(&one_source_config());
    assert_eq!(get(&service.url("/healthz")).status, 200);
    assert_eq!(get(&service.url("/readyz")).status, 200);
}
