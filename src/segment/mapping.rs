//! Segment's mapping-kit: the `data` of a Webhooks (Actions) mapping, a JSON template
//! whose directives pick values from the event: `{"order_id": {"@path":
//! "$.properties.order_id"}}`.
//!
//! The reference is `transform` of the npm package `@segment/actions-core`, and the port
//! keeps its answers: `@path` and `@arrayPath` take a path (`$.a.b`, `$.a[0]`, `a['b']`)
//! through values the way its `get` does (a falsy value stops the path); `@template`
//! fills `{{a.b}}` (and `{{{a.b}}}`) as its `render` does, writing values as JavaScript's
//! `String` would; `@if` tests `exists` (not undefined or null) or `blank` (also not
//! `''`, with JavaScript's loose `!=`); `@literal` resolves its value; undefined results
//! are left out of objects. A mapping is validated when the configuration loads, with the
//! reference's rules and messages; directives this port does not carry (`@case`,
//! `@replace`, `@json`, `@merge`, `@flatten`, `@transform`, `@excludeWhenNull`,
//! `@liquid`) are refused there by name.

use serde_json::Value;

use super::js::{number_to_string, number_value, Js};

/// A validated mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    template: Value,
}

/// Why a mapping is refused, with where (`/a/@if/then`), as the reference words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MappingError(String);

/// Directives this port evaluates.
const DIRECTIVES: &[&str] = &["@path", "@template", "@literal", "@if", "@arrayPath"];

impl Mapping {
    /// Validates `template` as the reference's `validate` does.
    pub fn new(template: Value) -> Result<Mapping, MappingError> {
        let mut problems = Vec::new();
        validate(&template, &mut Vec::new(), &mut problems);
        if problems.is_empty() {
            Ok(Mapping { template })
        } else {
            Err(MappingError(problems.join("; ")))
        }
    }

    /// The mapped body for `event`: the reference's `transform(mapping, event)`. It fails
    /// where the reference throws (a path that resolves to something not a string).
    pub fn apply(&self, event: &Value) -> Result<Value, MappingError> {
        resolve(&self.template, event)?
            .into_json()
            .ok_or_else(|| MappingError("the mapping gives nothing for this event".into()))
    }
}

// ---------------------------------------------------------------------------------------
// Validation (`validate.js`), for the directives carried.

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(o) if o.keys().any(|k| k.starts_with('@')) => "directive",
        Value::Object(_) => "object",
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn problem(problems: &mut Vec<String>, stack: &[String], message: String) {
    problems.push(format!("/{} {message}.", stack.join("/")));
}

fn validate(v: &Value, stack: &mut Vec<String>, problems: &mut Vec<String>) {
    match type_name(v) {
        "directive" => validate_directive(v, stack, problems),
        "object" => validate_object(v, stack, problems),
        _ => {}
    }
}

fn validate_object(v: &Value, stack: &mut Vec<String>, problems: &mut Vec<String>) {
    let Value::Object(map) = v else {
        let t = type_name(v);
        return problem(
            problems,
            stack,
            format!("should be an object but it is {} {t}", article(t)),
        );
    };
    if let Some(key) = map.keys().find(|k| k.starts_with('@')) {
        return problem(
            problems,
            stack,
            format!("shouldn't have directive (@-prefixed) keys but it has {key:?}"),
        );
    }
    for (k, value) in map {
        stack.push(k.clone());
        validate(value, stack, problems);
        stack.pop();
    }
}

fn validate_directive(v: &Value, stack: &mut Vec<String>, problems: &mut Vec<String>) {
    let Value::Object(map) = v else {
        let t = type_name(v);
        return problem(
            problems,
            stack,
            format!("should be a directive object but it is {} {t}", article(t)),
        );
    };
    let directives: Vec<&String> = map.keys().filter(|k| k.starts_with('@')).collect();
    if directives.len() > 1 {
        return problem(
            problems,
            stack,
            format!(
                "should only have one @-prefixed key but it has {} keys",
                directives.len()
            ),
        );
    }
    if map.keys().any(|k| !k.starts_with('@') && k != "_metadata") {
        return problem(
            problems,
            stack,
            format!(
                "should only have one @-prefixed key but it has {} keys",
                map.len()
            ),
        );
    }
    let name = directives[0].as_str();
    if !DIRECTIVES.contains(&name) {
        let known = [
            "@case",
            "@replace",
            "@json",
            "@merge",
            "@flatten",
            "@transform",
            "@excludeWhenNull",
            "@liquid",
        ];
        let why = if known.contains(&name) {
            format!("has a directive webhookd does not support: {name}")
        } else {
            format!("has an invalid directive: {name}")
        };
        return problem(problems, stack, why);
    }
    let value = &map[name];
    stack.push(name.to_string());
    match name {
        "@path" | "@template" => directive_or_string(value, stack, problems),
        "@literal" => directive_or_raw(value, stack, problems),
        "@if" => {
            if let Value::Object(opts) = value {
                if opts.keys().any(|k| k.starts_with('@')) {
                    let key = opts.keys().find(|k| k.starts_with('@')).cloned();
                    problem(
                        problems,
                        stack,
                        format!(
                            "shouldn't have directive (@-prefixed) keys but it has {:?}",
                            key.unwrap_or_default()
                        ),
                    );
                } else {
                    for field in ["exists", "then", "else"] {
                        if let Some(f) = opts.get(field) {
                            stack.push(field.into());
                            directive_or_raw(f, stack, problems);
                            stack.pop();
                        }
                    }
                    // The reference validates the nested values as plain ones too.
                    for (k, f) in opts {
                        stack.push(k.clone());
                        validate(f, stack, problems);
                        stack.pop();
                    }
                }
            } else {
                let t = type_name(value);
                problem(
                    problems,
                    stack,
                    format!("should be an object but it is {} {t}", article(t)),
                );
            }
        }
        "@arrayPath" => match value {
            Value::Array(items) => {
                let first = items.first().cloned().unwrap_or(Value::Null);
                directive_or_string(&first, stack, problems);
                if let Some(shape) = items.get(1) {
                    validate(shape, stack, problems);
                }
            }
            other => {
                let t = type_name(other);
                problem(
                    problems,
                    stack,
                    format!("should be an array but it is {} {t}", article(t)),
                );
            }
        },
        _ => {}
    }
    stack.pop();
}

fn directive_or_string(v: &Value, stack: &mut Vec<String>, problems: &mut Vec<String>) {
    match type_name(v) {
        "directive" => validate_directive(v, stack, problems),
        "string" => {}
        t => problem(
            problems,
            stack,
            format!(
                "should be a string or a mapping directive but it is {} {t}",
                article(t)
            ),
        ),
    }
}

fn directive_or_raw(v: &Value, stack: &mut Vec<String>, problems: &mut Vec<String>) {
    if type_name(v) == "directive" {
        validate_directive(v, stack, problems);
    }
}

// ---------------------------------------------------------------------------------------
// Evaluation (`index.js`).

/// A value made by resolving a mapping: JSON, or JavaScript's `undefined` (left out of
/// objects, `null` in arrays, as `JSON.stringify` writes them).
#[derive(Debug, Clone, PartialEq)]
enum Out {
    Undefined,
    Json(Value),
    Array(Vec<Out>),
    Object(Vec<(String, Out)>),
}

impl Out {
    fn of(js: Js<'_>) -> Out {
        js.to_json().map_or(Out::Undefined, Out::Json)
    }

    fn into_json(self) -> Option<Value> {
        match self {
            Out::Undefined => None,
            Out::Json(v) => Some(v),
            Out::Array(items) => Some(Value::Array(
                items
                    .into_iter()
                    .map(|i| i.into_json().unwrap_or(Value::Null))
                    .collect(),
            )),
            Out::Object(fields) => Some(Value::Object(
                fields
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, v.into_json()?)))
                    .collect(),
            )),
        }
    }

    /// As a `Js` value, to test and to read paths from.
    fn to_js_owned(&self) -> Option<Value> {
        self.clone().into_json()
    }
}

fn is_directive(v: &Value) -> bool {
    match v {
        Value::Object(map) => {
            map.keys().any(|k| k.starts_with('@'))
                && map.keys().all(|k| k.starts_with('@') || k == "_metadata")
        }
        _ => false,
    }
}

fn resolve(mapping: &Value, payload: &Value) -> Result<Out, MappingError> {
    Ok(match mapping {
        v if is_directive(v) => run_directive(v, payload)?,
        Value::Array(items) => Out::Array(
            items
                .iter()
                .map(|i| resolve(i, payload))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Out::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), resolve(v, payload)?)))
                .collect::<Result<_, MappingError>>()?,
        ),
        other => Out::Json(other.clone()),
    })
}

/// The JavaScript type name of a resolved value, as the reference's messages give it.
fn real_type(out: &Out) -> &'static str {
    match out {
        Out::Undefined => "undefined",
        Out::Array(_) => "array",
        Out::Object(_) => "object",
        Out::Json(v) => match type_name(v) {
            "directive" => "object",
            t => t,
        },
    }
}

/// A string directive's value, resolved: it must be a string.
fn resolved_string(name: &str, value: &Value, payload: &Value) -> Result<String, MappingError> {
    match resolve(value, payload)? {
        Out::Json(Value::String(s)) => Ok(s),
        other => Err(MappingError(format!(
            "{name}: expected string, got {}",
            real_type(&other)
        ))),
    }
}

fn run_directive(obj: &Value, payload: &Value) -> Result<Out, MappingError> {
    let Value::Object(map) = obj else {
        return Ok(Out::Undefined);
    };
    let Some((name, value)) = map.iter().find(|(k, _)| k.starts_with('@')) else {
        return Ok(Out::Undefined);
    };
    Ok(match name.as_str() {
        "@path" => {
            let path = resolved_string(name, value, payload)?;
            Out::of(get(payload, &path.replacen("$.", "", 1)))
        }
        "@template" => {
            let template = resolved_string(name, value, payload)?;
            Out::Json(Value::String(render(&template, payload)))
        }
        "@literal" => resolve(value, payload)?,
        "@if" => run_if(value, payload)?,
        "@arrayPath" => run_array_path(value, payload)?,
        other => return Err(MappingError(format!("{other} is not a valid directive"))),
    })
}

fn run_if(opts: &Value, payload: &Value) -> Result<Out, MappingError> {
    let Value::Object(opts) = opts else {
        return Err(MappingError(
            "@if requires an object with an \"exists\" key".into(),
        ));
    };
    let truthy = |key: &str| Js::of(opts.get(key)).truthy();
    if !truthy("exists") && !truthy("blank") {
        return Err(MappingError(
            "@if requires an \"exists\" key or a \"blank\" key".into(),
        ));
    }
    let resolved = |key: &str| match opts.get(key) {
        Some(v) => resolve(v, payload),
        None => Ok(Out::Undefined),
    };
    let condition = if opts.contains_key("exists") {
        resolved("exists")?
            .to_js_owned()
            .is_some_and(|v| !v.is_null())
    } else {
        match resolved("blank")?.to_js_owned() {
            None | Some(Value::Null) => false,
            Some(v) => !loosely_blank(&v),
        }
    };
    if condition && opts.contains_key("then") {
        resolved("then")
    } else if !condition && truthy("else") {
        resolved("else")
    } else {
        Ok(Out::Undefined)
    }
}

/// `value == ''` in JavaScript: the value, made a primitive, is `''` or `0`.
fn loosely_blank(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Number(n) => number_value(n) == 0.0,
        Value::Bool(b) => !b,
        Value::Array(_) => js_string(v).is_empty(),
        Value::Object(_) | Value::Null => false,
    }
}

fn run_array_path(data: &Value, payload: &Value) -> Result<Out, MappingError> {
    let Value::Array(items) = data else {
        return Err(MappingError(format!(
            "@arrayPath expected array, got {}",
            type_name(data)
        )));
    };
    let path = items.first().unwrap_or(&Value::Null);
    let shape = items.get(1);
    let root_owned;
    let root = match path {
        Value::String(p) => get(payload, &p.replacen("$.", "", 1)).to_json(),
        other => {
            root_owned = resolve(other, payload)?.into_json();
            root_owned
        }
    };
    let shaped = matches!(shape, Some(Value::Object(m)) if !m.is_empty());
    match (&root, shaped) {
        (Some(r @ (Value::Object(_) | Value::Array(_))), true) => {
            let shape = shape.expect("shaped");
            let items: Vec<Value> = match r {
                Value::Array(a) => a.clone(),
                single => vec![single.clone()],
            };
            Ok(Out::Array(
                items
                    .iter()
                    .map(|item| resolve(shape, item))
                    .collect::<Result<_, _>>()?,
            ))
        }
        _ => Ok(root.map_or(Out::Undefined, Out::Json)),
    }
}

/// `get(obj, path)` of `@segment/actions-core`: the path split at `.`, at `[` before a
/// quote or digit and at `]` after one; quotes removed; each step `prev && prev[key]`.
fn get<'a>(obj: &'a Value, path: &str) -> Js<'a> {
    if path.is_empty() || path == "." {
        return Js::Json(obj);
    }
    let chars: Vec<char> = path.chars().collect();
    let mut parts: Vec<String> = Vec::new();
    let mut current = String::new();
    let quote_or_digit =
        |c: Option<&char>| c.is_some_and(|c| *c == '"' || *c == '\'' || c.is_ascii_digit());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let splits = c == '.'
            || (c == '[' && quote_or_digit(chars.get(i + 1)))
            || (c == ']' && i > 0 && quote_or_digit(chars.get(i - 1)));
        if splits {
            parts.push(std::mem::take(&mut current));
            // `]+`: a run of closing brackets is one separator.
            if c == ']' {
                while chars.get(i + 1) == Some(&']') {
                    i += 1;
                }
            }
        } else {
            current.push(c);
        }
        i += 1;
    }
    parts.push(current);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(|p| p.replace(['\'', '"'], ""))
        .fold(Js::Json(obj), |prev, key| {
            if prev.truthy() {
                prev.member(&key)
            } else {
                prev
            }
        })
}

/// `render` of `@segment/actions-core`: `{{{path}}}`, then `{{path}}`, each replaced by
/// the value at the trimmed path, or `''` when undefined or null.
fn render(template: &str, payload: &Value) -> String {
    let first = replace_placeholders(template, 3, payload);
    replace_placeholders(&first, 2, payload)
}

fn replace_placeholders(text: &str, braces: usize, payload: &Value) -> String {
    let open = "{".repeat(braces);
    let close = "}".repeat(braces);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + braces..];
        // `[^}]+` then the closing braces.
        let inner_len = after.find('}').unwrap_or(after.len());
        if inner_len > 0 && after[inner_len..].starts_with(&close) {
            out.push_str(&rest[..start]);
            let value = get(payload, after[..inner_len].trim());
            out.push_str(&placeholder_text(&value));
            rest = &after[inner_len + braces..];
        } else {
            out.push_str(&rest[..start + 1]);
            rest = &rest[start + 1..];
        }
    }
    out.push_str(rest);
    out
}

/// `String(value ?? '')`.
fn placeholder_text(value: &Js<'_>) -> String {
    match value {
        Js::Undefined | Js::Json(Value::Null) => String::new(),
        Js::Json(v) => js_string(v),
        Js::Number(f) => number_to_string(*f),
        Js::String(s) => s.clone(),
        // A prototype method, written as JavaScript writes a native function.
        Js::Function => "function () { [native code] }".into(),
    }
}

/// `String(value)` for a JSON value.
fn js_string(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number_to_string(number_value(n)),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::Null => String::new(),
                other => js_string(other),
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(_) => "[object Object]".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(mapping: Value, event: Value) -> Value {
        Mapping::new(mapping).unwrap().apply(&event).unwrap()
    }

    #[test]
    fn directives_resolve_as_the_reference_does() {
        let event = json!({"userId": "u1", "properties": {"order_id": "o-7", "total": 30,
            "items": [{"sku": "a", "qty": 2}, {"sku": "b"}], "empty": ""},
            "traits": {"email": "a@example.com"}});
        let mapping = json!({
            "order_id": {"@path": "$.properties.order_id"},
            "first_sku": {"@path": "$.properties.items[0].sku"},
            "email": {"@template": "{{traits.email}}"},
            "greeting": {"@template": "Hi {{ userId }}, {{properties.total}} {{missing}}!"},
            "kept": {"@literal": {"a": [1, {"@path": "$.userId"}]}},
            "maybe": {"@if": {"exists": {"@path": "$.properties.coupon"}, "then": "yes", "else": "no"}},
            "blank": {"@if": {"blank": {"@path": "$.properties.empty"}, "then": "set", "else": "blank"}},
            "skus": {"@arrayPath": ["$.properties.items", {"id": {"@path": "$.sku"}, "n": {"@path": "$.qty"}}]},
            "gone": {"@path": "$.nowhere"},
            "nested": {"deep": [{"@path": "$.nowhere"}, 1]},
        });
        assert_eq!(
            apply(mapping, event),
            json!({
                "order_id": "o-7", "first_sku": "a", "email": "a@example.com",
                "greeting": "Hi u1, 30 !", "kept": {"a": [1, "u1"]}, "maybe": "no",
                "blank": "blank", "skus": [{"id": "a", "n": 2}, {"id": "b"}],
                "nested": {"deep": [null, 1]}
            })
        );
    }

    #[test]
    fn bad_mappings_are_refused_with_where_and_why() {
        let cases = [
            (
                json!({"a": {"@nope": 1}}),
                "/a has an invalid directive: @nope.",
            ),
            (
                json!({"a": {"@case": {}}}),
                "/a has a directive webhookd does not support: @case.",
            ),
            (
                json!({"a": {"@path": 3}}),
                "/a/@path should be a string or a mapping directive but it is a number.",
            ),
            (
                json!({"a": {"@path": "x", "b": 1}}),
                "/a should only have one @-prefixed key but it has 2 keys.",
            ),
            (
                json!({"a": {"@arrayPath": "x"}}),
                "/a/@arrayPath should be an array but it is a string.",
            ),
        ];
        for (mapping, message) in cases {
            assert_eq!(
                Mapping::new(mapping.clone()).unwrap_err().to_string(),
                message,
                "{mapping}"
            );
        }
    }
}
