//! One Segment event: validation of what a client sent, and the enrichment Segment's
//! tracking API performs before an event is stored (`messageId`, `receivedAt`,
//! `timestamp` with clock-skew correction, `context.ip`, `version`).

use chrono::{DateTime, Datelike, Utc};
use serde_json::{Map, Value};

use super::canonical::to_canonical_json;
use super::time::{format_iso8601, parse_iso8601};

/// Segment's limit on `messageId`.
pub const MAX_MESSAGE_ID_CHARS: usize = 100;

/// The six event types of Segment's spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Identify,
    Track,
    Page,
    Screen,
    Group,
    Alias,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        EventType::Identify,
        EventType::Track,
        EventType::Page,
        EventType::Screen,
        EventType::Group,
        EventType::Alias,
    ];

    pub fn from_name(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Identify => "identify",
            EventType::Track => "track",
            EventType::Page => "page",
            EventType::Screen => "screen",
            EventType::Group => "group",
            EventType::Alias => "alias",
        }
    }

    /// Fields this type needs besides `userId`/`anonymousId`.
    fn required_fields(self) -> &'static [&'static str] {
        match self {
            EventType::Track => &["event"],
            EventType::Group => &["groupId"],
            EventType::Alias => &["previousId", "userId"],
            _ => &[],
        }
    }
}

/// Why an event was refused; the text names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("event must be a JSON object")]
    NotAnObject,
    #[error("event is not valid JSON: {0}")]
    Malformed(String),
    #[error("`type` must be one of identify, track, page, screen, group, alias")]
    UnknownType,
    #[error("`userId` or `anonymousId` is required")]
    MissingIdentity,
    #[error("`{field}` is required for {event_type} events")]
    MissingField {
        field: &'static str,
        event_type: &'static str,
    },
    #[error("`{field}` must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("`{field}` is not an ISO 8601 date-time")]
    BadTimestamp { field: &'static str },
    #[error("`{field}` is outside years 0000-9999")]
    TimestampOutOfRange { field: &'static str },
    #[error("`messageId` has {chars} characters; at most {MAX_MESSAGE_ID_CHARS} are allowed")]
    MessageIdTooLong { chars: usize },
    #[error("event is {bytes} bytes; at most {limit} are allowed")]
    TooLarge { bytes: usize, limit: usize },
    #[error("event is over {limit} bytes once enriched (with the batch's `context` and `integrations` merged in); at most {limit} are allowed")]
    TooLargeStored { limit: usize },
    #[error("the request would store more than {limit} bytes in all; send fewer or smaller events per request")]
    RequestTooLarge { limit: usize },
}

/// What the server knows about the request an event came in.
#[derive(Debug, Clone)]
pub struct RequestFacts<'a> {
    /// When the request arrived: the event's `receivedAt`.
    pub received_at: DateTime<Utc>,
    /// The client's address, for `context.ip` when the client did not set it.
    pub client_ip: Option<&'a str>,
    /// A batch's own `sentAt`, for items that carry none.
    pub batch_sent_at: Option<&'a Value>,
    /// The largest event that may be stored, in bytes of its canonical body.
    pub max_event_bytes: usize,
}

/// A validated, enriched event ready to store.
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    pub event_type: EventType,
    pub message_id: String,
    /// The `messageId` was made here: it cannot repeat an earlier one.
    pub message_id_generated: bool,
    /// `userId` as text (numbers written as JavaScript would), for deletion requests.
    pub user_id: Option<String>,
    /// The event's `integrations` (after the batch's were merged in): which destinations
    /// the client wants it sent to.
    pub integrations: Map<String, Value>,
    /// The canonical JSON body sent to webhooks.
    pub body: String,
}

/// Whether an event with these `integrations` goes to the destination called `name`
/// there, as Segment decides: `"<name>": false` says no; `true` or an options object
/// says yes; otherwise it goes unless `"All": false`. Names are case-sensitive.
pub fn integration_enabled(integrations: &Map<String, Value>, name: &str) -> bool {
    match integrations.get(name) {
        Some(Value::Bool(enabled)) => *enabled,
        Some(Value::Object(_)) => true,
        _ => integrations.get("All") != Some(&Value::Bool(false)),
    }
}

/// Validates `event` as an event of type `event_type` and enriches it as Segment does.
pub fn prepare(
    mut event: Map<String, Value>,
    event_type: EventType,
    facts: &RequestFacts<'_>,
) -> Result<PreparedEvent, EventError> {
    // The write key is a credential, never part of the event.
    event.remove("writeKey");
    event.insert("type".into(), Value::String(event_type.as_str().into()));

    let user_id = identity(&event, "userId")?;
    let anonymous_id = identity(&event, "anonymousId")?;
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(EventError::MissingIdentity);
    }
    for &field in event_type.required_fields() {
        if field == "userId" || field == "anonymousId" {
            if identity(&event, field)?.is_none() {
                return Err(missing(field, event_type));
            }
            continue;
        }
        match event.get(field) {
            None | Some(Value::Null) => return Err(missing(field, event_type)),
            Some(Value::String(s)) if s.is_empty() => return Err(missing(field, event_type)),
            Some(Value::String(_)) => {}
            Some(Value::Number(_)) if field != "event" => {}
            Some(_) => {
                return Err(EventError::WrongType {
                    field,
                    expected: "a string",
                })
            }
        }
    }
    if let Some(context) = event.get("context") {
        if !context.is_object() && !context.is_null() {
            return Err(EventError::WrongType {
                field: "context",
                expected: "an object",
            });
        }
    }

    let mut message_id_generated = false;
    let message_id = match event.get("messageId") {
        None | Some(Value::Null) => {
            // Time-ordered, so that storing it appends to the message index.
            let id = format!("api-{}", uuid::Uuid::now_v7());
            message_id_generated = true;
            event.insert("messageId".into(), Value::String(id.clone()));
            id
        }
        Some(Value::String(id)) if id.is_empty() => {
            return Err(EventError::WrongType {
                field: "messageId",
                expected: "a non-empty string",
            })
        }
        Some(Value::String(id)) => {
            let chars = id.chars().count();
            if chars > MAX_MESSAGE_ID_CHARS {
                return Err(EventError::MessageIdTooLong { chars });
            }
            id.clone()
        }
        Some(_) => {
            return Err(EventError::WrongType {
                field: "messageId",
                expected: "a string",
            })
        }
    };

    enrich_times(&mut event, facts)?;
    if let Some(ip) = facts.client_ip {
        let context = event
            .entry("context")
            .or_insert_with(|| Value::Object(Map::new()));
        if context.is_null() {
            *context = Value::Object(Map::new());
        }
        if let Value::Object(context) = context {
            context
                .entry("ip")
                .or_insert_with(|| Value::String(ip.to_string()));
        }
    }
    event.insert("version".into(), Value::from(1));

    let integrations = match event.get("integrations") {
        Some(Value::Object(integrations)) => integrations.clone(),
        _ => Map::new(),
    };
    // The limit holds for the event as stored, whatever was merged into it or added.
    let body = to_canonical_json(&Value::Object(event));
    if body.len() > facts.max_event_bytes {
        return Err(EventError::TooLargeStored {
            limit: facts.max_event_bytes,
        });
    }
    Ok(PreparedEvent {
        event_type,
        message_id,
        message_id_generated,
        user_id,
        integrations,
        body,
    })
}

/// `receivedAt`, and `timestamp` corrected for the client's clock skew: when the client
/// said when it sent the event (`sentAt`), the event happened
/// `sentAt - timestamp` before it was received.
fn enrich_times(
    event: &mut Map<String, Value>,
    facts: &RequestFacts<'_>,
) -> Result<(), EventError> {
    let received_at = facts.received_at;
    let timestamp = optional_time(event.get("timestamp"), "timestamp")?;
    let own_sent_at = event.get("sentAt").filter(|v| !v.is_null());
    let sent_at_value = own_sent_at.or(facts.batch_sent_at.filter(|v| !v.is_null()));
    let sent_at = optional_time(sent_at_value, "sentAt")?;
    if own_sent_at.is_none() {
        if let Some(value) = sent_at_value {
            event.insert("sentAt".into(), value.clone());
        }
    }

    let received_text = format_iso8601(received_at);
    match (timestamp, sent_at) {
        (Some(original), Some(sent)) => {
            let original_text = event.get("timestamp").cloned().unwrap_or(Value::Null);
            event.insert("originalTimestamp".into(), original_text);
            // Both are within years 0000-9999, so the skew fits; the corrected time may not.
            let corrected = received_at
                .checked_sub_signed(sent - original)
                .filter(in_year_range)
                .ok_or(EventError::TimestampOutOfRange { field: "timestamp" })?;
            event.insert("timestamp".into(), Value::String(format_iso8601(corrected)));
        }
        (Some(_), None) => {}
        (None, _) => {
            event.insert("timestamp".into(), Value::String(received_text.clone()));
        }
    }
    event.insert("receivedAt".into(), Value::String(received_text));
    Ok(())
}

fn optional_time(
    value: Option<&Value>,
    field: &'static str,
) -> Result<Option<DateTime<Utc>>, EventError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => {
            let time = parse_iso8601(text).ok_or(EventError::BadTimestamp { field })?;
            if !in_year_range(&time) {
                return Err(EventError::TimestampOutOfRange { field });
            }
            Ok(Some(time))
        }
        Some(_) => Err(EventError::BadTimestamp { field }),
    }
}

/// Years 0000-9999: what ISO 8601 writes without an expanded year, and what JavaScript's
/// `Date` and every receiver can read back.
fn in_year_range(time: &DateTime<Utc>) -> bool {
    (0..=9999).contains(&time.year())
}

/// `userId` / `anonymousId`: a non-empty string or a number; absent, null and "" count as
/// not given.
fn identity(event: &Map<String, Value>, field: &'static str) -> Result<Option<String>, EventError> {
    match event.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(to_canonical_json(&Value::Number(n.clone())))),
        Some(_) => Err(EventError::WrongType {
            field,
            expected: "a string",
        }),
    }
}

fn missing(field: &'static str, event_type: EventType) -> EventError {
    EventError::MissingField {
        field,
        event_type: event_type.as_str(),
    }
}

/// A batch's own `context` and `integrations`, which go under each item's own: the
/// item's keys win, as with JavaScript's `{...batch.context, ...item.context}`.
///
/// Each entry's size in the stored event is known before any item is merged, so an item
/// whose merged event must exceed a limit is refused without copying anything into it:
/// a small request cannot make the server build thousands of large events.
#[derive(Debug, Default)]
pub struct BatchDefaults {
    /// `context`, then `integrations`: each entry with its size as stored (key and value).
    objects: Vec<(&'static str, Map<String, Value>, Vec<usize>)>,
}

impl BatchDefaults {
    /// The defaults of a batch envelope (its fields other than `batch`).
    pub fn from_envelope(envelope: &Map<String, Value>) -> BatchDefaults {
        let objects = ["context", "integrations"]
            .into_iter()
            .filter_map(|key| match envelope.get(key) {
                Some(Value::Object(defaults)) => {
                    let sizes = defaults
                        .iter()
                        .map(|(k, v)| {
                            // "key":value, — both as the canonical body writes them.
                            to_canonical_json(&Value::String(k.clone())).len()
                                + to_canonical_json(v).len()
                                + 2
                        })
                        .collect();
                    Some((key, defaults.clone(), sizes))
                }
                _ => None,
            })
            .collect();
        BatchDefaults { objects }
    }

    /// Bytes that merging adds to `item` at the least: the defaults it does not override.
    pub fn added_bytes_at_least(&self, item: &Map<String, Value>) -> usize {
        self.objects
            .iter()
            .map(|(key, defaults, sizes)| match item.get(*key) {
                None | Some(Value::Null) => sizes.iter().sum(),
                Some(Value::Object(own)) => defaults
                    .keys()
                    .zip(sizes)
                    .filter(|(k, _)| !own.contains_key(*k))
                    .map(|(_, size)| size)
                    .sum(),
                // A non-object of the item's own is not merged (validation reports it).
                Some(_) => 0,
            })
            .sum()
    }

    /// Puts the defaults under `item`'s own `context` and `integrations`.
    pub fn merge_into(&self, item: &mut Map<String, Value>) {
        for (key, defaults, _) in &self.objects {
            match item.get_mut(*key) {
                Some(Value::Object(own)) => {
                    let mut merged = defaults.clone();
                    for (k, v) in std::mem::take(own) {
                        merged.insert(k, v);
                    }
                    *own = merged;
                }
                None | Some(Value::Null) => {
                    item.insert((*key).into(), Value::Object(defaults.clone()));
                }
                Some(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts() -> RequestFacts<'static> {
        RequestFacts {
            received_at: parse_iso8601("2024-05-01T12:00:10.000Z").unwrap(),
            client_ip: Some("10.1.2.3"),
            batch_sent_at: None,
            max_event_bytes: 32_768,
        }
    }

    fn object(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn body(e: &PreparedEvent) -> Value {
        serde_json::from_str(&e.body).unwrap()
    }

    #[test]
    fn sent_at_corrects_the_client_clock() {
        let e = prepare(
            object(
                json!({"userId": "u", "event": "E", "timestamp": "2024-05-01T11:59:00.000Z",
                "sentAt": "2024-05-01T11:59:05.000Z"}),
            ),
            EventType::Track,
            &facts(),
        )
        .unwrap();
        let b = body(&e);
        assert_eq!(b["originalTimestamp"], "2024-05-01T11:59:00.000Z");
        assert_eq!(b["timestamp"], "2024-05-01T12:00:05.000Z");
        assert_eq!(b["receivedAt"], "2024-05-01T12:00:10.000Z");
        assert_eq!(b["context"]["ip"], "10.1.2.3");
        assert_eq!(b["version"], 1);
        assert!(e.message_id.starts_with("api-"));
    }

    #[test]
    fn without_sent_at_the_timestamp_is_kept_or_set_to_received_at() {
        let kept = prepare(
            object(json!({"anonymousId": "a", "timestamp": "2020-01-01T00:00:00Z"})),
            EventType::Page,
            &facts(),
        )
        .unwrap();
        assert_eq!(body(&kept)["timestamp"], "2020-01-01T00:00:00Z");
        assert!(body(&kept).get("originalTimestamp").is_none());
        let set = prepare(
            object(json!({"anonymousId": "a"})),
            EventType::Page,
            &facts(),
        )
        .unwrap();
        assert_eq!(body(&set)["timestamp"], "2024-05-01T12:00:10.000Z");
    }

    #[test]
    fn the_client_ip_and_write_key_are_handled() {
        let e = prepare(
            object(json!({"userId": "u", "writeKey": "secret", "context": {"ip": "1.1.1.1"}})),
            EventType::Identify,
            &facts(),
        )
        .unwrap();
        assert_eq!(body(&e)["context"]["ip"], "1.1.1.1");
        assert!(!e.body.contains("secret"));
    }

    #[test]
    fn each_type_names_its_missing_field() {
        let cases = [
            (
                json!({"event": "E"}),
                EventType::Track,
                "`userId` or `anonymousId` is required",
            ),
            (
                json!({"userId": "u"}),
                EventType::Track,
                "`event` is required for track events",
            ),
            (
                json!({"userId": "u"}),
                EventType::Group,
                "`groupId` is required for group events",
            ),
            (
                json!({"anonymousId": "a", "previousId": "p"}),
                EventType::Alias,
                "`userId` is required for alias events",
            ),
            (
                json!({"userId": "u"}),
                EventType::Alias,
                "`previousId` is required for alias events",
            ),
            (
                json!({"userId": "u", "timestamp": "noon"}),
                EventType::Page,
                "`timestamp` is not an ISO 8601 date-time",
            ),
            (
                json!({"userId": ["u"]}),
                EventType::Page,
                "`userId` must be a string",
            ),
            (
                json!({"userId": "u", "messageId": "x".repeat(101)}),
                EventType::Page,
                "`messageId` has 101 characters; at most 100 are allowed",
            ),
            (
                json!({"userId": "u", "context": "web"}),
                EventType::Page,
                "`context` must be an object",
            ),
        ];
        for (event, event_type, message) in cases {
            let err = prepare(object(event.clone()), event_type, &facts()).unwrap_err();
            assert_eq!(err.to_string(), message, "{event}");
        }
    }

    #[test]
    fn integrations_flags_decide_as_segment_does() {
        let cases = [
            (json!({}), true),
            (json!({"All": false}), false),
            (json!({"Webhooks": false}), false),
            (json!({"All": false, "Webhooks": true}), true),
            (json!({"All": false, "Webhooks": {"opt": 1}}), true),
            (json!({"All": true, "Webhooks": false}), false),
            (json!({"webhooks": false}), true),
            (json!({"All": false, "webhooks": true}), false),
            (json!({"Webhooks": "yes"}), true),
        ];
        for (integrations, expected) in cases {
            assert_eq!(
                integration_enabled(integrations.as_object().unwrap(), "Webhooks"),
                expected,
                "{integrations}"
            );
        }
    }

    #[test]
    fn batch_context_goes_under_the_items_own() {
        let mut item = object(json!({"context": {"a": 1, "b": 2}}));
        let batch = object(json!({"context": {"b": 9, "c": 3}, "integrations": {"All": false}}));
        let defaults = BatchDefaults::from_envelope(&batch);
        // "c":3, and "All":false, are added; "b" is the item's own.
        assert_eq!(defaults.added_bytes_at_least(&item), 6 + 12);
        defaults.merge_into(&mut item);
        assert_eq!(
            to_canonical_json(&Value::Object(item)),
            r#"{"context":{"b":2,"c":3,"a":1},"integrations":{"All":false}}"#
        );
    }
}
