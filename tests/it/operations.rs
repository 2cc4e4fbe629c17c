//! Operating webhookd: metrics, message status, dead letters and replay, pause and
//! resume, graceful shutdown, live reload.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::receiver::{Receiver, Reply};
use crate::common::{
    admin, basic_auth, get, try_post, wait_until, web_to_hook, Webhookd, ADMIN_TOKEN, WRITE_KEY,
};

const WAIT: Duration = Duration::from_secs(30);

fn admin_keys() -> String {
    format!("admin_token = {ADMIN_TOKEN:?}")
}

fn one_destination(delivery: &str, receiver: &Receiver) -> String {
    format!("[delivery]\n{delivery}\n{}", web_to_hook(receiver))
}

fn track(service: &Webhookd, message_id: &str) {
    let response = service.post(
        "/v1/track",
        &json!({"userId": "u", "event": "E", "messageId": message_id}),
    );
    assert_eq!(response.status, 200, "{response:?}");
}

fn scrape(service: &Webhookd) -> prometheus_parse::Scrape {
    let text = ureq::get(&service.url("/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The value of the sample `metric` whose labels include all of `labels`.
fn sample(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

#[test]
fn metrics_move_as_events_are_received_rejected_and_delivered() {
    let (receiver, open) = Receiver::gated();
    let service = Webhookd::start_with(
        &one_destination("backoff_initial_ms = 50\nbackoff_max_ms = 100", &receiver),
        &admin_keys(),
    );
    let before = scrape(&service);
    assert_eq!(
        sample(
            &before,
            "webhookd_events_received_total",
            &[("source", "web"), ("type", "track")]
        ),
        None
    );

    for i in 0..5 {
        track(&service, &format!("m-{i}"));
    }
    assert_eq!(
        service.post("/v1/track", &json!({"userId": "u"})).status,
        400
    );
    assert!(receiver.wait_for(5, WAIT));
    let during = scrape(&service);
    assert_eq!(
        sample(
            &during,
            "webhookd_events_received_total",
            &[("source", "web"), ("type", "track")]
        ),
        Some(5.0)
    );
    assert_eq!(
        sample(
            &during,
            "webhookd_events_rejected_total",
            &[("source", "web"), ("reason", "invalid")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &during,
            "webhookd_queue_depth",
            &[("source", "web"), ("destination", "hook")]
        ),
        Some(5.0)
    );
    assert!(
        sample(
            &during,
            "webhookd_attempts_total",
            &[("destination", "hook"), ("result", "5xx")]
        )
        .unwrap()
            >= 5.0
    );
    assert!(
        sample(
            &during,
            "webhookd_oldest_pending_age_seconds",
            &[("destination", "hook")]
        )
        .unwrap()
            >= 0.0
    );

    open.store(true, Ordering::SeqCst);
    let store = service.store();
    assert!(
        wait_until(WAIT, || store.pending("web", "hook") == 0),
        "{}",
        service.log_text()
    );
    let after = scrape(&service);
    assert_eq!(
        sample(
            &after,
            "webhookd_deliveries_total",
            &[("destination", "hook"), ("outcome", "delivered")]
        ),
        Some(5.0)
    );
    assert_eq!(
        sample(
            &after,
            "webhookd_attempts_total",
            &[("destination", "hook"), ("result", "2xx")]
        ),
        Some(5.0)
    );
    assert_eq!(
        sample(&after, "webhookd_queue_depth", &[("destination", "hook")]),
        Some(0.0)
    );
    assert!(
        sample(
            &after,
            "webhookd_attempt_duration_seconds",
            &[("destination", "hook")]
        )
        .unwrap()
            >= 10.0
    );
    assert!(sample(&after, "webhookd_store_commit_duration_seconds", &[]).unwrap() >= 1.0);
    assert_eq!(
        sample(
            &after,
            "webhookd_actor_restarts_total",
            &[("actor", "delivery")]
        ),
        Some(0.0),
        "every actor kind is exported from the start"
    );
    for actor in ["router", "deletion"] {
        assert_eq!(
            sample(&after, "webhookd_actor_restarts_total", &[("actor", actor)]),
            Some(0.0)
        );
    }
}

#[test]
fn message_status_shows_every_attempt() {
    let receiver = Receiver::start(|n, _| Reply::status(if n == 0 { 500 } else { 200 }));
    let service = Webhookd::start_with(
        &one_destination("backoff_initial_ms = 50\nbackoff_max_ms = 100", &receiver),
        &admin_keys(),
    );
    track(&service, "status-1");
    service
        .store()
        .wait_for_state("web", "status-1", "delivered", WAIT);
    let status = admin("GET", &service.url("/admin/v1/messages/status-1"), None);
    assert_eq!(status.status, 200, "{status:?}");
    let delivery = &status.body["events"][0]["deliveries"][0];
    assert_eq!(status.body["events"][0]["source"], "web");
    assert_eq!(delivery["destination"], "hook");
    assert_eq!(delivery["state"], "delivered");
    let statuses: Vec<&Value> = delivery["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status"])
        .collect();
    assert_eq!(statuses, [&json!(500), &json!(200)]);
    assert_eq!(delivery["attempts"][0]["url"], receiver.url("/hook"));
    assert_eq!(
        admin("GET", &service.url("/admin/v1/messages/nope"), None).status,
        404
    );

    let destinations = admin("GET", &service.url("/admin/v1/destinations"), None).body;
    let hook = &destinations["destinations"][0];
    assert_eq!(hook["state"], "active");
    assert_eq!(hook["queueDepth"], 0);
    assert_eq!(hook["attemptsLastHour"], 2);
    assert_eq!(hook["successRateLastHour"], 0.5);
    assert_eq!(hook["lastError"], "HTTP 500");
}

#[test]
fn a_dead_letter_is_listed_replayed_and_delivered() {
    let (receiver, open) = Receiver::gated();
    let service = Webhookd::start_with(
        &one_destination(
            "retry_window_s = 1\nbackoff_initial_ms = 50\nbackoff_max_ms = 200",
            &receiver,
        ),
        &admin_keys(),
    );
    track(&service, "dl-1");
    track(&service, "dl-2");
    let store = service.store();
    let first = store.wait_for_state("web", "dl-1", "dead", WAIT);
    store.wait_for_state("web", "dl-2", "dead", WAIT);
    let listed = admin(
        "GET",
        &service.url("/admin/v1/dead-letters?destination=hook&limit=1"),
        None,
    )
    .body;
    let letters = listed["deadLetters"].as_array().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["messageId"], "dl-1");
    assert!(letters[0]["lastError"]
        .as_str()
        .unwrap()
        .starts_with("retry window of 1 s over"));
    let cursor = listed["nextCursor"].as_i64().unwrap();
    let page_two = admin(
        "GET",
        &service.url(&format!("/admin/v1/dead-letters?cursor={cursor}")),
        None,
    )
    .body;
    assert_eq!(page_two["deadLetters"][0]["messageId"], "dl-2");
    let bad = admin(
        "GET",
        &service.url("/admin/v1/dead-letters?since=yesterday"),
        None,
    );
    assert_eq!(
        (bad.status, bad.error()),
        (400, "`since` is not an ISO 8601 date-time")
    );
    for (query, error) in [
        ("cursor=abc", "`cursor` must be the `nextCursor` of an earlier page"),
        ("limit=0", "`limit` must be 1 to 1000"),
        ("limit=-3", "`limit` must be 1 to 1000"),
        (
            "sinc=2000-01-01T00:00:00Z",
            "`sinc` is not a parameter of this request (source, destination, since, until, cursor, limit)",
        ),
    ] {
        let bad = admin(
            "GET",
            &service.url(&format!("/admin/v1/dead-letters?{query}")),
            None,
        );
        assert_eq!((bad.status, bad.error()), (400, error), "{query}");
    }

    open.store(true, Ordering::SeqCst);
    let id = letters[0]["deliveryId"].as_i64().unwrap();
    let replayed = admin(
        "POST",
        &service.url("/admin/v1/dead-letters/replay"),
        // Twice, and with an id that is no dead letter: said, not silently ignored.
        Some(&json!({"deliveryIds": [id, id, 999_999]})),
    );
    assert_eq!(replayed.body, json!({"replayed": 1, "notDeadLetters": 1}));
    let after = store.wait_for_state("web", "dl-1", "delivered", WAIT);
    // The history is kept: the failed attempts, then the one that worked.
    assert_eq!(after[0].attempts.len(), first[0].attempts.len() + 1);
    assert_eq!(after[0].attempts.last().unwrap().status, Some(200));
    assert_eq!(store.deliveries("web", "dl-2")[0].state, "dead");

    // A misspelt "since" is refused, not read as "every dead letter".
    let misspelt = admin(
        "POST",
        &service.url("/admin/v1/dead-letters/replay"),
        Some(&json!({"source": "web", "destination": "hook", "sinc": "2000-01-01T00:00:00Z"})),
    );
    assert_eq!(misspelt.status, 400);
    assert!(
        misspelt
            .error()
            .starts_with("`sinc` is not a key of this request"),
        "{}",
        misspelt.error()
    );
    let by_destination = admin(
        "POST",
        &service.url("/admin/v1/dead-letters/replay"),
        Some(&json!({"source": "web", "destination": "hook", "since": "2000-01-01T00:00:00Z"})),
    );
    assert_eq!(by_destination.body, json!({"replayed": 1}));
    store.wait_for_state("web", "dl-2", "delivered", WAIT);
}

#[test]
fn pause_holds_deliveries_across_a_restart_and_resume_releases_them() {
    let receiver = Receiver::ok();
    let mut service = Webhookd::start_with(&one_destination("", &receiver), &admin_keys());
    let paused = admin(
        "POST",
        &service.url("/admin/v1/destinations/web/hook/pause"),
        None,
    );
    assert_eq!(paused.body["state"], "paused", "{paused:?}");
    for i in 0..5 {
        track(&service, &format!("p-{i}"));
    }
    service.restart();
    let destinations = admin("GET", &service.url("/admin/v1/destinations"), None).body;
    assert_eq!(destinations["destinations"][0]["state"], "paused");
    assert_eq!(destinations["destinations"][0]["queueDepth"], 5);
    track(&service, "p-5");
    assert_eq!(receiver.count(), 0);
    let resumed = admin(
        "POST",
        &service.url("/admin/v1/destinations/web/hook/resume"),
        None,
    );
    assert_eq!(resumed.body["state"], "active");
    assert!(receiver.wait_for(6, WAIT), "got {}", receiver.count());
    let unknown = admin(
        "POST",
        &service.url("/admin/v1/destinations/web/nope/pause"),
        None,
    );
    assert_eq!(unknown.status, 404);
}

#[test]
fn sigterm_during_a_burst_loses_nothing_and_finishes_attempts_in_flight() {
    let receiver = Receiver::start(|_, _| Reply::status(200).after(Duration::from_millis(1000)));
    let mut service = Webhookd::start(&one_destination("timeout_ms = 3000", &receiver));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let url = service.url("/v1/track");
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let (acked, url) = (Arc::clone(&acked), url.clone());
            std::thread::spawn(move || {
                let auth = basic_auth(WRITE_KEY);
                for n in 0..100_000 {
                    let id = format!("term-{client}-{n}");
                    let body = json!({"userId": "u", "event": "E", "messageId": id}).to_string();
                    match try_post(&url, &[("Authorization", &auth)], body.as_bytes()) {
                        Ok(r) if r.status == 200 => acked.lock().unwrap().push(id),
                        _ => break,
                    }
                }
            })
        })
        .collect();
    assert!(wait_until(WAIT, || acked.lock().unwrap().len() >= 300));
    assert!(receiver.wait_for(1, WAIT));
    let code = service.terminate(Duration::from_secs(3 + 5 + 2));
    assert_eq!(code, Some(0), "log:\n{}", service.log_text());
    for client in clients {
        client.join().unwrap();
    }
    assert!(service
        .log_text()
        .contains("store flushed, leases released; stopped"));
    // Every request the receiver got was recorded as an attempt before the exit.
    let store = service.store();
    let delivered = receiver
        .requests()
        .iter()
        .map(|r| r.json()["messageId"].as_str().unwrap().to_string())
        .filter(|id| {
            store
                .deliveries("web", id)
                .first()
                .is_some_and(|d| !d.attempts.is_empty())
        })
        .count();
    assert_eq!(delivered, receiver.count());
    service.start_again();
    let store = service.store();
    let acked = acked.lock().unwrap();
    let missing = store.missing("web", &acked);
    assert!(
        missing.is_empty(),
        "{} of {} lost",
        missing.len(),
        acked.len()
    );
}

#[test]
fn sighup_adds_a_destination_and_refuses_a_broken_config() {
    let first = Receiver::ok();
    let second = Receiver::ok();
    let mut service = Webhookd::start(&one_destination("", &first));
    track(&service, "before");
    assert!(first.wait_for(1, WAIT));

    let two = format!(
        "{}[[sources.destinations]]\nname = \"added\"\nurls = [{:?}]\n",
        one_destination("", &first),
        second.url("/added")
    );
    service.rewrite_config(&two);
    service.signal("HUP");
    assert!(
        service.wait_for_log("configuration reloaded: 1 source(s)", WAIT),
        "{}",
        service.log_text()
    );
    track(&service, "after");
    assert!(second.wait_for(1, WAIT));
    assert_eq!(second.requests()[0].json()["messageId"], "after");

    service.write_raw_config("[server]\nlisten = 8080\n[[sources]]\nname = \"web\"\n");
    service.signal("HUP");
    assert!(service.wait_for_log("reload refused, the configuration in force stays", WAIT));
    assert!(service
        .log_text()
        .contains("server.listen: invalid type: integer `8080`, expected a string"));
    assert!(service
        .log_text()
        .contains("sources[0].write_key: is required"));
    track(&service, "still");
    assert!(second.wait_for(2, WAIT));
    assert!(first.wait_for(3, WAIT));
    assert!(service.is_running());
}

/// Resuming a destination the configuration disables says so, rather than "active".
#[test]
fn resuming_a_destination_disabled_in_the_config_answers_disabled() {
    let receiver = Receiver::ok();
    let config = one_destination("", &receiver)
        .replace("name = \"hook\"", "name = \"hook\"\nenabled = false");
    let service = Webhookd::start_with(&config, &admin_keys());
    let resumed = admin(
        "POST",
        &service.url("/admin/v1/destinations/web/hook/resume"),
        None,
    );
    assert_eq!(
        (resumed.status, resumed.body["state"].as_str()),
        (200, Some("disabled"))
    );
}

/// The database, its WAL and its lock are readable by their owner only, even in a
/// folder that others can read.
#[test]
fn the_database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let receiver = Receiver::ok();
    let service = Webhookd::start(&one_destination("", &receiver));
    if service.database.is_some() {
        return; // PostgreSQL's files are the server's.
    }
    track(&service, "private-1");
    let db = service.db_path();
    for path in [
        db.clone(),
        db.with_extension("db-wal"),
        db.with_extension("db.lock"),
    ] {
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{} is {:o}", path.display(), mode & 0o777);
    }
}

/// A messageId that is not there is named in the 404, cut short.
#[test]
fn an_unknown_message_id_is_a_short_404() {
    let receiver = Receiver::ok();
    let service = Webhookd::start_with(&one_destination("", &receiver), &admin_keys());
    let long = "x".repeat(5_000);
    let response = admin(
        "GET",
        &service.url(&format!("/admin/v1/messages/{long}")),
        None,
    );
    assert_eq!(response.status, 404);
    assert_eq!(
        response.error(),
        format!("no event with messageId \"{}…\"", &long[..100])
    );
    let short = admin("GET", &service.url("/admin/v1/messages/nope-1"), None);
    assert_eq!(short.error(), "no event with messageId \"nope-1\"");
}

/// Guessing the admin token from one address gets slow: after five wrong tokens the
/// address waits (429 with Retry-After), the right token included; a success clears it.
#[test]
fn wrong_admin_tokens_from_one_address_are_slowed_down() {
    let receiver = Receiver::ok();
    let service = Webhookd::start_with(&one_destination("", &receiver), &admin_keys());
    let url = service.url("/admin/v1/destinations");
    let with_token = |token: &str| {
        let answer = match ureq::get(&url)
            .set("Authorization", &format!("Bearer {token}"))
            .call()
        {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("GET {url}: {e}"),
        };
        (
            answer.status(),
            answer.header("retry-after").map(str::to_string),
        )
    };
    for _ in 0..5 {
        assert_eq!(with_token("wrong").0, 401);
    }
    let (status, retry_after) = with_token(ADMIN_TOKEN);
    assert_eq!((status, retry_after.as_deref()), (429, Some("1")));
    assert!(wait_until(WAIT, || with_token(ADMIN_TOKEN).0 == 200));
    assert_eq!(with_token("wrong").0, 401, "a success cleared the address");
    assert!(service
        .log_text()
        .contains("wrong admin token from 127.0.0.1"));
}

/// With `server.admin_listen`, the public port serves ingest and health only; the admin
/// API, the console and `/metrics` answer on the operators' address.
#[test]
fn admin_listen_keeps_operations_off_the_public_port() {
    let receiver = Receiver::ok();
    let keys = format!("{}\nadmin_listen = \"127.0.0.1:0\"", admin_keys());
    let service = Webhookd::start_with(&one_destination("", &receiver), &keys);
    assert!(service.wait_for_log("admin API, console and metrics on http://", WAIT));
    let log = service.log_text();
    let ops = log
        .split("admin API, console and metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_string();
    for path in ["/admin/v1/destinations", "/metrics", "/console/login"] {
        assert_eq!(get(&service.url(path)).status, 404, "public {path}");
    }
    assert_eq!(
        admin("GET", &service.url("/admin/v1/destinations"), None).status,
        404
    );
    track(&service, "admin-listen-1");
    assert!(receiver.wait_for(1, WAIT));
    let on_ops = |path: &str| format!("http://{ops}{path}");
    let destinations = admin("GET", &on_ops("/admin/v1/destinations"), None);
    assert_eq!(destinations.status, 200);
    assert_eq!(destinations.body["destinations"][0]["destination"], "hook");
    let metrics = ureq::get(&on_ops("/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(metrics.contains("webhookd_events_received_total"));
    assert_eq!(get(&on_ops("/console/login")).status, 200);
    assert_eq!(get(&on_ops("/v1/track")).status, 404, "no ingest there");
    assert_eq!(get(&service.url("/healthz")).status, 200);
    assert_eq!(get(&on_ops("/healthz")).status, 200);
}

/// A destination renamed with deliveries still pending: its backlog is shown as orphaned
/// (and warned of), not lost from sight; pausing it is refused as for any unknown name.
#[test]
fn a_renamed_destinations_backlog_is_shown_as_orphaned() {
    let receiver = Receiver::start(|_, _| Reply::status(503));
    let service = Webhookd::start_with(&one_destination("", &receiver), &admin_keys());
    for i in 0..3 {
        track(&service, &format!("orphan-{i}"));
    }
    assert!(receiver.wait_for(1, WAIT));
    service.rewrite_config(&one_destination("", &receiver).replace("\"hook\"", "\"main\""));
    service.signal("HUP");
    assert!(service.wait_for_log(
        "destination web/hook has pending deliveries but is not in the configuration",
        WAIT
    ));
    let list = admin("GET", &service.url("/admin/v1/destinations"), None).body;
    let destinations = list["destinations"].as_array().unwrap();
    let orphan = destinations
        .iter()
        .find(|d| d["destination"] == "hook")
        .unwrap_or_else(|| panic!("no orphaned hook in {list}"));
    assert_eq!(orphan["state"], "orphaned");
    assert_eq!(orphan["queueDepth"], 3);
    assert!(destinations
        .iter()
        .any(|d| d["destination"] == "main" && d["state"] == "active"));
    // Shown as orphaned, and not as a queue that a stuck-backlog alert would watch.
    let hook = ["destination=\"hook\""];
    assert_eq!(service.metric("webhookd_orphaned_deliveries", &hook), 3.0);
    assert!(!service
        .metric_text()
        .lines()
        .any(|l| l.starts_with("webhookd_queue_depth{") && l.contains(hook[0])));
    let pause = admin(
        "POST",
        &service.url("/admin/v1/destinations/web/hook/pause"),
        None,
    );
    assert_eq!(pause.status, 404);
}

/// A destination renamed with its old name in `previous_names` takes over the old name's
/// backlog and pause at reload: nothing is orphaned, and resuming it delivers them.
#[test]
fn a_renamed_destination_carries_its_backlog_with_previous_names() {
    let receiver = Receiver::ok();
    let service = Webhookd::start_with(&one_destination("", &receiver), &admin_keys());
    let paused = admin(
        "POST",
        &service.url("/admin/v1/destinations/web/hook/pause"),
        None,
    );
    assert_eq!(paused.status, 200, "{paused:?}");
    for i in 0..3 {
        track(&service, &format!("carried-{i}"));
    }
    let renamed = one_destination("", &receiver).replace(
        "name = \"hook\"",
        "name = \"main\"\nprevious_names = [\"hook\"]",
    );
    service.rewrite_config(&renamed);
    service.signal("HUP");
    assert!(service.wait_for_log(
        "destination web/main takes over 3 deliveries of its previous name hook",
        WAIT
    ));
    let list = admin("GET", &service.url("/admin/v1/destinations"), None).body;
    let destinations = list["destinations"].as_array().unwrap();
    assert!(
        destinations.iter().all(|d| d["destination"] != "hook"),
        "{list}"
    );
    let main = destinations
        .iter()
        .find(|d| d["destination"] == "main")
        .unwrap_or_else(|| panic!("no main in {list}"));
    assert_eq!(
        (main["state"].as_str(), main["queueDepth"].as_u64()),
        (Some("paused"), Some(3))
    );
    assert_eq!(receiver.count(), 0, "the pause holds under the new name");
    let resumed = admin(
        "POST",
        &service.url("/admin/v1/destinations/web/main/resume"),
        None,
    );
    assert_eq!(resumed.status, 200);
    assert!(receiver.wait_for(3, WAIT), "got {}", receiver.count());
    assert_eq!(
        service.store().deliveries("web", "carried-0")[0].destination,
        "main"
    );
}

/// A token in a webhook URL's query is neither shown by the admin API nor stored.
#[test]
fn attempt_urls_are_shown_redacted() {
    let receiver = Receiver::ok();
    let url = receiver.url("/hook?token=query-secret-42");
    let sources = format!(
        "[[sources]]\nname = \"web\"\nwrite_key = \"{WRITE_KEY}\"\n\
         [[sources.destinations]]\nname = \"hook\"\nurls = [{url:?}]\n"
    );
    let service = Webhookd::start_with(&sources, &admin_keys());
    track(&service, "redacted-1");
    assert!(receiver.wait_for(1, WAIT));
    let attempt_url = || {
        let message = admin("GET", &service.url("/admin/v1/messages/redacted-1"), None);
        message.body["events"][0]["deliveries"][0]["attempts"][0]["url"]
            .as_str()
            .map(str::to_string)
    };
    // The attempt is recorded just after the receiver answers.
    assert!(wait_until(WAIT, || attempt_url().is_some()));
    let shown = attempt_url().unwrap();
    assert!(shown.starts_with(&receiver.url("/hook?token=")), "{shown}");
    assert!(!shown.contains("query-secret-42"), "{shown}");
    // Nor is it kept in the store's attempt records.
    let stored = service.store().deliveries("web", "redacted-1")[0].attempts[0]
        .url
        .clone();
    assert_eq!(stored, shown);
}
