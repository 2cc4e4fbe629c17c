//! The web console in real headless Chromium, driven by Playwright
//! (`tests/clients/console.js`): sign in, a destination's queue, a message and its
//! attempts, replaying a dead letter until it is delivered, pause and resume, a wrong
//! token, a cross-site form post, sign out. Also what a browser cannot show: the
//! console's answers to requests without a session or with a forged CSRF token.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::common::receiver::{Receiver, Reply};
use crate::common::*;

const WAIT: Duration = Duration::from_secs(20);
const CHROMIUM: &str = "/usr/bin/chromium";

fn sources(ok: &Receiver, flaky: &Receiver) -> String {
    format!(
        "[[sources]]\nname = \"web\"\nwrite_key = \"{WRITE_KEY}\"\n\
         [[sources.destinations]]\nname = \"primary\"\nurls = [{:?}]\n\
         [[sources.destinations]]\nname = \"flaky\"\nurls = [{:?}]\n",
        ok.url("/hook"),
        flaky.url("/hook")
    )
}

/// Whether Chromium and Playwright are here; under CI they must be.
fn browser_available() -> bool {
    let playwright = PathBuf::from(CLIENTS).join("node_modules/playwright-core");
    let found = node_available() && std::path::Path::new(CHROMIUM).exists() && playwright.exists();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have chromium ({CHROMIUM}) and tests/clients/node_modules/playwright-core"
        );
        eprintln!("SKIPPED: chromium or playwright-core is missing; the console was not tried in a browser");
    }
    found
}

#[test]
fn an_operator_uses_the_console_in_a_browser() {
    if !browser_available() {
        return;
    }
    let ok = Receiver::ok();
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&healthy);
    // 400 (not retried: dead at once) until the receiver is "fixed".
    let flaky = Receiver::start(move |_, _| {
        Reply::status(if flag.load(Ordering::SeqCst) {
            200
        } else {
            400
        })
    });
    let server = format!("admin_token = \"{ADMIN_TOKEN}\"");
    let service = Webhookd::start_with(&sources(&ok, &flaky), &server);
    let event =
        json!({"userId": "console-user", "event": "Console Test", "messageId": "console-msg-1"});
    assert_eq!(service.post("/v1/track", &event).status, 200);
    assert!(ok.wait_for(1, WAIT));
    let dead = wait_until(WAIT, || {
        admin("GET", &service.url("/admin/v1/dead-letters"), None).body["deadLetters"]
            .as_array()
            .is_some_and(|l| l.len() == 1)
    });
    assert!(dead, "the flaky destination dead-letters the event");
    let dead_id = admin("GET", &service.url("/admin/v1/dead-letters"), None).body["deadLetters"][0]
        ["deliveryId"]
        .as_i64()
        .unwrap();
    healthy.store(true, Ordering::SeqCst);

    // Screenshots go to docs/console when asked for (they are in the README).
    let shots = match std::env::var_os("WEBHOOKD_UPDATE_SCREENSHOTS") {
        Some(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/console"),
        None => service.dir.path().join("shots"),
    };
    let input = json!({
        "base": format!("http://{}", service.addr),
        "token": ADMIN_TOKEN,
        "messageId": "console-msg-1",
        "deadId": dead_id,
        "deadUser": "console-user",
        "source": "web",
        "destination": "flaky",
        "chromium": CHROMIUM,
        "shots": shots,
    });
    let script = format!("require({:?})", format!("{CLIENTS}/console.js"));
    let out = run_node(&script, &input.to_string());
    let checks: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(checks.len() >= 20, "every check ran: {out}");
    assert!(checks.iter().all(|c| c["ok"] == true), "{out}");
    // The replay reached the receiver, and the pause was undone.
    assert!(flaky.count() >= 2);
    assert!(shots.join("destinations.png").exists());
}

#[test]
fn console_forms_need_a_session_and_its_csrf_token() {
    let ok = Receiver::ok();
    let server = format!("admin_token = \"{ADMIN_TOKEN}\"");
    let service = Webhookd::start_with(&sources(&ok, &ok), &server);
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let pause = service.url("/console/destinations/web/primary/pause");
    let status = |r: Result<ureq::Response, ureq::Error>| match r {
        Ok(r) => (r.status(), r.header("Location").map(str::to_string)),
        Err(ureq::Error::Status(code, r)) => (code, r.header("Location").map(str::to_string)),
        Err(e) => panic!("{e}"),
    };
    // No session: sent to sign in, nothing done.
    let (code, location) = status(agent.post(&pause).send_string(""));
    assert_eq!((code, location.as_deref()), (303, Some("/console/login")));
    // A wrong token: 401, no cookie.
    let wrong = agent
        .post(&service.url("/console/login"))
        .send_form(&[("token", "wrong")]);
    let wrong = match wrong {
        Err(ureq::Error::Status(code, r)) => (code, r.header("Set-Cookie").is_none()),
        other => panic!("{other:?}"),
    };
    assert_eq!(wrong, (401, true));
    assert!(service.wait_for_log("console: a sign-in with a wrong token", WAIT));
    let failures = |via: &str| {
        service.metric(
            "webhookd_admin_auth_failures_total",
            &[&format!("via=\"{via}\"")],
        )
    };
    assert_eq!(failures("console"), 1.0);
    let wrong_bearer = ureq::get(&service.url("/admin/v1/destinations"))
        .set("Authorization", "Bearer wrong")
        .call();
    assert!(matches!(wrong_bearer, Err(ureq::Error::Status(401, _))));
    assert_eq!(failures("api"), 1.0);
    // The right token: a session cookie.
    let signed_in = agent
        .post(&service.url("/console/login"))
        .send_form(&[("token", ADMIN_TOKEN)])
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.header("Set-Cookie").unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    // With the session but a forged CSRF token: 403, nothing done.
    let (code, _) = status(
        agent
            .post(&pause)
            .set("Cookie", &session)
            .send_form(&[("csrf", "forged")]),
    );
    assert_eq!(code, 403);
    // With the session from another origin: 403.
    let page = agent
        .get(&service.url("/console/destinations"))
        .set("Cookie", &session)
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    let (code, _) = status(
        agent
            .post(&pause)
            .set("Cookie", &session)
            .set("Origin", "http://evil.example")
            .send_form(&[("csrf", &csrf)]),
    );
    assert_eq!(code, 403);
    let destinations = admin("GET", &service.url("/admin/v1/destinations"), None);
    assert_eq!(destinations.body["destinations"][0]["state"], "active");
    // Session, same origin, its token: done.
    let (code, location) = status(
        agent
            .post(&pause)
            .set("Cookie", &session)
            .set("Origin", &format!("http://{}", service.addr))
            .send_form(&[("csrf", &csrf)]),
    );
    assert_eq!(code, 303);
    assert!(location
        .unwrap()
        .starts_with("/console/destinations?notice="));
    let destinations = admin("GET", &service.url("/admin/v1/destinations"), None);
    assert_eq!(destinations.body["destinations"][0]["state"], "paused");
}

#[test]
fn without_an_admin_token_there_is_no_console() {
    let ok = Receiver::ok();
    let service = Webhookd::start(&sources(&ok, &ok));
    assert_eq!(get(&service.url("/console/login")).status, 404);
}
