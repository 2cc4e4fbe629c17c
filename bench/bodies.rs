//! Request bodies for the load generator, each with fresh `messageId`s: random UUIDv4 as
//! Segment's Python and browser clients send them, or time-ordered UUIDv7 (`--ordered-ids`).
//! A body is a template cut at its id placeholders, so making one costs a few copies.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::web::Bytes;
use serde_json::{json, Value};

/// Stands where each `messageId` goes; as long as a UUID, so sizes are what is sent.
const PLACEHOLDER: &str = "@@@@@@@@-@@@@-@@@@-@@@@-@@@@@@@@@@@@";

/// Which ids the bodies carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ids {
    Random,
    Ordered,
}

/// Bodies to send: one of the templates in turn, with fresh ids.
#[derive(Clone)]
pub struct Body {
    templates: Arc<Vec<Vec<Bytes>>>,
    ids: Ids,
    next: Arc<AtomicUsize>,
}

impl Body {
    /// Every body is `value` (with `"messageId": PLACEHOLDER` where ids go), fresh ids.
    pub fn new(values: Vec<Value>, ids: Ids) -> Body {
        let templates = values
            .iter()
            .map(|v| {
                v.to_string()
                    .split(PLACEHOLDER)
                    .map(|part| Bytes::copy_from_slice(part.as_bytes()))
                    .collect()
            })
            .collect();
        Body {
            templates: Arc::new(templates),
            ids,
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The same bytes every time (the baseline posts these).
    pub fn fixed(value: Value) -> Body {
        Body::new(vec![value], Ids::Random)
    }

    /// Each template's parts (the ids go between them), and which ids: for a generator
    /// that makes bodies itself.
    pub fn templates(&self) -> (&[Vec<Bytes>], Ids) {
        (&self.templates, self.ids)
    }

    pub fn make(&self) -> Bytes {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.templates.len();
        let parts = &self.templates[i];
        if parts.len() == 1 {
            return parts[0].clone();
        }
        let mut out =
            Vec::with_capacity(parts.iter().map(Bytes::len).sum::<usize>() + 36 * parts.len());
        for (n, part) in parts.iter().enumerate() {
            if n > 0 {
                let id = match self.ids {
                    Ids::Random => uuid::Uuid::new_v4(),
                    Ids::Ordered => uuid::Uuid::now_v7(),
                };
                out.extend_from_slice(id.hyphenated().to_string().as_bytes());
            }
            out.extend_from_slice(part);
        }
        Bytes::from(out)
    }
}

/// One track event like those of a store front, with an id placeholder.
pub fn track_event(i: usize) -> Value {
    json!({"userId": format!("user-{i}"), "event": "Order Completed", "messageId": PLACEHOLDER,
        "properties": {"revenue": 39.95, "currency": "USD", "sku": format!("sku-{i}")},
        "context": {"library": {"name": "webhookd-bench"}}})
}

/// A track event of about `bytes` bytes (its `properties` padded).
pub fn sized_event(i: usize, bytes: usize) -> Value {
    let mut event = track_event(i);
    let base = event.to_string().len() + r#","note":"""#.len();
    event["properties"]["note"] = Value::String("x".repeat(bytes.saturating_sub(base)));
    event
}

/// `{"batch": [...]}` of `size` track events.
pub fn batch(size: usize) -> Value {
    let items: Vec<Value> = (0..size)
        .map(|i| {
            let mut event = track_event(i);
            event["type"] = json!("track");
            event
        })
        .collect();
    json!({ "batch": items })
}

/// Event sizes from 0.3 KB to 8 KB, most of them small, as track and identify events
/// vary: a geometric spread, so that the mean is about 1.6 KB.
pub const MIXED_SIZES: [usize; 10] = [300, 400, 550, 750, 1000, 1400, 2000, 2900, 4500, 8000];

/// Batches of `size` events whose sizes go through [`MIXED_SIZES`] (a few batch shapes
/// in turn, so that sizes fall differently within batches).
pub fn mixed_batches(size: usize) -> Vec<Value> {
    (0..4)
        .map(|shift| {
            let items: Vec<Value> = (0..size)
                .map(|i| {
                    let bytes = MIXED_SIZES[(i * 7 + shift) % MIXED_SIZES.len()];
                    let mut event = sized_event(i, bytes);
                    event["type"] = json!("track");
                    event
                })
                .collect();
            json!({ "batch": items })
        })
        .collect()
}
