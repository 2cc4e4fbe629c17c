//! Just enough of JavaScript's semantics over JSON values to give the answers Segment's
//! own libraries give: property access (`a && a[key]`, as their path getters reduce),
//! `typeof`, `Number(...)` and `String(...)`. Segment's subscription filters and
//! mappings run in JavaScript; a Rust reimplementation that agrees with them has to
//! agree on these details too (a string's `length`, a falsy value stopping a path, a
//! prototype method counting as "exists").

use serde_json::Value;

/// A JavaScript value reached from a JSON document.
#[derive(Debug, Clone, PartialEq)]
pub enum Js<'a> {
    Undefined,
    /// A value of the document itself.
    Json(&'a Value),
    /// A number made on the way (a string's or an array's `length`).
    Number(f64),
    /// A string made on the way (one UTF-16 unit of a string, by index).
    String(String),
    /// A method inherited from a prototype (`toString`, `constructor`, ...): exists,
    /// is truthy, is neither string nor number.
    Function,
}

/// Members every object inherits from `Object.prototype`.
const OBJECT_MEMBERS: &[&str] = &[
    "constructor",
    "__proto__",
    "__defineGetter__",
    "__defineSetter__",
    "__lookupGetter__",
    "__lookupSetter__",
    "hasOwnProperty",
    "isPrototypeOf",
    "propertyIsEnumerable",
    "toLocaleString",
    "toString",
    "valueOf",
];

/// Array.prototype's methods (besides the Object ones).
const ARRAY_METHODS: &[&str] = &[
    "at",
    "concat",
    "copyWithin",
    "entries",
    "every",
    "fill",
    "filter",
    "find",
    "findIndex",
    "findLast",
    "findLastIndex",
    "flat",
    "flatMap",
    "forEach",
    "includes",
    "indexOf",
    "join",
    "keys",
    "lastIndexOf",
    "map",
    "pop",
    "push",
    "reduce",
    "reduceRight",
    "reverse",
    "shift",
    "slice",
    "some",
    "sort",
    "splice",
    "toReversed",
    "toSorted",
    "toSpliced",
    "unshift",
    "values",
    "with",
];

/// String.prototype's methods (besides the Object ones).
const STRING_METHODS: &[&str] = &[
    "anchor",
    "at",
    "big",
    "blink",
    "bold",
    "charAt",
    "charCodeAt",
    "codePointAt",
    "concat",
    "endsWith",
    "fixed",
    "fontcolor",
    "fontsize",
    "includes",
    "indexOf",
    "isWellFormed",
    "italics",
    "lastIndexOf",
    "link",
    "localeCompare",
    "match",
    "matchAll",
    "normalize",
    "padEnd",
    "padStart",
    "repeat",
    "replace",
    "replaceAll",
    "search",
    "slice",
    "small",
    "split",
    "startsWith",
    "strike",
    "sub",
    "substr",
    "substring",
    "sup",
    "toLocaleLowerCase",
    "toLocaleUpperCase",
    "toLowerCase",
    "toUpperCase",
    "toWellFormed",
    "trim",
    "trimEnd",
    "trimLeft",
    "trimRight",
    "trimStart",
];

/// Number.prototype's and Boolean.prototype's methods (besides the Object ones).
const NUMBER_METHODS: &[&str] = &["toExponential", "toFixed", "toPrecision"];

impl<'a> Js<'a> {
    pub fn of(value: Option<&'a Value>) -> Js<'a> {
        value.map_or(Js::Undefined, Js::Json)
    }

    /// JavaScript truthiness.
    pub fn truthy(&self) -> bool {
        match self {
            Js::Undefined => false,
            Js::Json(Value::Null) => false,
            Js::Json(Value::Bool(b)) => *b,
            Js::Json(Value::Number(n)) => {
                let f = number_value(n);
                f != 0.0 && !f.is_nan()
            }
            Js::Json(Value::String(s)) => !s.is_empty(),
            Js::Json(_) => true,
            Js::Number(f) => *f != 0.0 && !f.is_nan(),
            Js::String(s) => !s.is_empty(),
            Js::Function => true,
        }
    }

    /// `value[key]` as JavaScript reads it (`undefined` when absent).
    pub fn member(&self, key: &str) -> Js<'a> {
        let inherited = |methods: &[&str]| {
            if OBJECT_MEMBERS.contains(&key) || methods.contains(&key) {
                Js::Function
            } else {
                Js::Undefined
            }
        };
        match self {
            Js::Json(Value::Object(map)) => match map.get(key) {
                Some(v) => Js::Json(v),
                None => inherited(&[]),
            },
            Js::Json(Value::Array(items)) => {
                if key == "length" {
                    return Js::Number(items.len() as f64);
                }
                match array_index(key) {
                    Some(i) => items.get(i).map_or(Js::Undefined, Js::Json),
                    None => inherited(ARRAY_METHODS),
                }
            }
            Js::Json(Value::String(s)) => string_member(s, key, inherited),
            Js::String(s) => string_member(s, key, inherited),
            Js::Json(Value::Number(_)) | Js::Number(_) | Js::Json(Value::Bool(_)) => {
                inherited(NUMBER_METHODS)
            }
            // Reading a member of undefined or null throws in JavaScript; the getters
            // that call this stop at a falsy value before.
            Js::Undefined | Js::Json(Value::Null) => Js::Undefined,
            Js::Function => Js::Undefined,
        }
    }

    /// `typeof value === "string"`: the string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Js::Json(Value::String(s)) => Some(s),
            Js::String(s) => Some(s),
            _ => None,
        }
    }

    /// `typeof value === "number"`: the number.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Js::Json(Value::Number(n)) => Some(number_value(n)),
            Js::Number(f) => Some(*f),
            _ => None,
        }
    }

    /// `value !== undefined && value !== null`.
    pub fn exists(&self) -> bool {
        !matches!(self, Js::Undefined | Js::Json(Value::Null))
    }

    /// The value as JSON, when it is one (a made-up number or string becomes one;
    /// `undefined` and functions do not).
    pub fn to_json(&self) -> Option<Value> {
        match self {
            Js::Undefined | Js::Function => None,
            Js::Json(v) => Some((*v).clone()),
            Js::Number(f) => Some(number_to_json(*f)),
            Js::String(s) => Some(Value::String(s.clone())),
        }
    }
}

fn string_member<'a>(s: &str, key: &str, inherited: impl Fn(&[&str]) -> Js<'a>) -> Js<'a> {
    if key == "length" {
        return Js::Number(s.encode_utf16().count() as f64);
    }
    match array_index(key) {
        Some(i) => s.encode_utf16().nth(i).map_or(Js::Undefined, |unit| {
            Js::String(String::from_utf16_lossy(&[unit]))
        }),
        None => inherited(STRING_METHODS),
    }
}

/// `key` as an array index: a canonical decimal integer ("0", "12"; not "01" or "1.0").
fn array_index(key: &str) -> Option<usize> {
    let canonical = !key.is_empty()
        && key.bytes().all(|b| b.is_ascii_digit())
        && (key == "0" || !key.starts_with('0'));
    if canonical {
        key.parse().ok()
    } else {
        None
    }
}

/// A JSON number as JavaScript holds it: a double.
pub fn number_value(n: &serde_json::Number) -> f64 {
    if let Some(u) = n.as_u64() {
        u as f64
    } else if let Some(i) = n.as_i64() {
        i as f64
    } else {
        n.as_f64().unwrap_or(f64::NAN)
    }
}

/// A double as a JSON number (non-finite ones as `null`, as `JSON.stringify` writes them).
pub fn number_to_json(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// `String(number)`: ECMAScript's Number::toString.
pub fn number_to_string(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        ryu_js::Buffer::new().format_finite(f).to_string()
    }
}

/// `Number(string)`: ECMAScript's StringToNumber (whitespace trimmed; "" is 0; decimal,
/// `0x`/`0o`/`0b` integers, `Infinity`; anything else is NaN).
pub fn string_to_number(s: &str) -> f64 {
    let t = s.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if t.is_empty() {
        return 0.0;
    }
    for (prefix, radix) in [
        ("0x", 16),
        ("0X", 16),
        ("0o", 8),
        ("0O", 8),
        ("0b", 2),
        ("0B", 2),
    ] {
        if let Some(digits) = t.strip_prefix(prefix) {
            if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
                return f64::NAN;
            }
            return digits.chars().fold(0.0, |acc, c| {
                acc * radix as f64 + c.to_digit(radix).unwrap_or(0) as f64
            });
        }
    }
    let unsigned = t.strip_prefix(['+', '-']).unwrap_or(t);
    if unsigned == "Infinity" {
        return if t.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
    }
    // A StrDecimalLiteral: digits, an optional fraction, an optional exponent; Rust's
    // parser also takes "inf" and "nan", which JavaScript does not.
    let valid = unsigned
        .bytes()
        .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
        && unsigned.bytes().any(|b| b.is_ascii_digit());
    if !valid {
        return f64::NAN;
    }
    t.parse().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_are_read_as_javascript_reads_them() {
        let doc = json!({"s": "héllo", "a": [1, 2], "o": {"k": 0}});
        let root = Js::Json(&doc);
        assert_eq!(root.member("s").member("length"), Js::Number(5.0));
        assert_eq!(root.member("s").member("1"), Js::String("é".into()));
        assert_eq!(root.member("a").member("length"), Js::Number(2.0));
        assert_eq!(root.member("a").member("01"), Js::Undefined);
        assert_eq!(root.member("o").member("constructor"), Js::Function);
        assert!(root.member("o").member("k").exists());
        assert!(!root.member("o").member("k").truthy());
        assert_eq!(root.member("missing"), Js::Undefined);
    }

    #[test]
    fn numbers_convert_as_javascript_converts_them() {
        for (text, expected) in [
            ("", 0.0),
            ("  12 ", 12.0),
            ("0x10", 16.0),
            ("1e3", 1000.0),
            ("-.5", -0.5),
            ("+5", 5.0),
            ("-Infinity", f64::NEG_INFINITY),
        ] {
            assert_eq!(string_to_number(text), expected, "{text:?}");
        }
        for text in ["abc", "1_000", "inf", "nan", "0x", "1e", "--1"] {
            assert!(string_to_number(text).is_nan(), "{text:?}");
        }
        assert_eq!(number_to_string(1.0), "1");
        assert_eq!(number_to_string(-0.0), "0");
        assert_eq!(number_to_string(1e21), "1e+21");
        assert_eq!(number_to_string(f64::NAN), "NaN");
    }
}
