//! What one attempt sends, as a pure function of the destination and the deliveries it
//! carries: the method, the body (the event, or its mapping; one event, or a JSON array
//! of up to `batch_size`), and the headers (Segment's, `X-Signature`, Standard Webhooks').
//! The bytes signed are the bytes sent.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};
use actix_web::web::Bytes;
use sha2::{Digest, Sha256};

use super::signature::sign;
use super::standard::{decode_secret, signature_header};
use crate::config::{DestinationConfig, Headers, Method};
use crate::secret::Secret;
use crate::segment::mapping::Mapping;
use crate::segment::to_canonical_json;
use crate::store::DueDelivery;

/// Segment's webhooks identify themselves with this User-Agent.
pub const SEGMENT_USER_AGENT: &str = "Segment.io/1.0";
/// The type of Segment's deletion notifications: never mapped, never batched.
pub const DELETE_TYPE: &str = "delete";

/// Where and how one destination's requests are sent.
#[derive(Debug)]
pub struct Target {
    pub source: String,
    pub destination: String,
    pub urls: Vec<UrlTarget>,
    pub method: Method,
    pub shared_secret: Option<Secret>,
    /// Standard Webhooks keys (decoded `signing_secrets`).
    pub signing_keys: Vec<Vec<u8>>,
    pub mapping: Option<Arc<Mapping>>,
    /// Events per request, at most; 1: no batching.
    pub batch_size: usize,
    /// How long a partial batch waits for more.
    pub batch_wait: Duration,
    /// Failing this long with no success disables the destination; zero: never.
    pub disable_after: Duration,
    /// Requests per second, at most; 0: no limit.
    pub rate_limit_per_s: u32,
}

/// One URL and the headers its requests carry (the destination's, then its own).
#[derive(Debug, Clone)]
pub struct UrlTarget {
    pub url: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Target {
    pub fn new(source: &str, destination: &DestinationConfig) -> Target {
        // Names, values and secrets were validated with the config.
        let parse = |headers: &Headers| -> Vec<(HeaderName, HeaderValue)> {
            headers
                .iter()
                .filter_map(|(n, v)| {
                    Some((
                        HeaderName::from_str(n).ok()?,
                        HeaderValue::from_str(v).ok()?,
                    ))
                })
                .collect()
        };
        let shared = parse(&destination.headers);
        let urls = destination
            .urls
            .iter()
            .map(|u| UrlTarget {
                url: u.url.clone(),
                headers: shared.iter().cloned().chain(parse(&u.headers)).collect(),
            })
            .collect();
        Target {
            source: source.to_string(),
            destination: destination.name.clone(),
            urls,
            method: destination.method,
            shared_secret: destination.shared_secret.clone(),
            signing_keys: destination
                .signing_secrets
                .iter()
                .filter_map(|s| decode_secret(s.expose()).ok())
                .collect(),
            mapping: destination.mapping.clone(),
            batch_size: destination.batch_size.max(1),
            batch_wait: Duration::from_millis(destination.batch_wait_ms),
            disable_after: Duration::from_secs(destination.disable_after_s),
            rate_limit_per_s: destination.rate_limit_per_s,
        }
    }

    /// Whether `delivery` may share a request with others.
    pub fn batches(&self, delivery: &DueDelivery) -> bool {
        self.batch_size > 1 && delivery.event_type != DELETE_TYPE
    }
}

/// One request's content, the same for every URL of the destination.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub body: Bytes,
    /// Content-Type, User-Agent and the signatures (the URLs' own headers come first).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The deliveries it carries.
    pub delivery_ids: Vec<i64>,
}

/// What building a request made of the deliveries given.
#[derive(Debug)]
pub struct Built {
    /// The request, unless no delivery could be put in it.
    pub request: Option<Request>,
    /// Deliveries whose body could not be made (their mapping fails on the event), why.
    pub failed: Vec<(i64, String)>,
}

/// The body one delivery contributes: its event as stored, or the mapping of it.
fn payload(target: &Target, delivery: &DueDelivery) -> Result<String, String> {
    let mapping = match &target.mapping {
        Some(m) if delivery.event_type != DELETE_TYPE => m,
        _ => return Ok(delivery.body.clone()),
    };
    let event: serde_json::Value = serde_json::from_str(&delivery.body)
        .map_err(|e| format!("the stored event is not JSON: {e}"))?;
    let mapped = mapping
        .apply(&event)
        .map_err(|e| format!("the mapping failed: {e}"))?;
    Ok(to_canonical_json(&mapped))
}

/// Builds the request carrying `deliveries` at `now_s` (Unix seconds): one event, or a
/// batch (a JSON array, oldest first) when the destination batches.
pub fn build(target: &Target, deliveries: &[DueDelivery], now_s: i64) -> Built {
    let mut failed = Vec::new();
    let mut parts: Vec<(i64, String)> = Vec::with_capacity(deliveries.len());
    for d in deliveries {
        match payload(target, d) {
            Ok(p) => parts.push((d.delivery_id, p)),
            Err(why) => failed.push((d.delivery_id, why)),
        }
    }
    if parts.is_empty() {
        return Built {
            request: None,
            failed,
        };
    }
    let batched = target.batch_size > 1 && deliveries.iter().all(|d| target.batches(d));
    let (body, signed_first) = if batched {
        let mut body =
            String::with_capacity(parts.iter().map(|(_, p)| p.len() + 1).sum::<usize>() + 2);
        body.push('[');
        for (i, (_, p)) in parts.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(p);
        }
        body.push(']');
        // As Segment documents for batches: X-Signature covers the first element.
        (body, Some(parts[0].1.clone()))
    } else {
        (parts[0].1.clone(), None)
    };
    let delivery_ids: Vec<i64> = parts.iter().map(|(id, _)| *id).collect();
    let mut headers = vec![
        (CONTENT_TYPE, HeaderValue::from_static("application/json")),
        (USER_AGENT, HeaderValue::from_static(SEGMENT_USER_AGENT)),
    ];
    if let Some(secret) = &target.shared_secret {
        let signed = signed_first.as_deref().unwrap_or(&body);
        push(
            &mut headers,
            "x-signature",
            &sign(secret.expose(), signed.as_bytes()),
        );
    }
    if !target.signing_keys.is_empty() {
        let id = webhook_id(&delivery_ids, batched);
        let signature = signature_header(&target.signing_keys, &id, now_s, body.as_bytes());
        push(&mut headers, "webhook-id", &id);
        push(&mut headers, "webhook-timestamp", &now_s.to_string());
        push(&mut headers, "webhook-signature", &signature);
    }
    Built {
        request: Some(Request {
            method: target.method,
            body: Bytes::from(body),
            headers,
            delivery_ids,
        }),
        failed,
    }
}

fn push(headers: &mut Vec<(HeaderName, HeaderValue)>, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.push((HeaderName::from_static(name), value));
    }
}

/// `webhook-id`: the same on every retry of one delivery, or of one batch of the same
/// deliveries (a batch regrouped on retry is a new message).
fn webhook_id(delivery_ids: &[i64], batched: bool) -> String {
    if !batched {
        return format!("msg_{}", delivery_ids[0]);
    }
    let mut ids = delivery_ids.to_vec();
    ids.sort_unstable();
    let mut hash = Sha256::new();
    for id in ids {
        hash.update(id.to_le_bytes());
    }
    format!("msg_batch_{}", hex::encode(&hash.finalize()[..12]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn delivery(id: i64, body: &str, event_type: &str) -> DueDelivery {
        DueDelivery {
            delivery_id: id,
            event_id: id,
            message_id: format!("m{id}"),
            event_type: event_type.into(),
            body: body.into(),
            attempts: 0,
            first_attempt_at_ms: None,
            due_at_ms: 0,
            given_up_urls: Vec::new(),
        }
    }

    fn target(extra: &str) -> Target {
        let config = Config::from_toml(&format!(
            "[[sources]]\nname = \"s\"\nwrite_key = \"k\"\n[[sources.destinations]]\n\
             name = \"d\"\nurls = [\"http://r/\"]\nshared_secret = \"s3cr3t\"\n\
             signing_secrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n{extra}"
        ))
        .unwrap();
        Target::new("s", &config.sources[0].destinations[0])
    }

    fn header<'a>(request: &'a Request, name: &str) -> &'a str {
        request
            .headers
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, v)| v.to_str().unwrap())
            .unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn one_event_is_sent_and_signed_as_stored() {
        let t = target("");
        let built = build(&t, &[delivery(7, r#"{"a":1}"#, "track")], 1_700_000_000);
        let r = built.request.unwrap();
        assert_eq!(r.body, r#"{"a":1}"#);
        assert_eq!(header(&r, "x-signature"), sign("s3cr3t", br#"{"a":1}"#));
        assert_eq!(header(&r, "webhook-id"), "msg_7");
        assert_eq!(header(&r, "webhook-timestamp"), "1700000000");
        assert_eq!(
            header(&r, "webhook-signature"),
            signature_header(&t.signing_keys, "msg_7", 1_700_000_000, br#"{"a":1}"#)
        );
    }

    #[test]
    fn a_batch_is_an_array_signed_over_its_first_element_and_the_whole() {
        let t = target("batch_size = 10\nmethod = \"PUT\"\n");
        let items = [
            delivery(1, r#"{"n":1}"#, "track"),
            delivery(2, r#"{"n":2}"#, "page"),
        ];
        let r = build(&t, &items, 5).request.unwrap();
        assert_eq!(r.body, r#"[{"n":1},{"n":2}]"#);
        assert_eq!(r.method, Method::Put);
        assert_eq!(header(&r, "x-signature"), sign("s3cr3t", br#"{"n":1}"#));
        let id = header(&r, "webhook-id").to_string();
        assert!(id.starts_with("msg_batch_"));
        assert_eq!(
            header(&r, "webhook-signature"),
            signature_header(&t.signing_keys, &id, 5, r.body.as_ref())
        );
        // The same deliveries in another order: the same message.
        let again = build(&t, &[items[1].clone(), items[0].clone()], 9)
            .request
            .unwrap();
        assert_eq!(header(&again, "webhook-id"), id);
    }

    #[test]
    fn a_mapping_shapes_the_body_but_not_a_deletion() {
        let t = target("[sources.destinations.data]\nid = { \"@path\" = \"$.messageId\" }\n");
        let r = build(
            &t,
            &[delivery(1, r#"{"messageId":"m1","x":2}"#, "track")],
            0,
        )
        .request
        .unwrap();
        assert_eq!(r.body, r#"{"id":"m1"}"#);
        let deletion = r#"{"type":"delete","userId":"u"}"#;
        let r = build(&t, &[delivery(2, deletion, DELETE_TYPE)], 0)
            .request
            .unwrap();
        assert_eq!(r.body, deletion);
    }
}
