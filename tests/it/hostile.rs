//! Hostile input never takes the service down, and a normal event still succeeds after.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{
    basic_auth, one_source_config, post, raw_exchange, try_post, Webhookd, WRITE_KEY,
};

fn a_normal_event_succeeds(service: &Webhookd, id: &str) {
    let response = service.post(
        "/v1/track",
        &json!({"userId": "u", "event": "Normal", "messageId": id}),
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert!(service.stored("web", id).is_some());
}

#[test]
fn deeply_nested_json_is_refused() {
    let mut service = Webhookd::start(&one_source_config());
    let auth = basic_auth(WRITE_KEY);
    let headers = [("Authorization", auth.as_str())];
    let first_error = |body: String| {
        let response = post(&service.url("/v1/batch"), &headers, body.as_bytes());
        assert_eq!(response.status, 200, "{response:?}");
        response.body["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // 100,000 levels: the item is refused on its size before anything parses it.
    let depth = 100_000;
    let arrays = format!("{{\"batch\":[{}{}]}}", "[".repeat(depth), "]".repeat(depth));
    assert_eq!(
        first_error(arrays),
        "event is 200000 bytes; at most 32768 are allowed"
    );
    // Within the size limit, the parser's depth limit refuses it.
    let objects = format!(
        "{{\"batch\":[{}1{}]}}",
        "{\"a\":".repeat(5_000),
        "}".repeat(5_000)
    );
    let error = first_error(objects);
    assert!(
        error.starts_with("event is not valid JSON: recursion limit exceeded"),
        "{error}"
    );

    let small = format!(
        "{{\"userId\":\"u\",\"event\":\"E\",\"p\":{}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let response = post(&service.url("/v1/track"), &headers, small.as_bytes());
    assert_eq!(response.status, 400, "{response:?}");
    assert!(
        response.error().contains("recursion limit exceeded"),
        "{response:?}"
    );
    assert!(service.is_running());
    a_normal_event_succeeds(&service, "after-nesting");
}

#[test]
fn invalid_utf8_is_refused() {
    let service = Webhookd::start(&one_source_config());
    let auth = basic_auth(WRITE_KEY);
    let mut body = b"{\"userId\":\"u\",\"event\":\"".to_vec();
    body.extend([0xff, 0xfe, 0xc3]);
    body.extend(b"\"}");
    let response = post(
        &service.url("/v1/track"),
        &[("Authorization", auth.as_str())],
        &body,
    );
    assert_eq!(response.status, 400);
    assert!(
        response.error().starts_with("body is not valid JSON"),
        "{response:?}"
    );
    a_normal_event_succeeds(&service, "after-utf8");
}

#[test]
fn a_ten_megabyte_body_is_cut_off() {
    let mut service = Webhookd::start(&one_source_config());
    let auth = basic_auth(WRITE_KEY);
    let mut body = b"{\"userId\":\"u\",\"event\":\"E\",\"pad\":\"".to_vec();
    body.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024));
    body.extend(b"\"}");
    // The server may answer 413 and close before the client has sent everything.
    match try_post(
        &service.url("/v1/batch"),
        &[("Authorization", auth.as_str())],
        &body,
    ) {
        Ok(response) => assert_eq!(
            (response.status, response.error()),
            (413, "body is over 512000 bytes")
        ),
        Err(e) => eprintln!("connection cut while sending: {e}"),
    }
    let head = format!(
        "POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut request = head.into_bytes();
    request.extend(&body[..100_000]);
    let answer = raw_exchange(service.addr, &request);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:.200}");
    assert!(service.is_running());
    a_normal_event_succeeds(&service, "after-10mb");
}

#[test]
fn slow_loris_connections_neither_block_others_nor_stay_open() {
    let service = Webhookd::start(&one_source_config());
    let started = Instant::now();
    // Many connections that send a few header bytes and then stall.
    let mut stalled: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(service.addr).unwrap();
            s.write_all(b"POST /v1/track HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    a_normal_event_succeeds(&service, "during-loris");
    // The server gives up on headers that do not arrive (5 s), closing the connection.
    let mut closed = 0;
    for s in &mut stalled {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = Vec::new();
        if s.read_to_end(&mut buf).is_ok() {
            closed += 1;
        }
    }
    assert_eq!(
        closed,
        stalled.len(),
        "stalled connections still open after {:?}",
        started.elapsed()
    );
    a_normal_event_succeeds(&service, "after-loris");
}

#[test]
fn a_batch_context_cannot_multiply_into_gigabytes() {
    let service = Webhookd::start(&one_source_config());
    a_normal_event_succeeds(&service, "before-amplification");
    let before = service.store_bytes();
    let items: Vec<_> = (0..2_500)
        .map(|_| json!({"type": "page", "userId": "x"}))
        .collect();
    let batch = json!({"batch": items, "context": {"pad": "x".repeat(420_000)}});
    let response = service.post("/v1/batch", &batch);
    assert_eq!(response.status, 200, "{:?}", response.status);
    let rejected = response.body["rejected"]
        .as_array()
        .expect("rejected items");
    assert_eq!(rejected.len(), 2_500, "every item is refused");
    assert!(
        rejected[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("event is over 32768 bytes once enriched"),
        "{}",
        rejected[0]
    );

    // A context under the event limit is merged, but the request as a whole cannot store
    // much more than its own size.
    let items: Vec<_> = (0..2_500)
        .map(|i| json!({"type": "page", "userId": "x", "messageId": format!("pad-{i}")}))
        .collect();
    let batch = json!({"batch": items, "context": {"pad": "y".repeat(30_000)}});
    let response = service.post("/v1/batch", &batch);
    assert_eq!(response.status, 200);
    let rejected = response.body["rejected"].as_array().unwrap();
    let accepted = 2_500 - rejected.len();
    assert!(accepted > 0 && accepted < 100, "{accepted} accepted");
    assert!(rejected
        .last()
        .unwrap()
        .to_string()
        .contains("the request would store more than"));
    let grown = service.store_bytes().saturating_sub(before);
    assert!(grown < 8 * 1024 * 1024, "the store grew by {grown} bytes");
    a_normal_event_succeeds(&service, "after-amplification");
}

/// Sends `body` to `/v1/track` on `stream` (kept alive) and reads the answer's status and body.
fn track_on(stream: &mut TcpStream, body: &str) -> (u16, String) {
    let request = format!(
        "POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        basic_auth(WRITE_KEY),
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "connection closed");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .unwrap();
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    (status, String::from_utf8(body).unwrap())
}

#[test]
fn out_of_range_timestamps_are_a_400_and_the_connection_stays_usable() {
    let service = Webhookd::start(&one_source_config());
    let mut stream = TcpStream::connect(service.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let cases = [
        (
            json!({"userId": "u", "event": "e", "timestamp": "-262000-01-01", "sentAt": "+262000-01-01"}),
            "`timestamp` is outside years 0000-9999",
        ),
        (
            json!({"userId": "u", "event": "e", "timestamp": "2024-01-01", "sentAt": "+262000-01-01"}),
            "`sentAt` is outside years 0000-9999",
        ),
        // Both in range, but the corrected time would not be.
        (
            json!({"userId": "u", "event": "e", "timestamp": "0000-01-01", "sentAt": "9999-01-01"}),
            "`timestamp` is outside years 0000-9999",
        ),
    ];
    for (event, error) in cases {
        let (status, body) = track_on(&mut stream, &event.to_string());
        assert_eq!(status, 400, "{body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"], error);
    }
    let ok = json!({"userId": "u", "event": "e", "messageId": "same-connection"});
    let (status, body) = track_on(&mut stream, &ok.to_string());
    assert_eq!(status, 200, "{body}");
    assert!(service.stored("web", "same-connection").is_some());
    assert!(!service.log_text().contains("panicked"));
}

/// A messageId is the client's text: logged escaped, it cannot start a line of its own.
#[test]
fn a_message_id_cannot_forge_a_log_line() {
    let service = Webhookd::start(&one_source_config());
    let forged = "m-1\nFORGED admin token accepted\r\u{1b}[2J";
    let response = service.post(
        "/v1/track",
        &json!({"userId": "u", "event": "E", "messageId": forged}),
    );
    assert_eq!(response.status, 200, "{response:?}");
    // The destination refuses connections: the failed attempt is logged with the id.
    assert!(service.wait_for_log(
        "m-1\\nFORGED admin token accepted\\r\\u{1b}[2J attempt 1 failed",
        Duration::from_secs(30)
    ));
    let log = service.log_text();
    assert!(!log.lines().any(|line| line.starts_with("FORGED")), "{log}");
    assert!(!log.contains('\u{1b}'), "{log}");
}
