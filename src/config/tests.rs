//! The configuration's reading and validation, against the documented behaviour.

use super::*;

fn problems(text: &str) -> Vec<String> {
    match Config::from_toml(text) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid(p)) => p.into_iter().map(|p| p.to_string()).collect(),
        Err(e) => vec![e.to_string()],
    }
}

#[test]
fn empty_file_gives_the_documented_defaults() {
    let c = Config::from_toml("").unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert!(c.server.admin_token.is_none());
    assert_eq!(c.server.max_message_bytes, 32_768);
    assert_eq!(c.server.max_batch_bytes, 512_000);
    assert_eq!(c.delivery.timeout_ms, 5_000);
    assert_eq!(c.delivery.retry_window_s, 14_400);
    assert_eq!(c.storage.path, PathBuf::from("./data/webhookd.db"));
}

#[test]
fn reports_every_problem_with_its_key_path() {
    let text = r#"
        bogus = 1
        [server]
        listen = "nowhere"
        colour = "blue"
        [delivery]
        timeout_ms = "soon"
        [[sources]]
        name = "web"
        write_key = "k"
          [[sources.destinations]]
          name = "d"
          urls = ["ftp://x", "http://ok/", { url = "http://a/", extra = 1 }]
          headers = { "Content-Type" = "text/plain" }
        [[sources]]
        name = "web"
        write_key = "k"
    "#;
    let found = problems(text);
    let expected = [
        "server.listen: \"nowhere\" is not an address like 127.0.0.1:8080",
        "server.colour: unknown key",
        "delivery.timeout_ms: invalid type: string \"soon\", expected u64",
        "sources[0].destinations[0].urls[0]: \"ftp://x\" must start with http:// or https://",
        "sources[0].destinations[0].urls[2].extra: unknown key",
        "sources[0].destinations[0].headers.\"Content-Type\": webhookd sets this header itself",
        "sources[1].name: \"web\" is used by an earlier source",
        "sources[1].write_key: is the write key of an earlier source",
        "bogus: unknown key",
    ];
    for e in expected {
        assert!(found.iter().any(|f| f == e), "missing {e:?} in {found:#?}");
    }
    assert_eq!(found.len(), expected.len(), "{found:#?}");
}

#[test]
fn url_count_is_limited_to_five() {
    let six = r#"
        [[sources]]
        name = "s"
        write_key = "k"
          [[sources.destinations]]
          name = "d"
          urls = ["http://a/1", "http://a/2", "http://a/3", "http://a/4", "http://a/5", "http://a/6"]
    "#;
    assert_eq!(
        problems(six),
        ["sources[0].destinations[0].urls: has 6 URLs; 1 to 5 are allowed"]
    );
}

#[test]
fn write_keys_never_appear_in_problems() {
    let text = r#"
        [[sources]]
        name = "a"
        write_key = "SUPER-SECRET-KEY"
        [[sources]]
        name = "b"
        write_key = "SUPER-SECRET-KEY"
    "#;
    let found = problems(text);
    assert_eq!(found.len(), 1);
    assert!(!found[0].contains("SUPER-SECRET-KEY"));
}

#[test]
fn per_url_headers_and_empty_admin_token() {
    let text = r#"
        [server]
        admin_token = ""
        [[sources]]
        name = "s"
        write_key = "k"
          [[sources.destinations]]
          name = "d"
          urls = [{ url = "https://example.com/h", headers = { "X-A" = "1" } }]
          enabled = false
    "#;
    let c = Config::from_toml(text).unwrap();
    assert!(c.server.admin_token.is_none());
    let d = &c.sources[0].destinations[0];
    assert!(!d.enabled);
    assert_eq!(
        d.urls[0].headers,
        Headers(vec![("X-A".to_string(), "1".to_string())])
    );
}

#[test]
fn the_example_config_is_valid() {
    let text = include_str!("../../config.example.toml");
    Config::from_toml(text).unwrap();
}

#[test]
fn secrets_of_the_wrong_type_are_reported_without_their_value() {
    let text = r#"
        [server]
        admin_token = 98765432109876
        [storage]
        url = 12345678
        [[sources]]
        name = "s"
        write_key = 55555555
          [[sources.destinations]]
          name = "d"
          urls = ["http://a/"]
          shared_secret = 77777777
          headers = { Authorization = 66666666 }
    "#;
    let found = problems(text);
    for secret in [
        "98765432109876",
        "12345678",
        "55555555",
        "77777777",
        "66666666",
    ] {
        assert!(
            found.iter().all(|p| !p.contains(secret)),
            "{secret} leaked: {found:#?}"
        );
    }
    for path in [
        "server.admin_token: must be a string",
        "storage.url: must be a string",
        "sources[0].write_key: must be a string",
        "sources[0].destinations[0].shared_secret: must be a string",
        "sources[0].destinations[0].headers.Authorization: the value of header \"Authorization\" must be a string",
    ] {
        assert!(found.iter().any(|p| p == path), "missing {path:?} in {found:#?}");
    }
}

#[test]
fn actions_keys_are_checked_with_their_key_path() {
    let text = r#"
        [[sources]]
        name = "s"
        write_key = "k"
          [[sources.destinations]]
          name = "d"
          urls = ["http://a/", "http://a/"]
          subscribe = 'type = "track" and ('
          method = "GET"
          batch_size = 5000
          signing_secrets = ["nope", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
          [sources.destinations.data]
          id = { "@nope" = "$.x" }
    "#;
    let found = problems(text);
    let p = "sources[0].destinations[0]";
    for expected in [
        format!("{p}.urls[1]: repeats an earlier URL of this destination"),
        format!("{p}.subscribe: not a valid trigger: missing \")\""),
        format!("{p}.method: unknown variant `GET`, expected one of `POST`, `PUT`, `PATCH`"),
        format!("{p}.batch_size: must be 1 to 4000 (it is 5000)"),
        format!("{p}.signing_secrets[0]: must start with \"whsec_\""),
        format!("{p}.data: not a valid mapping: /id has an invalid directive: @nope."),
    ] {
        assert!(
            found.contains(&expected),
            "missing {expected:?} in {found:#?}"
        );
    }
    assert_eq!(found.len(), 6, "{found:#?}");
}

#[test]
fn previous_names_are_unambiguous() {
    let text = r#"
        [[sources]]
        name = "s"
        write_key = "k"
          [[sources.destinations]]
          name = "a"
          urls = ["http://a/"]
          previous_names = ["b", "old", ""]
          [[sources.destinations]]
          name = "b"
          urls = ["http://b/"]
          previous_names = ["old"]
    "#;
    let found = problems(text);
    let p = "sources[0].destinations";
    for expected in [
        format!("{p}[0].previous_names[0]: \"b\" is the name of a destination of this source"),
        format!("{p}[0].previous_names[2]: must not be empty"),
        format!("{p}[1].previous_names[0]: \"old\" is an earlier previous name in this source"),
    ] {
        assert!(
            found.contains(&expected),
            "missing {expected:?} in {found:#?}"
        );
    }
    assert_eq!(found.len(), 3, "{found:#?}");
}

#[test]
fn numbers_are_range_checked() {
    let found = problems("[delivery]\nretry_window_s = 99999999999\nmax_in_flight = 0\n");
    assert!(
        found.contains(
            &"delivery.retry_window_s: must be 0 to 2592000 (it is 99999999999)".to_string()
        ),
        "{found:#?}"
    );
    assert!(
        found.contains(&"delivery.max_in_flight: must be 1 to 10000 (it is 0)".to_string()),
        "{found:#?}"
    );
}

#[test]
fn a_valid_destination_of_the_actions_kind_loads() {
    let text = r#"
        [[sources]]
        name = "s"
        write_key = "k"
          [[sources.destinations]]
          name = "orders"
          urls = ["https://example.com/orders"]
          subscribe = 'type = "track" and event = "Order Completed"'
          method = "PUT"
          batch_size = 100
          batch_wait_ms = 250
          [sources.destinations.data]
          order_id = { "@path" = "$.properties.order_id" }
          email = { "@template" = "{{traits.email}}" }
    "#;
    let c = Config::from_toml(text).unwrap();
    let d = &c.sources[0].destinations[0];
    assert_eq!(d.method, Method::Put);
    assert_eq!((d.batch_size, d.batch_wait_ms), (100, 250));
    assert!(d.trigger.is_some() && d.mapping.is_some());
    // Debug never shows header values or secrets.
    assert!(!format!("{d:?}").contains("whsec"));
}

#[test]
fn notifications_become_a_source_of_webhookds_own() {
    let c = Config::from_toml(
        "[notifications]\nurl = \"https://ops.example.com/hook\"\n\
         signing_secrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n",
    )
    .unwrap();
    let own = c
        .sources
        .iter()
        .find(|s| s.name == NOTIFICATIONS_SOURCE)
        .unwrap();
    assert_eq!(own.destinations[0].name, NOTIFICATIONS_DESTINATION);
    assert_eq!(
        own.destinations[0].urls[0].url,
        "https://ops.example.com/hook"
    );
    assert_eq!(own.destinations[0].signing_secrets.len(), 1);
    // Without a URL there is none; its problems are told by the keys written.
    assert!(Config::from_toml("").unwrap().sources.is_empty());
    assert_eq!(
        problems("[notifications]\nurl = \"ftp://x/\"\nsigning_secrets = [\"nope\"]\n"),
        [
            "notifications.url: \"ftp://x/\" must start with http:// or https://",
            "notifications.signing_secrets[0]: must start with \"whsec_\""
        ]
    );
    assert_eq!(
        problems("[[sources]]\nname = \"_webhookd\"\nwrite_key = \"k\"\n"),
        ["sources[0].name: is webhookd's own (its notifications)"]
    );
}

#[test]
fn failing_receiver_settings_and_retention_load() {
    let c = Config::from_toml(
        "[retention]\ndelivered_s = 60\n[[sources]]\nname = \"web\"\nwrite_key = \"k\"\n\
         [[sources.destinations]]\nname = \"d\"\nurls = [\"http://a/\"]\n\
         disable_after_s = 432000\nrate_limit_per_s = 50\n",
    )
    .unwrap();
    let d = &c.sources[0].destinations[0];
    assert_eq!((d.disable_after_s, d.rate_limit_per_s), (432_000, 50));
    assert_eq!(c.retention.delivered_s, 60);
    assert_eq!(c.retention.dead_letter_s, 2_592_000);
    assert_eq!(
        problems("[retention]\ndelivered_s = 0\n"),
        ["retention.delivered_s: must be 1 to 315360000 (it is 0)"]
    );
}
