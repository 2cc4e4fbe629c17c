//! The ingest endpoints, compatible with Segment's HTTP Tracking API: `/v1/identify`,
//! `/v1/track`, `/v1/page`, `/v1/screen`, `/v1/group`, `/v1/alias` and `/v1/batch`.
//!
//! A request is answered 200 only after every event it carried that was accepted has
//! been committed to the store, together with its pending deliveries.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;

pub mod model;
use chrono::Utc;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::body::read_json_body;
use super::{ApiError, ApiState, ErrorBody};
use crate::config::{Config, SourceConfig};
use crate::ingest::{Arrival, IngestError};
use crate::segment::{EventError, EventType};
pub use model::*;

/// Segment's limit on events in one batch request.
pub const MAX_BATCH_EVENTS: usize = 2_500;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/batch", web::post().to(batch))
        .route("/v1/track", web::post().to(track))
        .route("/v1/identify", web::post().to(identify))
        .route("/v1/page", web::post().to(page))
        .route("/v1/screen", web::post().to(screen))
        .route("/v1/group", web::post().to(group))
        .route("/v1/alias", web::post().to(alias));
}

/// A handler for one event type, described for `/openapi.json`.
macro_rules! single_event {
    ($handler:ident, $path:literal, $event_type:expr, $body:ty) => {
        #[utoipa::path(post, path = $path, tag = "ingest",
            request_body = $body,
            responses(
                (status = 200, description = "Stored (or a duplicate of one stored)", body = Accepted),
                (status = 400, description = "Not a valid event; the error names what is wrong", body = ErrorBody),
                (status = 401, description = "No or an unknown write key", body = ErrorBody),
                (status = 413, description = "Over `server.max_message_bytes`", body = ErrorBody),
                (status = 415, description = "Not JSON, or an unknown Content-Encoding", body = ErrorBody),
                (status = 503, description = "The store cannot take it now; retry", body = ErrorBody),
            ),
            security(("write_key" = [])))]
        async fn $handler(
            req: HttpRequest,
            payload: web::Payload,
            state: web::Data<ApiState>,
        ) -> Result<HttpResponse, ApiError> {
            single(req, $event_type, payload, state).await
        }
    };
}

single_event!(track, "/v1/track", EventType::Track, TrackEvent);
single_event!(identify, "/v1/identify", EventType::Identify, IdentifyEvent);
single_event!(page, "/v1/page", EventType::Page, PageEvent);
single_event!(screen, "/v1/screen", EventType::Screen, ScreenEvent);
single_event!(group, "/v1/group", EventType::Group, GroupEvent);
single_event!(alias, "/v1/alias", EventType::Alias, AliasEvent);

/// Events refused for what they hold are 400 (413 when too large once enriched); a store
/// that cannot take them is 503.
impl From<IngestError> for ApiError {
    fn from(error: IngestError) -> ApiError {
        match error {
            IngestError::Invalid(e @ EventError::TooLargeStored { .. }) => {
                ApiError::PayloadTooLarge(e.to_string())
            }
            IngestError::Invalid(e) => ApiError::BadRequest(e.to_string()),
            IngestError::Store(e) => e.into(),
        }
    }
}

/// One event of `event_type`.
async fn single(
    req: HttpRequest,
    event_type: EventType,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let config = state.config.current();
    let header_source = source_from_header(&req, &config)?;
    let body = read_json_body(&req, payload, config.server.max_message_bytes).await?;
    let event = parse_object(&body)?;
    let source = match header_source {
        Some(source) => source_beside_header(source, &event)?,
        None => source_from_body(&event, &config)?,
    };
    let client_ip = client_ip(&req);
    let arrival = Arrival {
        source,
        received_at: Utc::now(),
        client_ip: client_ip.as_deref(),
    };
    state.ingest.accept_one(&arrival, event, event_type).await?;
    Ok(HttpResponse::Ok().json(Accepted {
        success: true,
        rejected: Vec::new(),
    }))
}

/// `{"batch": [...], "context": {...}, "integrations": {...}, "sentAt": "..."}`: each item
/// is accepted or rejected on its own.
#[utoipa::path(post, path = "/v1/batch", tag = "ingest",
    request_body = BatchBody,
    responses(
        (status = 200, description = "Every valid item stored; the others listed in `rejected`", body = Accepted),
        (status = 400, description = "Not a batch", body = ErrorBody),
        (status = 401, description = "No or an unknown write key", body = ErrorBody),
        (status = 413, description = "Over `server.max_batch_bytes` or 2,500 events", body = ErrorBody),
        (status = 415, description = "Not JSON, or an unknown Content-Encoding", body = ErrorBody),
        (status = 503, description = "The store cannot take it now; retry", body = ErrorBody),
    ),
    security(("write_key" = [])))]
async fn batch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let config = state.config.current();
    let header_source = source_from_header(&req, &config)?;
    let body = read_json_body(&req, payload, config.server.max_batch_bytes).await?;
    let (envelope, items) = parse_batch(&body)?;
    let source = match header_source {
        Some(source) => source_beside_header(source, &envelope)?,
        None => source_from_body(&envelope, &config)?,
    };
    if items.len() > MAX_BATCH_EVENTS {
        return Err(ApiError::PayloadTooLarge(format!(
            "`batch` has {} events; at most {MAX_BATCH_EVENTS} are allowed",
            items.len()
        )));
    }
    let client_ip = client_ip(&req);
    let arrival = Arrival {
        source,
        received_at: Utc::now(),
        client_ip: client_ip.as_deref(),
    };
    let refused = state
        .ingest
        .accept_batch(&arrival, &envelope, items, body.len())
        .await?;
    Ok(HttpResponse::Ok().json(Accepted {
        success: true,
        rejected: refused
            .into_iter()
            .map(|r| RejectedItem {
                index: r.index,
                error: r.error.to_string(),
            })
            .collect(),
    }))
}

fn parse_batch(body: &[u8]) -> Result<(Map<String, Value>, Vec<&RawValue>), ApiError> {
    crate::ingest::parse_batch(body).map_err(|e| ApiError::BadRequest(e.to_string()))
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    crate::ingest::parse_object(body).map_err(|e| ApiError::BadRequest(e.to_string()))
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

/// With Basic auth the body's `writeKey` is not needed, but one that is not a string is
/// still a mistake worth naming.
fn source_beside_header<'a>(
    source: &'a SourceConfig,
    body: &Map<String, Value>,
) -> Result<&'a SourceConfig, ApiError> {
    match body.get("writeKey") {
        None | Some(Value::String(_)) | Some(Value::Null) => Ok(source),
        Some(_) => Err(ApiError::BadRequest("`writeKey` must be a string".into())),
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
