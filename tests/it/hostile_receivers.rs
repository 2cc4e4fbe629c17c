//! Hostile receivers: an endless body, headers dripped a byte at a time, invalid HTTP, a
//! redirect loop, a TLS server that never answers the handshake. Each costs its
//! destination retries, never more than bounded memory, file descriptors and time, and
//! never delays a healthy destination beside it. (Refused connections by the thousand:
//! `failing_receivers`.)

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::receiver::Receiver;
use crate::common::{wait_until, Webhookd, WRITE_KEY};

const WAIT: Duration = Duration::from_secs(60);

/// A TCP server that hands each connection to `behave` on a thread of its own, until
/// dropped.
struct RawServer {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
}

impl RawServer {
    fn start(behave: fn(TcpStream, &AtomicBool)) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        let stopping = Arc::clone(&stopping);
                        std::thread::spawn(move || behave(stream, &stopping));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        RawServer { addr, stop }
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}/hook", self.addr)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads the request head (and whatever body came with it).
fn read_request(stream: &mut TcpStream) {
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 65536];
    let _ = stream.read(&mut buf);
}

fn endless_body(mut stream: TcpStream, stop: &AtomicBool) {
    read_request(&mut stream);
    let _ = stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let chunk = format!("{:x}\r\n{}\r\n", 8192, "z".repeat(8192));
    // Until the client hangs up (or the test ends).
    while !stop.load(Ordering::Relaxed) && stream.write_all(chunk.as_bytes()).is_ok() {}
}

fn dripped_headers(mut stream: TcpStream, stop: &AtomicBool) {
    read_request(&mut stream);
    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" {
        if stop.load(Ordering::Relaxed) || stream.write_all(&[*byte]).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn invalid_http(mut stream: TcpStream, _: &AtomicBool) {
    read_request(&mut stream);
    let _ = stream.write_all(b"this is not HTTP at all\r\n\r\n");
}

fn silent(mut stream: TcpStream, stop: &AtomicBool) {
    // Accepts the connection (a TLS ClientHello arrives) and never answers.
    read_request(&mut stream);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn redirect_to_self(mut stream: TcpStream, _: &AtomicBool) {
    read_request(&mut stream);
    let addr = stream.local_addr().unwrap();
    let reply =
        format!("HTTP/1.1 302 Found\r\nLocation: http://{addr}/hook\r\nContent-Length: 0\r\n\r\n");
    let _ = stream.write_all(reply.as_bytes());
}

fn config(destinations: &[(&str, String)]) -> String {
    let mut text = format!(
        "[delivery]\ntimeout_ms = 500\nbackoff_initial_ms = 50\nbackoff_max_ms = 200\nretry_window_s = 2\n\
         [[sources]]\nname = \"web\"\nwrite_key = \"{WRITE_KEY}\"\n"
    );
    for (name, url) in destinations {
        text.push_str(&format!(
            "[[sources.destinations]]\nname = \"{name}\"\nurls = [{url:?}]\n"
        ));
    }
    text
}

#[test]
fn hostile_receivers_cost_retries_not_resources_nor_other_destinations() {
    let servers = [
        ("endless", RawServer::start(endless_body), "http"),
        ("dripping", RawServer::start(dripped_headers), "http"),
        ("garbage", RawServer::start(invalid_http), "http"),
        ("redirecting", RawServer::start(redirect_to_self), "http"),
        ("stalled_tls", RawServer::start(silent), "https"),
    ];
    let healthy = Receiver::ok();
    let mut destinations: Vec<(&str, String)> = servers
        .iter()
        .map(|(name, s, scheme)| (*name, s.url(scheme)))
        .collect();
    destinations.push(("healthy", healthy.url("/hook")));
    let service = Webhookd::start(&config(&destinations));
    let fds_at_start = service.open_fds();

    service.send_batches(200, "h");
    // The healthy destination gets everything while the others misbehave.
    assert!(
        healthy.wait_for(200, WAIT),
        "healthy got {}",
        healthy.count()
    );
    let store = service.store();
    let of = |name: &str| {
        store
            .deliveries("web", "h-0")
            .into_iter()
            .find(|d| d.destination == name)
            .unwrap()
    };

    // An endless body: the response is a success, and 1 KB of it is kept.
    assert!(wait_until(WAIT, || of("endless").state != "pending"));
    let endless = of("endless");
    assert_eq!(endless.state, "delivered", "{endless:?}");
    // The last attempt is the success (an earlier one may have failed on a loaded machine).
    let success = endless.attempts.last().unwrap();
    assert_eq!(success.status, Some(200), "{endless:?}");
    assert_eq!(
        success.response_body.as_ref().map(String::len),
        Some(1024),
        "{endless:?}"
    );

    // The others fail, each for its own reason, and end as dead letters within the window.
    assert!(wait_until(WAIT, || store.pending("web", "garbage") == 0
        && store.pending("web", "dripping") == 0
        && store.pending("web", "stalled_tls") == 0
        && store.pending("web", "redirecting") == 0));
    // Any request may also time out on a loaded machine (a receiver's thread not run
    // within 500 ms), and a delivery may get a single attempt in its 2 s window, so each
    // reason is looked for among the attempts of the first twenty events' deliveries, and
    // nothing else than it or a timeout may be found there.
    let mut errors: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for n in 0..20 {
        for d in store.deliveries("web", &format!("h-{n}")) {
            if d.destination != "healthy" && d.destination != "endless" {
                let found = d.attempts.iter().filter_map(|a| a.error.clone());
                errors
                    .entry(d.destination.clone())
                    .or_default()
                    .extend(found);
            }
        }
    }
    assert_eq!(errors.len(), 4, "{errors:?}");
    for (destination, errors) in &errors {
        let expected = match destination.as_str() {
            "dripping" => "timeout: no response within 500 ms",
            "garbage" => "invalid HTTP response",
            "redirecting" => "HTTP 302",
            "stalled_tls" => "timeout",
            other => panic!("unexpected destination {other}"),
        };
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "{destination}: {errors:?}"
        );
        assert!(
            errors
                .iter()
                .all(|e| e.starts_with(expected) || e.starts_with("timeout")),
            "{destination}: {errors:?}"
        );
    }
    assert_eq!(
        store
            .deliveries("web", "h-0")
            .iter()
            .filter(|d| d.state == "dead")
            .count(),
        4
    );

    // Bounded: beyond what it started with, webhookd holds at most its connection pools
    // (kept alive for reuse, at most max_in_flight per URL), and little memory.
    let fds = service.open_fds();
    assert!(
        fds < fds_at_start + 6 * 64,
        "{fds} file descriptors (from {fds_at_start})"
    );
    assert!(
        service.peak_rss_mib() < 200.0,
        "peak RSS {} MiB",
        service.peak_rss_mib()
    );
    let threads = service.threads();
    eprintln!("hostile receivers: {threads} threads, {fds} fds");
    assert!(threads < 64, "{threads} threads");
}
