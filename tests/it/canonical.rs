//! The canonical body against real JavaScript: for every input, webhookd's bytes equal
//! Node's `JSON.stringify(JSON.parse(input))`.

use rand::{Rng, SeedableRng};
use serde_json::Value;
use webhookd::segment::to_canonical_json;

use crate::common::{node_available, run_node};

const NODE_STRINGIFY: &str = r#"
    const inputs = JSON.parse(require('fs').readFileSync(0, 'utf8'));
    console.log(JSON.stringify(inputs.map((text) => JSON.stringify(JSON.parse(text)))));
"#;

fn assert_same_as_node(inputs: &[String]) {
    let expected: Vec<String> = serde_json::from_str(&run_node(
        NODE_STRINGIFY,
        &serde_json::to_string(inputs).unwrap(),
    ))
    .unwrap();
    for (input, node) in inputs.iter().zip(expected) {
        let value: Value = serde_json::from_str(input).unwrap();
        assert_eq!(to_canonical_json(&value), node, "input: {input}");
    }
}

#[test]
fn awkward_inputs_match_json_stringify() {
    if !node_available() {
        return;
    }
    let inputs: Vec<String> = [
        r#"{"a": 1.0, "b": -0, "c": 1e21, "d": 1e-7, "e": 123e-20, "f": 0.1, "g": 5e-324, "h": 1.7976931348623157e308}"#,
        r#"[9007199254740993, -9007199254740993, 18446744073709551615, 123456789012345678901234567890, 2.5e+25]"#,
        r#"{"z": 1, "10": 2, "2": 3, "-1": 4, "01": 5, "4294967294": 6, "4294967295": 7, "1.5": 8, "": 9}"#,
        r#"{"s": "\u0000\u0001\u001f\u007f\u0080\u2028\u2029\"\\/\b\f\n\r\t", "e": "é漢字😀\ud83d\ude00"}"#,
        r#"{"a": 1, "b": 2, "a": 3}"#,
        r#"{"__proto__": {"x": 1}, "constructor": null, "toString": [true, false]}"#,
        r#"{"nested": {"deep": [[[{"k": [1, {"2": "two", "1": "one"}]}]]]}, "empty": {}, "list": []}"#,
        r#"[0, -1, 1e300, 1e-300, 0.000001, 0.0000001, 100000000000000000000, 1000000000000000000000]"#,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_same_as_node(&inputs);
}

/// Random JSON with the parts that trip writers up: integer-like and unicode keys, numbers
/// from the whole range of a double, control characters and astral characters.
fn random_value(rng: &mut impl Rng, depth: u32) -> String {
    let choice = if depth >= 4 {
        rng.random_range(0..4)
    } else {
        rng.random_range(0..6)
    };
    match choice {
        0 => random_number(rng),
        1 => random_string(rng),
        2 => ["true", "false", "null"][rng.random_range(0..3)].to_string(),
        3 => random_number(rng),
        4 => {
            let items: Vec<String> = (0..rng.random_range(0..5))
                .map(|_| random_value(rng, depth + 1))
                .collect();
            format!("[{}]", items.join(","))
        }
        _ => {
            let entries: Vec<String> = (0..rng.random_range(0..6))
                .map(|_| {
                    let key = if rng.random_bool(0.4) {
                        format!("\"{}\"", rng.random_range(0..20_000u32))
                    } else {
                        random_string(rng)
                    };
                    format!("{key}:{}", random_value(rng, depth + 1))
                })
                .collect();
            format!("{{{}}}", entries.join(","))
        }
    }
}

fn random_number(rng: &mut impl Rng) -> String {
    match rng.random_range(0..5) {
        0 => rng.random_range(-1_000_000i64..1_000_000).to_string(),
        1 => (rng.random::<u64>() >> rng.random_range(0..64)).to_string(),
        2 => format!(
            "{}e{}",
            rng.random_range(1..1000),
            rng.random_range(-330..300)
        ),
        3 => {
            let f = f64::from_bits(rng.random::<u64>());
            if f.is_finite() {
                format!("{f:e}")
            } else {
                "0.5".into()
            }
        }
        _ => format!(
            "{:.*}",
            rng.random_range(0..20),
            rng.random::<f64>() * 1000.0
        ),
    }
}

fn random_string(rng: &mut impl Rng) -> String {
    let alphabet = [
        'a', 'Z', '0', ' ', '"', '\\', '/', '\u{0}', '\u{1f}', '\u{7f}', 'é', '\u{2028}', '漢',
        '😀', '\n', '\t',
    ];
    let text: String = (0..rng.random_range(0..12))
        .map(|_| alphabet[rng.random_range(0..alphabet.len())])
        .collect();
    serde_json::to_string(&text).unwrap()
}

#[test]
fn random_inputs_match_json_stringify() {
    if !node_available() {
        return;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5e6_3e17);
    let inputs: Vec<String> = (0..2_000).map(|_| random_value(&mut rng, 0)).collect();
    assert_same_as_node(&inputs);
}
