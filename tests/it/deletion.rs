//! User deletion requests: delete notifications per source and destination, purge of
//! undelivered events, suppression, and resumption after a crash.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::receiver::Receiver;
use crate::common::{
    admin, basic_auth, post, wait_until, web_to_hook, Webhookd, ADMIN_TOKEN, WRITE_KEY,
};

const WAIT: Duration = Duration::from_secs(30);
const APP_KEY: &str = "WRITE_KEY_APP";

fn admin_keys() -> String {
    format!("admin_token = {ADMIN_TOKEN:?}")
}

/// `web` with destinations `a` (signed) and `b`, `app` with destination `c`, and `quiet`
/// with none.
fn three_sources(a: &Receiver, b: &Receiver, c: &Receiver) -> String {
    format!(
        "[delivery]\nbackoff_initial_ms = 50\nbackoff_max_ms = 200\n\
         [[sources]]\nname = \"web\"\nwrite_key = \"{WRITE_KEY}\"\n\
         [[sources.destinations]]\nname = \"a\"\nurls = [{:?}]\nshared_secret = \"s3cr3t\"\n\
         [[sources.destinations]]\nname = \"b\"\nurls = [{:?}]\n\
         [[sources]]\nname = \"app\"\nwrite_key = \"{APP_KEY}\"\n\
         [[sources.destinations]]\nname = \"c\"\nurls = [{:?}]\n\
         [[sources]]\nname = \"quiet\"\nwrite_key = \"WRITE_KEY_QUIET\"\n",
        a.url("/a"),
        b.url("/b"),
        c.url("/c")
    )
}

fn regulate(service: &Webhookd, body: Value) -> String {
    let response = admin("POST", &service.url("/admin/v1/regulations"), Some(&body));
    assert_eq!(response.status, 202, "{response:?}");
    response.body["regulationId"].as_str().unwrap().to_string()
}

fn wait_done(service: &Webhookd, id: &str) -> Value {
    let mut last = Value::Null;
    let done = wait_until(WAIT, || {
        last = admin(
            "GET",
            &service.url(&format!("/admin/v1/regulations/{id}")),
            None,
        )
        .body;
        last["status"] == "done"
    });
    assert!(done, "regulation not done: {last}");
    last
}

/// The userIds of the delete notifications a receiver got.
fn deleted_users(receiver: &Receiver) -> Vec<String> {
    let mut users: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| r.json())
        .filter(|b| b["type"] == "delete")
        .map(|b| b["userId"].as_str().unwrap().to_string())
        .collect();
    users.sort();
    users
}

#[test]
fn a_regulation_notifies_every_destination_of_each_source_once_per_subject() {
    let (a, b, c) = (Receiver::ok(), Receiver::ok(), Receiver::ok());
    let service = Webhookd::start_with(&three_sources(&a, &b, &c), &admin_keys());
    let id = regulate(
        &service,
        // A user listed twice is one subject: one notification per destination.
        json!({"regulationType": "DELETE_ONLY", "subjectType": "USER_ID", "subjectIds": ["u1", "u2", "u1"]}),
    );
    let progress = wait_done(&service, &id);
    for receiver in [&a, &b, &c] {
        assert_eq!(deleted_users(receiver), ["u1", "u2"]);
    }
    for request in a.requests() {
        let body = request.json();
        let keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["type", "userId", "timestamp"]);
        assert!(chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).is_ok());
        assert_eq!(request.header("user-agent"), Some("Segment.io/1.0"));
        let signature = request.header("x-signature").expect("destination a signs");
        assert_eq!(
            signature,
            webhookd::delivery::signature::sign("s3cr3t", &request.body)
        );
    }
    let reach: Vec<(String, String, u64)> = progress["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["source"].as_str().unwrap().into(),
                n["destination"].as_str().unwrap().into(),
                n["delivered"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reach,
        [
            ("app".into(), "c".into(), 2),
            ("web".into(), "a".into(), 2),
            ("web".into(), "b".into(), 2)
        ]
    );
    assert_eq!(progress["subjectCount"], 2);
    let listed = admin("GET", &service.url("/admin/v1/regulations"), None);
    assert_eq!(listed.body["regulations"][0]["regulationId"], id.as_str());
    assert_eq!(listed.body["regulations"][0]["status"], progress["status"]);
    let bad = admin("GET", &service.url("/admin/v1/regulations?limit=0"), None);
    assert_eq!((bad.status, bad.error()), (400, "`limit` must be 1 to 100"));
}

#[test]
fn sources_limit_the_reach_of_a_regulation() {
    let (a, b, c) = (Receiver::ok(), Receiver::ok(), Receiver::ok());
    let service = Webhookd::start_with(&three_sources(&a, &b, &c), &admin_keys());
    let id = regulate(
        &service,
        json!({"regulationType": "DELETE_ONLY", "subjectType": "USER_ID", "subjectIds": ["u9"], "sources": ["app"]}),
    );
    let progress = wait_done(&service, &id);
    assert_eq!(deleted_users(&c), ["u9"]);
    // Nothing was ever queued for web's destinations.
    assert_eq!(progress["notifications"].as_array().unwrap().len(), 1);
    assert_eq!((a.count(), b.count()), (0, 0));
}

#[test]
fn a_deleted_users_queued_events_never_arrive() {
    let (receiver, open) = Receiver::gated();
    let text = format!(
        "[delivery]\nbackoff_initial_ms = 50\nbackoff_max_ms = 200\n{}",
        web_to_hook(&receiver)
    );
    let service = Webhookd::start_with(&text, &admin_keys());
    for i in 0..10 {
        for user in ["gone", "kept"] {
            let event = json!({"userId": user, "event": "E", "messageId": format!("{user}-{i}")});
            assert_eq!(service.post("/v1/track", &event).status, 200);
        }
    }
    // Both users' events are failing and waiting for a retry.
    assert!(receiver.wait_for(20, WAIT));
    let id = regulate(
        &service,
        json!({"regulationType": "DELETE_ONLY", "subjectType": "USER_ID", "subjectIds": ["gone"]}),
    );
    assert!(wait_until(WAIT, || {
        admin(
            "GET",
            &service.url(&format!("/admin/v1/regulations/{id}")),
            None,
        )
        .body["appliedAt"]
            .is_string()
    }));
    let before = receiver.count();
    open.store(true, Ordering::SeqCst);
    let progress = wait_done(&service, &id);
    assert_eq!(progress["purgedDeliveries"], 10);
    let store = service.store();
    assert!(wait_until(WAIT, || store.pending("web", "hook") == 0));
    // After the receiver recovered: every event of "kept", none of "gone", and the notice.
    let after: Vec<Value> = receiver
        .requests()
        .iter()
        .skip(before)
        .map(|r| r.json())
        .collect();
    let mut kept: Vec<&str> = after
        .iter()
        .filter(|b| b["userId"] == "kept")
        .map(|b| b["messageId"].as_str().unwrap())
        .collect();
    kept.sort();
    kept.dedup();
    assert_eq!(kept.len(), 10);
    let gone: Vec<&Value> = after.iter().filter(|b| b["userId"] == "gone").collect();
    assert_eq!(gone.len(), 1, "{gone:?}");
    assert_eq!(gone[0]["type"], "delete");
    // The purged events are gone from the store.
    assert!(store.find("web", "gone-0").is_none());
    assert!(store.find("web", "kept-0").is_some());
}

#[test]
fn suppression_drops_later_events_until_lifted() {
    let receiver = Receiver::ok();
    let text = web_to_hook(&receiver);
    let service = Webhookd::start_with(&text, &admin_keys());
    let id = regulate(
        &service,
        json!({"regulationType": "SUPPRESS_WITH_DELETE", "subjectType": "USER_ID", "subjectIds": ["hidden"]}),
    );
    wait_done(&service, &id);
    let listed = admin("GET", &service.url("/admin/v1/suppressions"), None).body;
    assert_eq!(listed["suppressions"][0]["source"], "web");
    assert_eq!(listed["suppressions"][0]["userId"], "hidden");
    assert_eq!(listed["suppressions"][0]["regulationId"], id.as_str());

    let response = service.post(
        "/v1/track",
        &json!({"userId": "hidden", "event": "E", "messageId": "h-1"}),
    );
    assert_eq!(response.body, json!({"success": true}));
    assert_eq!(
        service
            .post(
                "/v1/track",
                &json!({"userId": "other", "event": "E", "messageId": "o-1"})
            )
            .status,
        200
    );
    assert!(service.stored("web", "h-1").is_none());
    assert!(service.stored("web", "o-1").is_some());

    let lift = admin(
        "DELETE",
        &service.url("/admin/v1/suppressions/web/hidden"),
        None,
    );
    assert_eq!(lift.status, 200, "{lift:?}");
    assert_eq!(
        admin(
            "DELETE",
            &service.url("/admin/v1/suppressions/web/hidden"),
            None
        )
        .status,
        404
    );
    assert_eq!(
        service
            .post(
                "/v1/track",
                &json!({"userId": "hidden", "event": "E", "messageId": "h-2"})
            )
            .status,
        200
    );
    assert!(service.stored("web", "h-2").is_some());
}

#[test]
fn a_large_regulation_completes_across_a_crash() {
    let receiver = Receiver::ok();
    let text = web_to_hook(&receiver);
    let mut service = Webhookd::start_with(&text, &admin_keys());
    let subjects: Vec<String> = (0..400).map(|i| format!("user-{i:03}")).collect();
    let id = regulate(
        &service,
        json!({"regulationType": "SUPPRESS_WITH_DELETE", "subjectType": "USER_ID", "subjectIds": subjects}),
    );
    service.kill();
    service.restart();
    let progress = wait_done(&service, &id);
    assert_eq!(progress["notifications"][0]["delivered"], 400);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for user in deleted_users(&receiver) {
        *counts.entry(user).or_default() += 1;
    }
    assert_eq!(counts.len(), 400, "every subject notified");
    let listed = admin("GET", &service.url("/admin/v1/suppressions"), None).body;
    assert_eq!(listed["suppressions"].as_array().unwrap().len(), 400);
}

#[test]
fn the_admin_api_checks_its_token_and_names_bad_fields() {
    let receiver = Receiver::ok();
    let text = web_to_hook(&receiver);
    let service = Webhookd::start_with(&text, &admin_keys());
    let url = service.url("/admin/v1/regulations");
    let good =
        json!({"regulationType": "DELETE_ONLY", "subjectType": "USER_ID", "subjectIds": ["u"]})
            .to_string();
    let none = post(&url, &[], good.as_bytes());
    assert_eq!(
        (none.status, none.error()),
        (
            401,
            "the admin API needs Authorization: Bearer <admin_token>"
        )
    );
    let wrong = post(&url, &[("Authorization", "Bearer nope")], good.as_bytes());
    assert_eq!((wrong.status, wrong.error()), (401, "wrong admin token"));
    let basic = post(
        &url,
        &[("Authorization", &basic_auth(ADMIN_TOKEN))],
        good.as_bytes(),
    );
    assert_eq!(basic.status, 401);
    let cases = [
        (
            json!({"regulationType": "ERASE", "subjectType": "USER_ID", "subjectIds": ["u"]}),
            "`regulationType` must be DELETE_ONLY or SUPPRESS_WITH_DELETE",
        ),
        (
            json!({"regulationType": "DELETE_ONLY", "subjectType": "EMAIL", "subjectIds": ["u"]}),
            "`subjectType` must be USER_ID",
        ),
        (
            json!({"regulationType": "DELETE_ONLY", "subjectType": "USER_ID", "subjectIds": []}),
            "`subjectIds` must be a non-empty array of user ids",
        ),
        (
            json!({"regulationType": "DELETE_ONLY", "subjectType": "USER_ID", "subjectIds": ["u", ""]}),
            "`subjectIds[1]` must be a non-empty string",
        ),
    ];
    for (body, error) in cases {
        let response = admin("POST", &url, Some(&body));
        assert_eq!(response.status, 400, "{body}");
        assert_eq!(response.error(), error);
    }
    // A misspelt key would otherwise mean "every source".
    let misspelt = json!({"regulationType": "DELETE_ONLY", "subjectType": "USER_ID", "subjectIds": ["u"], "source": ["web"]});
    let response = admin("POST", &url, Some(&misspelt));
    assert_eq!(response.status, 400);
    assert!(
        response
            .error()
            .starts_with("`source` is not a key of this request (expected one of"),
        "{}",
        response.error()
    );
    let unknown = json!({"regulationType": "DELETE_ONLY", "subjectType": "USER_ID", "subjectIds": ["u"], "sources": ["web", "nope"]});
    let response = admin("POST", &url, Some(&unknown));
    assert_eq!(
        (response.status, response.error()),
        (404, "`sources[1]` is not a configured source")
    );
    assert_eq!(
        admin("GET", &service.url("/admin/v1/regulations/nope"), None).status,
        404
    );
    assert!(!service.log_text().contains(ADMIN_TOKEN));

    // Without an admin token configured, the admin API does not exist.
    let closed = Webhookd::start(&text);
    let response = admin(
        "POST",
        &closed.url("/admin/v1/regulations"),
        Some(&json!({})),
    );
    assert_eq!(response.status, 404);
}
