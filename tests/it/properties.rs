//! Property tests over what hostile clients control: event validation and enrichment,
//! the canonical writer (checked against Node), the config loader, and the ingest API
//! itself. Nothing panics; every refusal is a clear 4xx or a named problem.

use proptest::prelude::*;
use serde_json::{Map, Value};
use webhookd::config::{Config, ConfigError};
use webhookd::segment::{prepare, to_canonical_json, EventType, RequestFacts};

use crate::common::{
    basic_auth, node_available, one_source_config, run_node, try_post, Webhookd, WRITE_KEY,
};

/// Any JSON value, with the keys and strings that matter to Segment events.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("2024-05-01T12:00:00Z".to_string()),
            Just("not a date".to_string()),
            Just("2024-05-01".to_string()),
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("userId".to_string()),
                        Just("anonymousId".to_string()),
                        Just("event".to_string()),
                        Just("groupId".to_string()),
                        Just("previousId".to_string()),
                        Just("timestamp".to_string()),
                        Just("sentAt".to_string()),
                        Just("messageId".to_string()),
                        Just("context".to_string()),
                        Just("writeKey".to_string()),
                        "[0-9]{1,3}",
                        "\\PC{0,6}",
                    ],
                    inner
                ),
                0..8
            )
            .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn event_type() -> impl Strategy<Value = EventType> {
    prop::sample::select(EventType::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn validation_never_panics_and_names_what_is_wrong(value in json_value(), kind in event_type()) {
        let facts = RequestFacts { received_at: chrono::Utc::now(), client_ip: Some("127.0.0.1"), batch_sent_at: None, max_event_bytes: usize::MAX };
        let Value::Object(map) = value else { return Ok(()) };
        match prepare(map, kind, &facts) {
            Ok(event) => {
                let body: Value = serde_json::from_str(&event.body).unwrap();
                prop_assert_eq!(&body["type"], kind.as_str());
                prop_assert_eq!(body["messageId"].as_str(), Some(event.message_id.as_str()));
                prop_assert!(body["receivedAt"].is_string());
                prop_assert!(body.get("writeKey").is_none());
            }
            Err(e) => prop_assert!(e.to_string().contains('`') || e.to_string().starts_with("event")),
        }
    }

    #[test]
    fn the_config_loader_never_panics(text in "(\\[{1,2}[a-z.]{0,20}\\]{1,2}\\n|[a-z_]{1,16} = (\"[^\"\\n]{0,16}\"|[0-9]{1,6}|true|\\[\\]|\\{\\})\\n|\\PC{0,20}\\n){0,12}") {
        match Config::from_toml(&text) {
            Ok(_) => {}
            Err(ConfigError::Invalid(problems)) => prop_assert!(!problems.is_empty()),
            Err(other) => prop_assert!(false, "unexpected {other}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4))]

    #[test]
    fn canonical_json_matches_node(values in prop::collection::vec(json_value(), 200)) {
        if !node_available() {
            return Ok(());
        }
        let inputs: Vec<String> = values.iter().map(|v| serde_json::to_string(v).unwrap()).collect();
        let script = r#"
            const inputs = JSON.parse(require('fs').readFileSync(0, 'utf8'));
            console.log(JSON.stringify(inputs.map((t) => JSON.stringify(JSON.parse(t)))));
        "#;
        let node: Vec<String> = serde_json::from_str(&run_node(script, &serde_json::to_string(&inputs).unwrap())).unwrap();
        for (input, expected) in inputs.iter().zip(node) {
            let ours = to_canonical_json(&serde_json::from_str(input).unwrap());
            prop_assert_eq!(ours, expected, "input {}", input);
        }
    }
}

#[test]
fn the_ingest_api_answers_arbitrary_bodies_with_200_or_a_4xx() {
    let service = Webhookd::start(&one_source_config());
    let auth = basic_auth(WRITE_KEY);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(300));
    let bodies = prop_oneof![
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        json_value().prop_map(|v| serde_json::to_vec(&serde_json::json!({"batch": [v]})).unwrap()),
        prop::collection::vec(any::<u8>(), 0..512),
    ];
    runner
        .run(
            &(
                bodies,
                prop::sample::select(vec!["/v1/track", "/v1/identify", "/v1/batch", "/v1/alias"]),
            ),
            |(body, path)| {
                let response = try_post(&service.url(path), &[("Authorization", &auth)], &body)
                    .map_err(|e| TestCaseError::fail(format!("transport: {e}")))?;
                prop_assert!(
                    response.status == 200 || (400..500).contains(&response.status),
                    "{} for {:?}",
                    response.status,
                    String::from_utf8_lossy(&body)
                );
                if response.status != 200 {
                    prop_assert!(!response.error().is_empty());
                }
                Ok(())
            },
        )
        .unwrap();
    let normal = serde_json::json!({"userId": "u", "event": "E", "messageId": "after-props"});
    assert_eq!(service.post("/v1/track", &normal).status, 200);
}
