//! webhookd's triggers and mappings against Segment's own implementations, run in Node:
//! `@segment/destination-subscriptions` (`parseFql`, `validate`) for triggers and
//! `@segment/actions-core` (`transform`) for mappings. A table of hand-written cases, then
//! generated ones: thousands of random events against hundreds of random expressions and
//! mappings over the whole grammar, every verdict and every mapped body compared.
//!
//! The packages come with `npm ci` in `tests/clients` (`.ci/run` does it); without them
//! these tests say so and pass, except under CI.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use webhookd::segment::fql::Fql;
use webhookd::segment::mapping::Mapping;
use webhookd::segment::to_canonical_json;

use crate::common::run_node;

const CLIENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");

/// Whether the npm package `name` is installed in `tests/clients`.
fn installed(name: &str) -> bool {
    let found = Path::new(CLIENTS).join("node_modules").join(name).is_dir()
        && crate::common::node_available();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "run `npm ci` in tests/clients: CI must compare with {name}"
        );
        eprintln!("SKIPPED: {name} is not installed (npm ci in tests/clients)");
    }
    found
}

/// Runs a script of `tests/clients` with `input` on its standard input.
fn oracle(script: &str, input: &Value) -> Value {
    let code = format!(
        "process.chdir({CLIENTS:?}); require({:?})",
        Path::new(CLIENTS).join(script).display().to_string()
    );
    serde_json::from_str(&run_node(&code, &input.to_string())).expect("the oracle's JSON")
}

// ---------------------------------------------------------------------------------------
// Random events.

const WORDS: &[&str] = &[
    "Order Completed",
    "Order",
    "Completed",
    "Signed Up",
    "sign",
    "SPRING",
    "spring",
    "a",
    "",
    "Product Viewed",
    "track",
    "u1",
    "u2",
    "web",
    "2.1",
    "10",
    "abc",
    "é✓",
];

fn word(rng: &mut StdRng) -> String {
    WORDS[rng.random_range(0..WORDS.len())].to_string()
}

fn scalar(rng: &mut StdRng) -> Value {
    match rng.random_range(0..9) {
        0 => Value::Null,
        1 => json!(rng.random_bool(0.5)),
        2 => json!(rng.random_range(-3..40)),
        3 => json!(rng.random_range(-100..100) as f64 / 4.0),
        4 => json!(0),
        5 => json!([word(rng), rng.random_range(0..3)]),
        _ => json!(word(rng)),
    }
}

fn bag(rng: &mut StdRng, depth: u32) -> Value {
    let mut map = serde_json::Map::new();
    for _ in 0..rng.random_range(0..6) {
        let key = [
            "total", "price", "coupon", "tags", "plan", "email", "version", "nested", "items", "0",
        ][rng.random_range(0..10)];
        let value = if depth < 2 && rng.random_bool(0.25) {
            if rng.random_bool(0.5) {
                bag(rng, depth + 1)
            } else {
                json!([bag(rng, depth + 1), bag(rng, depth + 1)])
            }
        } else {
            scalar(rng)
        };
        map.insert(key.into(), value);
    }
    Value::Object(map)
}

fn event(rng: &mut StdRng) -> Value {
    let types = ["track", "identify", "page", "screen", "group", "alias"];
    let mut e = json!({"type": types[rng.random_range(0..types.len())], "messageId": "m"});
    if rng.random_bool(0.8) {
        e["event"] = json!(word(rng));
    }
    if rng.random_bool(0.5) {
        e["name"] = json!(word(rng));
    }
    match rng.random_range(0..4) {
        0 => {}
        1 => e["userId"] = json!(rng.random_range(0..3)),
        _ => e["userId"] = json!(["u1", "u2", "x"][rng.random_range(0..3)]),
    }
    for field in ["properties", "traits", "context"] {
        if rng.random_bool(0.85) {
            e[field] = bag(rng, 0);
        }
    }
    e
}

// ---------------------------------------------------------------------------------------
// Random FQL over the whole grammar.

fn fql_field(rng: &mut StdRng) -> String {
    let paths = [
        "total",
        "price",
        "coupon",
        "tags",
        "plan",
        "email",
        "version",
        "nested.total",
        "items[0].price",
        "items.0",
        "tags.length",
        "nested.items[1].plan",
        "0",
    ];
    match rng.random_range(0..7) {
        0 => "type".into(),
        1 => "event".into(),
        2 => "name".into(),
        3 => "userId".into(),
        4 => format!("properties.{}", paths[rng.random_range(0..paths.len())]),
        5 => format!("traits.{}", paths[rng.random_range(0..paths.len())]),
        _ => format!("context.{}", paths[rng.random_range(0..paths.len())]),
    }
}

fn fql_value(rng: &mut StdRng) -> String {
    match rng.random_range(0..10) {
        0 => "null".into(),
        1 => "true".into(),
        2 => "false".into(),
        3 => rng.random_range(-3..40).to_string(),
        4 => format!("{}", rng.random_range(-100..100) as f64 / 4.0),
        5 => format!("'{}'", word(rng).replace('\'', "")),
        _ => format!("{:?}", word(rng)),
    }
}

fn fql_term(rng: &mut StdRng) -> String {
    if rng.random_bool(0.2) {
        let negate = if rng.random_bool(0.3) { "!" } else { "" };
        let field = fql_field(rng);
        let w = word(rng);
        let call = match rng.random_range(0..3) {
            0 => format!("contains({field}, {w:?})"),
            1 => format!("match({field}, \"{w}*\")"),
            _ => format!("match({field}, \"*{w}\")"),
        };
        return format!("{negate}{call}");
    }
    let ops = ["=", "!=", "<", "<=", ">", ">="];
    format!(
        "{} {} {}",
        fql_field(rng),
        ops[rng.random_range(0..ops.len())],
        fql_value(rng)
    )
}

fn fql_expression(rng: &mut StdRng) -> String {
    let conditional = |rng: &mut StdRng| {
        if rng.random_bool(0.5) {
            " and "
        } else {
            " or "
        }
    };
    let mut out = String::new();
    for i in 0..rng.random_range(1..5) {
        if i > 0 {
            out.push_str(conditional(rng));
        }
        if rng.random_bool(0.2) {
            let mut group = fql_term(rng);
            for _ in 0..rng.random_range(1..3) {
                group.push_str(conditional(rng));
                group.push_str(&fql_term(rng));
            }
            out.push_str(&format!("({group})"));
        } else {
            out.push_str(&fql_term(rng));
        }
    }
    out
}

/// Compares webhookd's verdicts with the oracle's: a refusal with a refusal, a verdict
/// with a verdict, a throw with a throw.
/// Returns how many expressions both accepted, and how many verdicts (and of them, matches)
/// were compared.
fn compare_fql(expressions: &[String], events: &[Value]) -> (usize, usize, usize) {
    let answers = oracle(
        "fql-oracle.js",
        &json!({"expressions": expressions, "events": events}),
    );
    let (mut accepted, mut compared, mut matched) = (0, 0, 0);
    for (fql, answer) in expressions.iter().zip(answers.as_array().unwrap()) {
        let ours = Fql::parse(fql);
        if answer["error"] == true {
            assert!(
                ours.is_err(),
                "the reference refuses {fql:?}; webhookd accepts it"
            );
            continue;
        }
        let ours = ours
            .unwrap_or_else(|e| panic!("the reference accepts {fql:?}; webhookd refuses it: {e}"));
        accepted += 1;
        for (event, verdict) in events.iter().zip(answer["verdicts"].as_array().unwrap()) {
            let mine = match ours.evaluate(event) {
                Ok(v) => Value::Bool(v),
                Err(_) => json!("throws"),
            };
            assert_eq!(mine, *verdict, "{fql:?} on {event}");
            compared += 1;
            matched += usize::from(mine == Value::Bool(true));
        }
    }
    (accepted, compared, matched)
}

#[test]
fn triggers_select_what_segment_selects() {
    if !installed("@segment/destination-subscriptions") {
        return;
    }
    let mut rng = StdRng::seed_from_u64(20_261_129);
    let events: Vec<Value> = (0..60).map(|_| event(&mut rng)).collect();
    let table: Vec<String> = [
        r#"type = "track""#,
        r#"type = "track" and event = "Order Completed""#,
        r#"event = "Order Completed" or event = "Signed Up""#,
        r#"properties.total > 10"#,
        r#"properties.total <= 10 and properties.total >= 0"#,
        r#"properties.total = 0"#,
        r#"properties.total != 0"#,
        r#"properties.coupon = null"#,
        r#"properties.coupon != null"#,
        r#"properties.plan = true"#,
        r#"traits.email = false"#,
        r#"userId = null"#,
        r#"userId != null"#,
        r#"userId = 1"#,
        r#"name != null"#,
        r#"contains(event, "Order")"#,
        r#"!contains(event, "Order")"#,
        r#"match(event, "Order*")"#,
        r#"match(event, "*Completed")"#,
        r#"!match(properties.coupon, "SPR*")"#,
        r#"context.version = "2.1""#,
        r#"properties.tags.length > 1"#,
        r#"properties.items[0].price > 0"#,
        r#"(type = "track" or type = "page") and userId = "u1""#,
        r#"type = "track" and (event = "a" or event = "Order")"#,
        r#"type = 'track'"#,
        r#"!(type = "track")"#,
        r#"type = "page" and type = "track" or event = "a""#,
        r#"event = null"#,
        r#"properties.total > "5""#,
        r#"properties.total = "10""#,
        r#"properties.constructor != null"#,
        r#"foo = 1 and type = "track""#,
        "type",
        r#"event<5"#,
        r#"type = "track"#,
        r#"((type = "track"))"#,
        r#"() or type = "track""#,
        r#"type = "track" or ()"#,
        r#"(contains(type, "x") or type = "track")"#,
        r#"type !="track""#,
        r#"an"#,
        r#"properties.x = -"#,
        r#"properties.x = 1..2"#,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    compare_fql(&table, &events);
}

#[test]
fn generated_triggers_select_what_segment_selects() {
    if !installed("@segment/destination-subscriptions") {
        return;
    }
    let mut rng = StdRng::seed_from_u64(20_261_130);
    let events: Vec<Value> = (0..2_000).map(|_| event(&mut rng)).collect();
    let expressions: Vec<String> = (0..260).map(|_| fql_expression(&mut rng)).collect();
    let (accepted, compared, matched) = compare_fql(&expressions, &events);
    eprintln!(
        "fql oracle: {} expressions refused by both; {accepted} accepted × {} events: \
         {compared} verdicts ({matched} matches) equal to @segment/destination-subscriptions",
        expressions.len() - accepted,
        events.len()
    );
    assert!(accepted >= 200, "only {accepted} expressions accepted");
}

// ---------------------------------------------------------------------------------------
// Random mappings.

fn json_path(rng: &mut StdRng) -> String {
    let paths = [
        "$.userId",
        "$.event",
        "$.type",
        "$.properties.total",
        "$.properties.coupon",
        "$.properties.nested.total",
        "$.properties.items[0].price",
        "$.properties.items.1",
        "$.properties.tags[0]",
        "$.traits.email",
        "$.context.version",
        "$.properties",
        "$.missing.deep",
        "properties.plan",
        "$.properties['coupon']",
        "$.properties.tags.length",
    ];
    paths[rng.random_range(0..paths.len())].to_string()
}

fn mapping_value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..if depth > 2 { 4 } else { 10 }) {
        0 => json!({"@path": json_path(rng)}),
        1 => {
            let p1 = json_path(rng).replace("$.", "");
            let p2 = json_path(rng).replace("$.", "");
            json!({"@template": format!("{{{{{p1}}}}}-{{{{ {p2} }}}} x{{{{{{{p1}}}}}}}")})
        }
        2 => scalar(rng),
        3 => json!(word(rng)),
        4 => json!({"@literal": mapping_value(rng, depth + 1)}),
        5 => {
            let key = if rng.random_bool(0.5) {
                "exists"
            } else {
                "blank"
            };
            let mut opts = json!({ key: {"@path": json_path(rng)} });
            if rng.random_bool(0.8) {
                opts["then"] = mapping_value(rng, depth + 1);
            }
            if rng.random_bool(0.7) {
                opts["else"] = mapping_value(rng, depth + 1);
            }
            json!({ "@if": opts })
        }
        6 => {
            let shape = json!({"v": {"@path": "$.price"}, "p": {"@path": "$.plan"}, "k": "x"});
            let root = [
                "$.properties.items",
                "$.properties.nested",
                "$.properties.tags",
                "$.missing",
            ][rng.random_range(0..4)];
            if rng.random_bool(0.8) {
                json!({"@arrayPath": [root, shape]})
            } else {
                json!({"@arrayPath": [root]})
            }
        }
        7 => json!([mapping_value(rng, depth + 1), mapping_value(rng, depth + 1)]),
        _ => {
            let mut map = serde_json::Map::new();
            for i in 0..rng.random_range(1..4) {
                map.insert(format!("k{i}"), mapping_value(rng, depth + 1));
            }
            Value::Object(map)
        }
    }
}

fn mapping(rng: &mut StdRng) -> Value {
    let mut map = serde_json::Map::new();
    for i in 0..rng.random_range(1..6) {
        map.insert(format!("f{i}"), mapping_value(rng, 0));
    }
    // Now and then something the reference refuses.
    if rng.random_bool(0.05) {
        map.insert("bad".into(), json!({"@path": 3}));
    }
    if rng.random_bool(0.03) {
        map.insert("unknown".into(), json!({"@nope": "$.x"}));
    }
    Value::Object(map)
}

/// Returns how many mappings both accepted and how many bodies were compared.
fn compare_mappings(mappings: &[Value], events: &[Value]) -> (usize, usize) {
    let answers = oracle(
        "mapping-oracle.js",
        &json!({"mappings": mappings, "events": events}),
    );
    let (mut accepted, mut compared) = (0, 0);
    for (m, answer) in mappings.iter().zip(answers.as_array().unwrap()) {
        let ours = Mapping::new(m.clone());
        if answer["invalid"] == true {
            assert!(
                ours.is_err(),
                "the reference refuses {m}; webhookd accepts it"
            );
            continue;
        }
        let ours = ours.unwrap_or_else(|e| panic!("the reference accepts {m}; webhookd: {e}"));
        accepted += 1;
        for (event, result) in events.iter().zip(answer["results"].as_array().unwrap()) {
            match (ours.apply(event), result.get("ok")) {
                (Ok(body), Some(Value::String(expected))) => {
                    assert_eq!(&to_canonical_json(&body), expected, "{m} on {event}")
                }
                (Err(_), None) => {}
                (ours, theirs) => panic!("{m} on {event}: webhookd {ours:?}, reference {theirs:?}"),
            }
            compared += 1;
        }
    }
    (accepted, compared)
}

#[test]
fn mappings_give_what_segment_gives() {
    if !installed("@segment/actions-core") {
        return;
    }
    let mut rng = StdRng::seed_from_u64(7);
    let events: Vec<Value> = (0..40).map(|_| event(&mut rng)).collect();
    let table = vec![
        json!({"order_id": {"@path": "$.properties.coupon"}, "total": {"@path": "$.properties.total"}}),
        json!({"email": {"@template": "{{traits.email}}"}, "hi": {"@template": "Hi {{ userId }}, {{{event}}}!"}}),
        json!({"all": {"@path": "$.properties"}, "lit": {"@literal": {"a": {"@path": "$.type"}}}}),
        json!({"c": {"@if": {"exists": {"@path": "$.properties.coupon"}, "then": "yes", "else": "no"}}}),
        json!({"b": {"@if": {"blank": {"@path": "$.properties.total"}, "then": {"@path": "$.properties.total"}}}}),
        json!({"items": {"@arrayPath": ["$.properties.items", {"price": {"@path": "$.price"}}]}}),
        json!({"raw": {"@arrayPath": ["$.properties.tags"]}}),
        json!({"deep": [{"@path": "$.nowhere"}, {"x": {"@path": "$.nowhere"}}]}),
        json!({"len": {"@path": "$.properties.tags.length"}, "q": {"@path": "$.properties['coupon']"}}),
        json!({"@path": "$.properties"}),
        json!({"bad": {"@path": 3}}),
        json!({"two": {"@path": "$.a", "@template": "x"}}),
        json!({"mixed": {"@path": "$.a", "other": 1}}),
        json!({"unsupported": {"@case": {"operator": "lower", "value": "A"}}}),
        json!({"nested": {"@path": {"@path": "$.properties.coupon"}}}),
        json!({"ifbad": {"@if": {"then": 1}}}),
    ];
    compare_mappings(&table[..13], &events);
    // webhookd refuses the directives it does not carry; the reference has them.
    assert!(Mapping::new(table[13].clone()).is_err());
    compare_mappings(&table[14..], &events);
}

#[test]
fn generated_mappings_give_what_segment_gives() {
    if !installed("@segment/actions-core") {
        return;
    }
    let mut rng = StdRng::seed_from_u64(29_112_026);
    let events: Vec<Value> = (0..500).map(|_| event(&mut rng)).collect();
    let mappings: Vec<Value> = (0..60).map(|_| mapping(&mut rng)).collect();
    let (accepted, compared) = compare_mappings(&mappings, &events);
    eprintln!(
        "mapping oracle: {} mappings refused by both; {accepted} accepted × {} events: \
         {compared} bodies equal to @segment/actions-core's transform",
        mappings.len() - accepted,
        events.len()
    );
    assert!(accepted >= 50, "only {accepted} mappings accepted");
}
