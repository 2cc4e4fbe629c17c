//! Receivers that fail for a long time, through the real binary: a URL answering
//! `410 Gone`, a destination disabled after `disable_after_s` (across a restart, with an
//! operational webhook verified by the `standardwebhooks` package, then resumed), a
//! refused receiver with ten thousand events pending that sees only a trickle of probes
//! and then gets everything, dead letters reported once a minute, and a rate limit.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::receiver::{Receiver, Recorded, Reply};
use crate::common::{
    admin, standard_webhooks_installed, standard_webhooks_verify, wait_until, Webhookd,
    ADMIN_TOKEN, WRITE_KEY,
};

const WAIT: Duration = Duration::from_secs(30);
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// `[delivery]` with quick retries, `[notifications]` to `notifications` if given, and
/// one source `web` with `destinations`.
fn config(delivery: &str, notifications: Option<&Receiver>, destinations: &str) -> String {
    let notifications = notifications.map_or(String::new(), |r| {
        format!(
            "[notifications]\nurl = {:?}\nsigning_secrets = [{SECRET:?}]\n",
            r.url("/ops")
        )
    });
    let backoff_max = if delivery.contains("backoff_max_ms") {
        ""
    } else {
        "backoff_max_ms = 300\n"
    };
    format!(
        "[delivery]\nbackoff_initial_ms = 50\n{backoff_max}{delivery}\n{notifications}\
         [[sources]]\nname = \"web\"\nwrite_key = \"{WRITE_KEY}\"\n{destinations}"
    )
}

fn start(config: &str) -> Webhookd {
    Webhookd::start_with(config, &format!("admin_token = {ADMIN_TOKEN:?}"))
}

/// The destination `name` as `GET /admin/v1/destinations` shows it.
fn destination(service: &Webhookd, name: &str) -> Value {
    let listed = admin("GET", &service.url("/admin/v1/destinations"), None);
    assert_eq!(listed.status, 200, "{listed:?}");
    listed.body["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["destination"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no destination {name} in {listed:?}"))
}

/// The operational webhooks of type `kind` that `receiver` got.
fn notifications(receiver: &Receiver, kind: &str) -> Vec<Recorded> {
    receiver
        .requests()
        .into_iter()
        .filter(|r| r.json()["type"] == kind)
        .collect()
}

#[test]
fn a_url_answering_410_gets_one_request_and_its_sibling_keeps_receiving() {
    let gone = Receiver::start(|_, _| Reply::status(410));
    let sibling = Receiver::ok();
    let service = start(&config(
        "",
        None,
        &format!(
            "[[sources.destinations]]\nname = \"hook\"\nurls = [{:?}, {:?}]\n",
            gone.url("/gone"),
            sibling.url("/hook")
        ),
    ));
    service.send_batches(1, "first");
    assert!(sibling.wait_for(1, WAIT));
    assert!(gone.wait_for(1, WAIT));
    assert!(wait_until(WAIT, || {
        destination(&service, "hook")["goneUrls"] == json!([gone.url("/gone")])
    }));
    service.send_batches(50, "then");
    assert!(
        sibling.wait_for(51, WAIT),
        "sibling got {}",
        sibling.count()
    );
    assert_eq!(gone.count(), 1, "the gone URL was asked again");
    let shown = destination(&service, "hook");
    assert_eq!(shown["state"], "active", "{shown}");
    assert_eq!(
        service.metric("webhookd_urls_gone_total", &["destination=\"hook\""]),
        1.0
    );
    assert!(service.log_text().contains("answered 410 Gone"));

    // A reload tries it again.
    service.signal("HUP");
    assert!(service.wait_for_log("configuration reloaded", WAIT));
    assert!(wait_until(WAIT, || destination(&service, "hook")
        ["goneUrls"]
        == json!([])));
    service.send_batches(1, "after-reload");
    assert!(gone.wait_for(2, WAIT), "gone got {}", gone.count());
}

#[test]
fn a_destination_whose_every_url_is_gone_is_disabled_and_its_deliveries_wait() {
    let gone = Receiver::start(|_, _| Reply::status(410));
    let service = start(&config(
        "",
        None,
        &format!(
            "[[sources.destinations]]\nname = \"hook\"\nurls = [{:?}]\n",
            gone.url("/gone")
        ),
    ));
    service.send_batches(1, "first");
    assert!(wait_until(WAIT, || destination(&service, "hook")["state"]
        == "disabled"));
    service.send_batches(4, "then");
    let shown = destination(&service, "hook");
    assert_eq!(shown["disabledReason"], "every URL answered 410 Gone");
    // Nothing was dead-lettered for it: the five wait.
    assert_eq!(shown["deadLetters"], 0, "{shown}");
    assert_eq!(service.store().pending("web", "hook"), 5);
    assert_eq!(gone.count(), 1);
}

#[test]
fn a_destination_failing_past_disable_after_is_disabled_across_a_restart_and_resumes() {
    if !standard_webhooks_installed() {
        return;
    }
    let (failing, healthy_again) = Receiver::gated();
    let ops = Receiver::ok();
    let mut service = start(&config(
        "retry_window_s = 3600",
        Some(&ops),
        &format!(
            "[[sources.destinations]]\nname = \"hook\"\nurls = [{:?}]\ndisable_after_s = 2\n",
            failing.url("/hook")
        ),
    ));
    service.send_batches(20, "m");
    assert!(wait_until(WAIT, || destination(&service, "hook")["state"]
        == "disabled"));
    let shown = destination(&service, "hook");
    let reason = shown["disabledReason"].as_str().unwrap();
    assert!(reason.starts_with("no success for 2 s"), "{reason}");
    assert!(reason.ends_with("last error: HTTP 503"), "{reason}");
    assert!(shown["failingSince"].is_string(), "{shown}");
    // Its deliveries wait; none is dead-lettered by the disabling.
    assert_eq!(service.store().pending("web", "hook"), 20);
    assert_eq!(shown["deadLetters"], 0);
    assert_eq!(
        service.metric("webhookd_destination_disabled", &["destination=\"hook\""]),
        1.0
    );

    // The operator hears of it, signed as Standard Webhooks says.
    assert!(wait_until(WAIT, || !notifications(
        &ops,
        "destination.disabled"
    )
    .is_empty()));
    let disabled = notifications(&ops, "destination.disabled");
    assert_eq!(disabled.len(), 1);
    assert_eq!(standard_webhooks_verify(SECRET, &disabled), [true]);
    let body = disabled[0].json();
    assert_eq!(body["data"]["source"], "web");
    assert_eq!(body["data"]["destination"], "hook");
    assert_eq!(body["data"]["reason"], shown["disabledReason"]);

    // Disabled it stays, through a crash and a start.
    service.restart();
    assert_eq!(destination(&service, "hook")["state"], "disabled");
    // Its delivery actor starts (at once, or once the lease of the instance killed has
    // run out on PostgreSQL), reads that it is disabled, and sends nothing.
    assert!(service.wait_for_log("disabled (no success for 2 s", WAIT));
    let before = failing.count();
    assert!(
        !wait_until(Duration::from_secs(2), || failing.count() > before),
        "a disabled destination was sent to after a restart"
    );

    // Resumed once the receiver is back: everything arrives, and the operator hears.
    healthy_again.store(true, std::sync::atomic::Ordering::SeqCst);
    let resumed = admin(
        "POST",
        &service.url("/admin/v1/destinations/web/hook/resume"),
        None,
    );
    assert_eq!(resumed.status, 200, "{resumed:?}");
    assert!(wait_until(WAIT, || service.store().pending("web", "hook") == 0));
    let shown = destination(&service, "hook");
    assert_eq!(shown["state"], "active", "{shown}");
    assert_eq!(shown["failingSince"], Value::Null);
    assert!(wait_until(WAIT, || !notifications(
        &ops,
        "destination.recovered"
    )
    .is_empty()));
    let recovered = notifications(&ops, "destination.recovered");
    assert_eq!(standard_webhooks_verify(SECRET, &recovered), [true]);
}

#[test]
fn a_refused_receiver_with_ten_thousand_pending_sees_a_trickle_then_gets_everything() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let healthy = Receiver::ok();
    let service = start(&config(
        "retry_window_s = 3600\nbackoff_max_ms = 1000",
        None,
        &format!(
            "[[sources.destinations]]\nname = \"refusing\"\nurls = [\"http://{addr}/hook\"]\n\
             [[sources.destinations]]\nname = \"healthy\"\nurls = [{:?}]\n",
            healthy.url("/hook")
        ),
    ));
    let refused = || service.metric("webhookd_attempts_total", &["destination=\"refusing\""]);
    service.send_batches(10_000, "m");
    assert!(healthy.wait_for(10_000, Duration::from_secs(120)));
    assert!(wait_until(WAIT, || service.metric(
        "webhookd_destination_probing",
        &["destination=\"refusing\""]
    ) == 1.0));

    // Measured over five seconds of probing: a request every second or so (the probes'
    // spacing grows to backoff_max_ms), where full concurrency would make thousands.
    let (start, at_start) = (Instant::now(), refused());
    std::thread::sleep(Duration::from_secs(5));
    let per_second = (refused() - at_start) / start.elapsed().as_secs_f64();
    assert!(
        per_second <= 5.0,
        "{per_second} connection attempts per second"
    );
    assert!(refused() < 500.0, "{} attempts in all", refused());
    assert_eq!(service.store().pending("web", "refusing"), 10_000);

    // Back: the next probe succeeds, and everything follows at full concurrency.
    let receiver = Receiver::start_on(TcpListener::bind(addr).unwrap(), None, |_, _| {
        Reply::status(200)
    });
    assert!(
        receiver.wait_for(10_000, Duration::from_secs(120)),
        "got {} of 10000",
        receiver.count()
    );
    assert!(wait_until(WAIT, || service
        .store()
        .pending("web", "refusing")
        == 0));
    assert_eq!(
        service.metric(
            "webhookd_destination_probing",
            &["destination=\"refusing\""]
        ),
        0.0
    );
    assert!(service.open_fds() < 256, "{} fds", service.open_fds());
}

#[test]
fn dead_letters_are_reported_once_a_minute_per_destination() {
    if !standard_webhooks_installed() {
        return;
    }
    let refusing = Receiver::start(|_, _| Reply::status(400));
    let ops = Receiver::ok();
    let service = start(&config(
        "",
        Some(&ops),
        &format!(
            "[[sources.destinations]]\nname = \"hook\"\nurls = [{:?}]\n",
            refusing.url("/hook")
        ),
    ));
    service.send_batches(3, "first");
    assert!(wait_until(WAIT, || destination(&service, "hook")
        ["deadLetters"]
        == 3));
    service.send_batches(2, "second");
    assert!(wait_until(WAIT, || destination(&service, "hook")
        ["deadLetters"]
        == 5));
    // One notification for the minute, counting all five.
    assert!(wait_until(Duration::from_secs(90), || !notifications(
        &ops,
        "delivery.dead"
    )
    .is_empty()));
    let dead = notifications(&ops, "delivery.dead");
    assert_eq!(dead.len(), 1);
    assert_eq!(standard_webhooks_verify(SECRET, &dead), [true]);
    let data = &dead[0].json()["data"];
    assert_eq!(data["count"], 5, "{data}");
    assert_eq!(data["destination"], "hook");
    assert!(data["messageIds"]
        .as_array()
        .unwrap()
        .contains(&json!("first-0")));
    assert!(data["lastReason"].as_str().unwrap().contains("HTTP 400"));
    assert_eq!(
        service.metric("webhookd_notifications_total", &["type=\"delivery.dead\""]),
        1.0
    );
}

#[test]
fn a_rate_limit_of_50_per_second_holds_over_ten_seconds() {
    let receiver = Receiver::ok();
    let service = start(&config(
        "",
        None,
        &format!(
            "[[sources.destinations]]\nname = \"hook\"\nurls = [{:?}]\nrate_limit_per_s = 50\n",
            receiver.url("/hook")
        ),
    ));
    service.send_batches(700, "m");
    assert!(receiver.wait_for(700, WAIT), "got {}", receiver.count());
    let times: Vec<Instant> = receiver.requests().iter().map(|r| r.at).collect();
    // In any ten seconds: 500 at most, give or take 10 %; and the limit is what slows
    // it, not something else (the busiest ten seconds are well over half full even when
    // the rest of the suite shares the two CPUs).
    let window = Duration::from_secs(10);
    let most = (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| t.duration_since(times[i]) < window)
                .count()
        })
        .max()
        .unwrap();
    assert!(most <= 550, "{most} requests in ten seconds");
    assert!(most >= 350, "only {most} requests in ten seconds");
    // The last outcomes commit just after their requests arrive.
    assert!(wait_until(WAIT, || service.store().pending("web", "hook") == 0));
}
