//! `webhookd listen`, end to end: webhookd delivers to it, and it says whether the
//! signatures verify.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;

use crate::common::*;

const SHARED: &str = "listen-shared-secret";
const SIGNING: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WAIT: Duration = Duration::from_secs(15);

/// A `webhookd listen` child and the lines it prints.
struct Listen {
    child: Child,
    lines: mpsc::Receiver<String>,
    port: u16,
}

impl Listen {
    fn start(args: &[&str]) -> Listen {
        let mut child = Command::new(env!("CARGO_BIN_EXE_webhookd"))
            .args(["listen", "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("webhookd listen starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines.recv_timeout(WAIT).expect("listen prints its address");
        let port = first
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        Listen { child, lines, port }
    }

    /// The lines printed for the request whose body holds `needle`, to the end of its
    /// pretty-printed body.
    fn request_with(&self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let mut found = false;
        while let Ok(line) = self.lines.recv_timeout(WAIT) {
            found |= line.contains(needle);
            let end = line == "}";
            seen.push(line);
            if found && end {
                return seen;
            }
        }
        panic!("nothing with {needle:?} printed; got {seen:#?}");
    }
}

impl Drop for Listen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_to(port: u16, shared: &str, signing: &str) -> String {
    format!(
        "[[sources]]\nname = \"web\"\nwrite_key = \"{WRITE_KEY}\"\n\
         [[sources.destinations]]\nname = \"try\"\nurls = [\"http://127.0.0.1:{port}/hook\"]\n\
         shared_secret = \"{shared}\"\nsigning_secrets = [\"{signing}\"]\n"
    )
}

fn send_event(service: &Webhookd, user: &str) {
    let event = json!({"userId": user, "event": "Listen Test", "properties": {"n": 1}});
    assert_eq!(service.post("/v1/track", &event).status, 200);
}

#[test]
fn a_signed_event_is_printed_as_verified() {
    let listen = Listen::start(&["--shared-secret", SHARED, "--signing-secret", SIGNING]);
    let service = Webhookd::start(&config_to(listen.port, SHARED, SIGNING));
    send_event(&service, "listen-user-1");
    let printed = listen.request_with("listen-user-1").join("\n");
    assert!(printed.contains("POST /hook"), "{printed}");
    assert!(printed.contains("X-Signature: verified"), "{printed}");
    assert!(printed.contains("Standard Webhooks: verified"), "{printed}");
    assert!(printed.contains("\"event\": \"Listen Test\""), "{printed}");
}

#[test]
fn a_wrong_secret_is_printed_as_not_verified_and_status_is_answered() {
    let listen = Listen::start(&[
        "--shared-secret",
        "another-secret",
        "--signing-secret",
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "--status",
        "410",
    ]);
    let service = Webhookd::start(&config_to(listen.port, SHARED, SIGNING));
    send_event(&service, "listen-user-2");
    let printed = listen.request_with("listen-user-2").join("\n");
    assert!(printed.contains("→ 410"), "{printed}");
    assert!(printed.contains("X-Signature: NOT VERIFIED"), "{printed}");
    assert!(
        printed.contains("Standard Webhooks: NOT VERIFIED"),
        "{printed}"
    );
    // webhookd saw the 410 it was answered: the URL is retired.
    assert!(wait_until(WAIT, || service
        .metric("webhookd_urls_gone_total", &[])
        >= 1.0));
}
