//! The ingest endpoints, compatible with Segment's HTTP Tracking API: `/v1/identify`,
//! `/v1/track`, `/v1/page`, `/v1/screen`, `/v1/group`, `/v1/alias` and `/v1/batch`.
//!
//! A request is answered 200 only after every event it carried that was accepted has
//! been committed to the store, together with its pending deliveries.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use chrono::Utc;
use std::collections::HashMap;

use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::body::read_json_body;
use super::{ApiError, ApiState};
use crate::actors::router::EventsStored;
use crate::config::{Config, SourceConfig};
use crate::segment::{
    integration_enabled, prepare, BatchDefaults, EventError, EventType, PreparedEvent, RequestFacts,
};
use crate::store::{Appended, NewEvent, StoreError};

/// Segment's limit on events in one batch request.
pub const MAX_BATCH_EVENTS: usize = 2_500;
/// What enrichment may add to one batch item (`messageId`, `receivedAt`, `timestamp`,
/// `originalTimestamp`, `sentAt`, `context.ip`, `version`), for the request's byte budget.
const ENRICHMENT_ALLOWANCE_BYTES: usize = 512;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/batch", web::post().to(batch))
        .route("/v1/{event_type}", web::post().to(single));
}

/// One event; its type comes from the path.
async fn single(
    req: HttpRequest,
    event_type: web::Path<String>,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let event_type = EventType::from_name(&event_type).ok_or_else(|| {
        ApiError::NotFound(format!("no endpoint POST /v1/{}", event_type.as_str()))
    })?;
    let config = state.config.current();
    let header_source = source_from_header(&req, &config)?;
    let limit = config.server.max_message_bytes;
    let body = read_json_body(&req, payload, limit).await?;
    let event = parse_object(&body)?;
    let source = match header_source {
        Some(source) => source,
        None => source_from_body(&event, &config)?,
    };
    let client_ip = client_ip(&req);
    let facts = RequestFacts {
        received_at: Utc::now(),
        client_ip: client_ip.as_deref(),
        batch_sent_at: None,
        max_event_bytes: limit,
    };
    let prepared = prepare(event, event_type, &facts).map_err(|e| {
        reject(&state, &source.name, 1);
        match e {
            EventError::TooLargeStored { .. } => ApiError::PayloadTooLarge(e.to_string()),
            _ => ApiError::BadRequest(e.to_string()),
        }
    })?;
    store_events(
        &state,
        source,
        vec![prepared],
        facts.received_at.timestamp_millis(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({"success": true})))
}

/// `{"batch": [...], "context": {...}, "integrations": {...}, "sentAt": "..."}`: each item
/// is accepted or rejected on its own.
async fn batch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let config = state.config.current();
    let header_source = source_from_header(&req, &config)?;
    let server = &config.server;
    let body = read_json_body(&req, payload, server.max_batch_bytes).await?;
    let (envelope, items) = parse_batch(&body)?;
    let source = match header_source {
        Some(source) => source,
        None => source_from_body(&envelope, &config)?,
    };
    if items.len() > MAX_BATCH_EVENTS {
        return Err(ApiError::PayloadTooLarge(format!(
            "`batch` has {} events; at most {MAX_BATCH_EVENTS} are allowed",
            items.len()
        )));
    }
    let client_ip = client_ip(&req);
    let facts = RequestFacts {
        received_at: Utc::now(),
        client_ip: client_ip.as_deref(),
        batch_sent_at: envelope.get("sentAt"),
        max_event_bytes: server.max_message_bytes,
    };
    let defaults = BatchDefaults::from_envelope(&envelope);
    // No request stores much more than its own size, whatever its defaults would copy.
    let mut budget = StoreBudget::new(2 * body.len() + ENRICHMENT_ALLOWANCE_BYTES * items.len());

    let mut accepted = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match prepare_batch_item(item, &defaults, &facts, &mut budget) {
            Ok(event) => accepted.push(event),
            Err(e) => rejected.push(json!({"index": index, "error": e.to_string()})),
        }
    }
    if !rejected.is_empty() {
        reject(&state, &source.name, rejected.len() as u64);
        log::info!(
            "source {}: batch item(s) rejected: {} of {}",
            source.name,
            rejected.len(),
            rejected.len() + accepted.len()
        );
    }
    store_events(
        &state,
        source,
        accepted,
        facts.received_at.timestamp_millis(),
    )
    .await?;
    if rejected.is_empty() {
        Ok(HttpResponse::Ok().json(json!({"success": true})))
    } else {
        Ok(HttpResponse::Ok().json(json!({"success": true, "rejected": rejected})))
    }
}

/// Splits a batch body into its envelope (everything but `batch`, parsed) and its items,
/// each kept as the client wrote it: an item is measured as sent, then parsed once.
fn parse_batch(body: &[u8]) -> Result<(Map<String, Value>, Vec<&RawValue>), ApiError> {
    let fields: HashMap<String, &RawValue> = match serde_json::from_slice(body) {
        Ok(fields) => fields,
        Err(e) if e.is_data() => {
            return Err(ApiError::BadRequest("body must be a JSON object".into()))
        }
        Err(e) => return Err(ApiError::BadRequest(format!("body is not valid JSON: {e}"))),
    };
    let mut envelope = Map::new();
    let mut items = None;
    for (key, raw) in fields {
        if key == "batch" {
            items = Some(raw);
            continue;
        }
        let value = serde_json::from_str(raw.get())
            .map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))?;
        envelope.insert(key.to_string(), value);
    }
    let items = match items.map(|raw| raw.get()) {
        None | Some("null") => {
            return Err(ApiError::BadRequest(
                "`batch` is required: an array of events".into(),
            ))
        }
        Some(raw) => serde_json::from_str::<Vec<&RawValue>>(raw)
            .map_err(|_| ApiError::BadRequest("`batch` must be an array".into()))?,
    };
    Ok((envelope, items))
}

/// What a batch request may still store, in bytes of canonical bodies.
struct StoreBudget {
    total: usize,
    left: usize,
}

impl StoreBudget {
    fn new(total: usize) -> StoreBudget {
        StoreBudget { total, left: total }
    }

    fn refuse_over(&self, bytes: usize) -> Result<(), EventError> {
        if bytes > self.left {
            return Err(EventError::RequestTooLarge { limit: self.total });
        }
        Ok(())
    }
}

fn prepare_batch_item(
    item: &RawValue,
    defaults: &BatchDefaults,
    facts: &RequestFacts<'_>,
    budget: &mut StoreBudget,
) -> Result<PreparedEvent, EventError> {
    let limit = facts.max_event_bytes;
    // Measured as the client wrote the event, before anything is parsed.
    let bytes = item.get().len();
    if bytes > limit {
        return Err(EventError::TooLarge { bytes, limit });
    }
    let mut item = match serde_json::from_str::<Value>(item.get()) {
        Ok(Value::Object(item)) => item,
        Ok(_) => return Err(EventError::NotAnObject),
        Err(e) => return Err(EventError::Malformed(e.to_string())),
    };
    let event_type = item
        .get("type")
        .and_then(Value::as_str)
        .and_then(EventType::from_name)
        .ok_or(EventError::UnknownType)?;
    // Refused before the defaults are copied in when they alone would break a limit.
    let added = defaults.added_bytes_at_least(&item);
    if added > limit {
        return Err(EventError::TooLargeStored { limit });
    }
    budget.refuse_over(added)?;
    defaults.merge_into(&mut item);
    let event = prepare(item, event_type, facts)?;
    budget.refuse_over(event.body.len())?;
    budget.left -= event.body.len();
    Ok(event)
}

/// Commits the accepted events, then tells the router they are there to deliver.
async fn store_events(
    state: &ApiState,
    source: &SourceConfig,
    events: Vec<PreparedEvent>,
    received_at_ms: i64,
) -> Result<(), ApiError> {
    if events.is_empty() {
        return Ok(());
    }
    let types: Vec<&'static str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let new_events = events
        .into_iter()
        .map(|e| NewEvent {
            source: source.name.clone(),
            destinations: destinations_for(state, source, &e),
            message_id: e.message_id,
            // A messageId made here cannot repeat: no dedupe lookup.
            dedupe_since_ms: (!e.message_id_generated).then(|| {
                let window_ms = state.config.current().server.dedupe_window_s as i64 * 1000;
                received_at_ms.saturating_sub(window_ms)
            }),
            user_id: e.user_id,
            event_type: e.event_type.as_str(),
            received_at_ms,
            body: e.body,
        })
        .collect();
    let outcomes = state.store.append(new_events).await.map_err(|e| {
        log::error!("source {}: events not stored: {e}", source.name);
        match e {
            StoreError::Full => {
                ApiError::Unavailable("the store is out of space; retry later".into())
            }
            _ => ApiError::Unavailable("the store is unavailable; retry later".into()),
        }
    })?;
    let mut event_ids = Vec::with_capacity(outcomes.len());
    for (outcome, event_type) in outcomes.iter().zip(types) {
        let counter = match outcome {
            Appended::Stored { event_id } => {
                event_ids.push(*event_id);
                state
                    .metrics
                    .events_received
                    .with_label_values(&[&source.name, event_type])
            }
            Appended::Duplicate => state
                .metrics
                .events_rejected
                .with_label_values(&[&source.name, "duplicate"]),
            Appended::Suppressed => state
                .metrics
                .events_rejected
                .with_label_values(&[&source.name, "suppressed"]),
        };
        counter.inc();
    }
    if !event_ids.is_empty() {
        let stored = EventsStored {
            source: source.name.clone(),
            event_ids,
        };
        // The events are committed; if the router is swamped, delivery actors still find
        // them in the store on their next poll.
        if state.router.try_send(stored).is_err() {
            log::warn!(
                "source {}: router busy; delivery starts on the next poll",
                source.name
            );
        }
    }
    Ok(())
}

/// The destinations `event` is delivered to: the source's enabled ones that its
/// `integrations` flags do not turn away and whose trigger (`subscribe`) it matches.
/// Those turned away are counted, by reason.
fn destinations_for(state: &ApiState, source: &SourceConfig, event: &PreparedEvent) -> Vec<String> {
    // Parsed again only when a trigger needs to read it.
    let mut parsed: Option<serde_json::Value> = None;
    let filtered = |destination: &str, reason: &str| {
        state
            .metrics
            .events_filtered
            .with_label_values(&[&source.name, destination, reason])
            .inc();
    };
    source
        .enabled_destinations()
        .filter(|d| {
            if !integration_enabled(&event.integrations, &d.integration_name) {
                filtered(&d.name, "integrations");
                return false;
            }
            if let Some(trigger) = &d.trigger {
                let body = parsed
                    .get_or_insert_with(|| serde_json::from_str(&event.body).unwrap_or_default());
                if !trigger.matches(body) {
                    filtered(&d.name, "subscribe");
                    return false;
                }
            }
            true
        })
        .map(|d| d.name.clone())
        .collect()
}

/// Counts events refused for what they hold.
fn reject(state: &ApiState, source: &str, count: u64) {
    state
        .metrics
        .events_rejected
        .with_label_values(&[source, "invalid"])
        .inc_by(count);
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ApiError::BadRequest("body must be a JSON object".into())),
        Err(e) => Err(ApiError::BadRequest(format!("body is not valid JSON: {e}"))),
    }
}

/// The source named by HTTP Basic auth (write key as user name), if the header is there.
fn source_from_header<'a>(
    req: &HttpRequest,
    config: &'a Config,
) -> Result<Option<&'a SourceConfig>, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::Unauthorized(
            "Authorization must be Basic auth with the write key as user name".into(),
        )
    };
    let value = value.to_str().map_err(|_| invalid())?;
    let (scheme, encoded) = value.trim().split_once(' ').ok_or_else(invalid)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(invalid());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| invalid())?;
    let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
    let write_key = decoded
        .split_once(':')
        .map_or(decoded.as_str(), |(user, _)| user);
    source_by_key(config, write_key).map(Some)
}

/// The source named by the body's `writeKey`.
fn source_from_body<'a>(
    body: &Map<String, Value>,
    config: &'a Config,
) -> Result<&'a SourceConfig, ApiError> {
    match body.get("writeKey") {
        Some(Value::String(key)) => source_by_key(config, key),
        Some(_) => Err(ApiError::Unauthorized("`writeKey` must be a string".into())),
        None => Err(ApiError::Unauthorized(
            "a write key is required: Basic auth or `writeKey` in the body".into(),
        )),
    }
}

fn source_by_key<'a>(config: &'a Config, key: &str) -> Result<&'a SourceConfig, ApiError> {
    if key.is_empty() {
        return Err(ApiError::Unauthorized("the write key is empty".into()));
    }
    config
        .source_by_write_key(key)
        .ok_or_else(|| ApiError::Unauthorized("unknown write key".into()))
}

fn client_ip(req: &HttpRequest) -> Option<String> {
    req.peer_addr().map(|addr| addr.ip().to_string())
}
