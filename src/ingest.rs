//! Taking events in, whatever brought them: validate and enrich each one, choose the
//! destinations it goes to, store it with its deliveries, and tell the router. The HTTP
//! handlers only translate requests and answers around this.

use std::sync::Arc;

use actix::Addr;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::actors::router::{EventsStored, Router};
use crate::config::{SharedConfig, SourceConfig};
use crate::metrics::Metrics;
use crate::segment::{
    integration_enabled, prepare, BatchDefaults, EventError, EventType, PreparedEvent, RequestFacts,
};
use crate::store::{Appended, NewEvent, Store, StoreError};

/// What enrichment may add to one batch item (`messageId`, `receivedAt`, `timestamp`,
/// `originalTimestamp`, `sentAt`, `context.ip`, `version`), for the request's byte budget.
const ENRICHMENT_ALLOWANCE_BYTES: usize = 512;

/// Why events were not taken.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The event itself is wrong; nothing was stored.
    #[error(transparent)]
    Invalid(#[from] EventError),
    /// The store could not take them; nothing was acknowledged.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a request body is neither a batch nor an event; nothing in it is taken.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("body must be a JSON object")]
    NotAnObject,
    #[error("body is not valid JSON: {0}")]
    Malformed(String),
    #[error("`batch` is required: an array of events")]
    NoBatch,
    #[error("`batch` must be an array")]
    BatchNotAnArray,
}

/// Splits a batch body into its envelope (everything but `batch`, parsed) and its items,
/// each kept as the client wrote it: an item is measured as sent, then parsed once.
pub fn parse_batch(body: &[u8]) -> Result<(Map<String, Value>, Vec<&RawValue>), BodyError> {
    let fields: std::collections::HashMap<String, &RawValue> = match serde_json::from_slice(body) {
        Ok(fields) => fields,
        Err(e) if e.is_data() => return Err(BodyError::NotAnObject),
        Err(e) => return Err(BodyError::Malformed(e.to_string())),
    };
    let mut envelope = Map::new();
    let mut items = None;
    for (key, raw) in fields {
        if key == "batch" {
            items = Some(raw);
            continue;
        }
        let value =
            serde_json::from_str(raw.get()).map_err(|e| BodyError::Malformed(e.to_string()))?;
        envelope.insert(key, value);
    }
    let items = match items.map(|raw| raw.get()) {
        None | Some("null") => return Err(BodyError::NoBatch),
        Some(raw) => {
            serde_json::from_str::<Vec<&RawValue>>(raw).map_err(|_| BodyError::BatchNotAnArray)?
        }
    };
    Ok((envelope, items))
}

/// A single event's body: one JSON object.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, BodyError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(BodyError::NotAnObject),
        Err(e) => Err(BodyError::Malformed(e.to_string())),
    }
}

/// Validates and enriches each item of a batch on its own, with the envelope's defaults
/// merged in, within the bytes a request of `request_bytes` may store. Pure: no store,
/// no clock (the facts carry the time), so that it can be fuzzed.
pub fn prepare_batch(
    envelope: &Map<String, Value>,
    items: Vec<&RawValue>,
    facts: &RequestFacts<'_>,
    request_bytes: usize,
) -> (Vec<PreparedEvent>, Vec<Refused>) {
    let defaults = BatchDefaults::from_envelope(envelope);
    let mut budget = StoreBudget::new(batch_store_budget(request_bytes, items.len()));
    let mut accepted = Vec::with_capacity(items.len());
    let mut refused = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match prepare_batch_item(item, &defaults, facts, &mut budget) {
            Ok(event) => accepted.push(event),
            Err(error) => refused.push(Refused { index, error }),
        }
    }
    (accepted, refused)
}

/// The bytes of canonical bodies a batch request may store: about its own size (twice,
/// for the escaping canonical JSON may add) plus what enrichment adds to each item. A
/// small request cannot make webhookd store a large one.
pub fn batch_store_budget(request_bytes: usize, items: usize) -> usize {
    2 * request_bytes + ENRICHMENT_ALLOWANCE_BYTES * items
}

/// A batch item that was refused, and why.
#[derive(Debug)]
pub struct Refused {
    pub index: usize,
    pub error: EventError,
}

/// One request's events: where they come from and when they arrived.
pub struct Arrival<'a> {
    pub source: &'a SourceConfig,
    pub received_at: DateTime<Utc>,
    /// The client's address, for `context.ip`.
    pub client_ip: Option<&'a str>,
}

pub struct IngestService {
    config: SharedConfig,
    store: Arc<dyn Store>,
    router: Addr<Router>,
    metrics: Arc<Metrics>,
}

impl IngestService {
    pub fn new(
        config: SharedConfig,
        store: Arc<dyn Store>,
        router: Addr<Router>,
        metrics: Arc<Metrics>,
    ) -> IngestService {
        IngestService {
            config,
            store,
            router,
            metrics,
        }
    }

    /// One event of `event_type`, stored before this returns.
    pub async fn accept_one(
        &self,
        arrival: &Arrival<'_>,
        event: Map<String, Value>,
        event_type: EventType,
    ) -> Result<(), IngestError> {
        let facts = RequestFacts {
            received_at: arrival.received_at,
            client_ip: arrival.client_ip,
            batch_sent_at: None,
            max_event_bytes: self.config.current().server.max_message_bytes,
        };
        let prepared = prepare(event, event_type, &facts).inspect_err(|_| {
            self.count_invalid(&arrival.source.name, 1);
        })?;
        self.store(arrival, vec![prepared]).await?;
        Ok(())
    }

    /// A batch: each item is taken or refused on its own; the taken ones are stored
    /// before this returns. `request_bytes` is the request's size, which bounds what it
    /// may store whatever its defaults would copy into each item.
    pub async fn accept_batch(
        &self,
        arrival: &Arrival<'_>,
        envelope: &Map<String, Value>,
        items: Vec<&RawValue>,
        request_bytes: usize,
    ) -> Result<Vec<Refused>, IngestError> {
        let facts = RequestFacts {
            received_at: arrival.received_at,
            client_ip: arrival.client_ip,
            batch_sent_at: envelope.get("sentAt"),
            max_event_bytes: self.config.current().server.max_message_bytes,
        };
        let (accepted, refused) = prepare_batch(envelope, items, &facts, request_bytes);
        if !refused.is_empty() {
            let source = &arrival.source.name;
            self.count_invalid(source, refused.len() as u64);
            log::info!(
                "source {source}: batch item(s) rejected: {} of {}",
                refused.len(),
                refused.len() + accepted.len()
            );
        }
        self.store(arrival, accepted).await?;
        Ok(refused)
    }

    /// Commits the accepted events, then tells the router they are there to deliver.
    async fn store(
        &self,
        arrival: &Arrival<'_>,
        events: Vec<PreparedEvent>,
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let source = arrival.source;
        let received_at_ms = arrival.received_at.timestamp_millis();
        let window_ms = self.config.current().server.dedupe_window_s as i64 * 1000;
        let types: Vec<&'static str> = events.iter().map(|e| e.event_type.as_str()).collect();
        let new_events: Vec<NewEvent> = events
            .into_iter()
            .map(|e| NewEvent {
                source: source.name.clone(),
                destinations: self.destinations_for(source, &e),
                message_id: e.message_id,
                // A messageId made here cannot repeat: no dedupe lookup.
                dedupe_since_ms: (!e.message_id_generated)
                    .then(|| received_at_ms.saturating_sub(window_ms)),
                user_id: e.user_id,
                event_type: e.event_type.as_str(),
                received_at_ms,
                body: e.body,
            })
            .collect();
        let destinations = NewEvent::destinations_of(&new_events);
        let outcomes = self.store.append(new_events).await.inspect_err(|e| {
            log::error!("source {}: events not stored: {e}", source.name);
        })?;
        let mut stored = false;
        for (outcome, event_type) in outcomes.iter().zip(types) {
            let counter = match outcome {
                Appended::Stored { .. } => {
                    stored = true;
                    self.metrics
                        .events_received
                        .with_label_values(&[&source.name, event_type])
                }
                Appended::Duplicate => self
                    .metrics
                    .events_rejected
                    .with_label_values(&[&source.name, "duplicate"]),
                Appended::Suppressed => self
                    .metrics
                    .events_rejected
                    .with_label_values(&[&source.name, "suppressed"]),
            };
            counter.inc();
        }
        // Only the events' destinations hear of them, and only if one was stored: a
        // message to the router wakes another thread, which cost a tenth of an HTTP
        // worker's time per event when sent for events that no destination takes.
        if stored && !destinations.is_empty() {
            let news = EventsStored {
                source: source.name.clone(),
                destinations,
            };
            // The events are committed; if the router is swamped, delivery actors still
            // find them in the store on their next poll.
            if self.router.try_send(news).is_err() {
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
    fn destinations_for(&self, source: &SourceConfig, event: &PreparedEvent) -> Vec<String> {
        // Parsed again only when a trigger needs to read it.
        let mut parsed: Option<Value> = None;
        let filtered = |destination: &str, reason: &str| {
            self.metrics
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
                    let body = parsed.get_or_insert_with(|| {
                        serde_json::from_str(&event.body).unwrap_or_default()
                    });
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
    pub fn count_invalid(&self, source: &str, count: u64) {
        self.metrics
            .events_rejected
            .with_label_values(&[source, "invalid"])
            .inc_by(count);
    }
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
