//! Canonical JSON: the bytes JavaScript's `JSON.stringify` writes for a parsed value.
//!
//! Receivers verify `X-Signature` with Segment's snippet, which signs
//! `JSON.stringify(req.body)`: the HMAC only matches when the body we send is byte for byte
//! what Node would write after `JSON.parse`. That fixes three things:
//! - numbers: every number is an IEEE double, written by ECMAScript's Number::toString
//!   (`1.0` → `1`, `1e21` → `1e+21`, `-0` → `0`, integers past 2^53 rounded);
//! - key order: integer-like keys ("array indices") first in ascending order, then the
//!   others in insertion order, as ECMAScript orders an object's own properties;
//! - strings: only `"`, `\` and control characters are escaped, with JSON.stringify's
//!   short escapes and lowercase `\u00xx`.

use serde_json::{Map, Value};

/// Writes `value` as `JSON.stringify(value)` would.
pub fn to_canonical_json(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_value(&mut out, value);
    out
}

/// Writes an object as `JSON.stringify(object)` would.
pub fn object_to_canonical_json(object: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(256);
    write_object(&mut out, object);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map),
    }
}

fn write_number(out: &mut String, n: &serde_json::Number) {
    // JavaScript holds every number as a double; converting here rounds exactly as
    // JSON.parse does (round to nearest, ties to even).
    let f = if let Some(u) = n.as_u64() {
        u as f64
    } else if let Some(i) = n.as_i64() {
        i as f64
    } else {
        n.as_f64().unwrap_or(f64::NAN)
    };
    if f.is_finite() {
        let mut buffer = ryu_js::Buffer::new();
        out.push_str(buffer.format_finite(f));
    } else {
        // JSON.stringify writes non-finite numbers as null.
        out.push_str("null");
    }
}

fn write_object(out: &mut String, map: &Map<String, Value>) {
    out.push('{');
    let mut first = true;
    let mut entry = |out: &mut String, key: &str, value: &Value| {
        if !first {
            out.push(',');
        }
        first = false;
        write_string(out, key);
        out.push(':');
        write_value(out, value);
    };
    let mut indices: Vec<(u32, &str, &Value)> = map
        .iter()
        .filter_map(|(k, v)| array_index(k).map(|i| (i, k.as_str(), v)))
        .collect();
    if indices.is_empty() {
        for (k, v) in map {
            entry(out, k, v);
        }
    } else {
        indices.sort_unstable_by_key(|(i, _, _)| *i);
        for (_, k, v) in &indices {
            entry(out, k, v);
        }
        for (k, v) in map.iter().filter(|(k, _)| array_index(k).is_none()) {
            entry(out, k, v);
        }
    }
    out.push('}');
}

/// ECMAScript's "array index": the canonical decimal form of an integer below 2^32 - 1.
fn array_index(key: &str) -> Option<u32> {
    let bytes = key.as_bytes();
    if bytes.is_empty() || bytes.len() > 10 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if bytes.len() > 1 && bytes[0] == b'0' {
        return None;
    }
    let n: u64 = key.parse().ok()?;
    (n < u64::from(u32::MAX)).then_some(n as u32)
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    let mut plain_from = 0;
    for (i, byte) in s.bytes().enumerate() {
        let escape: &str = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\x08' => "\\b",
            b'\x0c' => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[plain_from..i]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{byte:04x}"));
        } else {
            out.push_str(escape);
        }
        plain_from = i + 1;
    }
    out.push_str(&s[plain_from..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(json: &str) -> String {
        to_canonical_json(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn numbers_are_written_as_javascript_writes_them() {
        assert_eq!(
            canon("[1.0, -0, 0.0, 1e21, 1e-7, 123456789012345678901234567890]"),
            "[1,0,0,1e+21,1e-7,1.2345678901234568e+29]"
        );
        assert_eq!(
            canon("[9007199254740993, -9007199254740993, 0.1, 100, 1.5e300]"),
            "[9007199254740992,-9007199254740992,0.1,100,1.5e+300]"
        );
    }

    #[test]
    fn integer_like_keys_come_first_in_ascending_order() {
        assert_eq!(
            canon(r#"{"b":1,"10":2,"a":3,"2":4,"01":5,"4294967295":6,"4294967294":7}"#),
            r#"{"2":4,"10":2,"4294967294":7,"b":1,"a":3,"01":5,"4294967295":6}"#
        );
    }

    #[test]
    fn strings_escape_only_what_json_stringify_escapes() {
        assert_eq!(
            canon(r#""a\"b\\c\/d\u0001\u001f\b\f\n\r\t\u007f\u2028é😀""#),
            "\"a\\\"b\\\\c/d\\u0001\\u001f\\b\\f\\n\\r\\t\u{7f}\u{2028}é😀\""
        );
    }

    #[test]
    fn duplicate_keys_keep_the_first_position_and_the_last_value() {
        assert_eq!(canon(r#"{"a":1,"b":2,"a":3}"#), r#"{"a":3,"b":2}"#);
    }
}
