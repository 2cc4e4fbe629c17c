//! What must hold for any request body ingest is given, checked by the coverage-guided
//! fuzz target (`fuzz/`) and by the test that replays its corpus. Not part of the service.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::ingest::{batch_store_budget, parse_batch, parse_object, prepare_batch};
use crate::segment::{prepare, to_canonical_json, EventType, PreparedEvent, RequestFacts};

/// The event limit the checks run with (the default `server.max_message_bytes`).
const MAX_EVENT_BYTES: usize = 32_768;

/// Runs `body` through ingest's parsing, validation and enrichment as `/v1/batch` and as
/// `/v1/track` would; panics if anything it stores breaks a rule: an event over the
/// limit, a batch storing more than its budget, a body that is not canonical JSON of an
/// object carrying its own `messageId` and `type`. Errors are fine: any input may be
/// refused, none may panic.
pub fn ingest_body(body: &[u8]) {
    let received_at = DateTime::<Utc>::from_timestamp(1_767_225_600, 0).expect("a valid time");
    let facts = RequestFacts {
        received_at,
        client_ip: Some("203.0.113.9"),
        batch_sent_at: None,
        max_event_bytes: MAX_EVENT_BYTES,
    };
    if let Ok((envelope, items)) = parse_batch(body) {
        let facts = RequestFacts {
            batch_sent_at: envelope.get("sentAt"),
            ..facts.clone()
        };
        let count = items.len();
        let (accepted, refused) = prepare_batch(&envelope, items, &facts, body.len());
        assert_eq!(accepted.len() + refused.len(), count, "every item answered");
        let stored: usize = accepted.iter().map(|e| e.body.len()).sum();
        assert!(
            stored <= batch_store_budget(body.len(), count),
            "a batch of {} bytes stored {stored}",
            body.len()
        );
        for event in &accepted {
            check_stored(event);
        }
    }
    if let Ok(object) = parse_object(body) {
        for event_type in [EventType::Track, EventType::Identify] {
            if let Ok(event) = prepare(object.clone(), event_type, &facts) {
                check_stored(&event);
            }
        }
    }
}

fn check_stored(event: &PreparedEvent) {
    assert!(
        event.body.len() <= MAX_EVENT_BYTES,
        "stored an event of {} bytes",
        event.body.len()
    );
    let parsed: Value = serde_json::from_str(&event.body).expect("a stored body is JSON");
    assert_eq!(
        to_canonical_json(&parsed),
        event.body,
        "a stored body is canonical"
    );
    assert_eq!(
        parsed["messageId"].as_str(),
        Some(event.message_id.as_str())
    );
    assert_eq!(parsed["type"].as_str(), Some(event.event_type.as_str()));
}

#[cfg(test)]
mod tests {
    /// Every input the fuzzer kept (and every crash it found, once fixed) stays a test.
    #[test]
    fn the_fuzz_corpus_holds() {
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/ingest");
        let mut inputs = 0;
        for entry in std::fs::read_dir(&corpus).expect("the corpus is in the repository") {
            let body = std::fs::read(entry.unwrap().path()).unwrap();
            super::ingest_body(&body);
            inputs += 1;
        }
        assert!(inputs >= 6, "{inputs} inputs in {}", corpus.display());
    }
}
