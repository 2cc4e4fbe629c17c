//! The admin API under `/admin/v1`, behind `Authorization: Bearer <admin_token>`:
//! regulations (user deletion requests) and suppressions, message status, destinations
//! (health, pause, resume), dead letters and their replay.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::body::read_json_body;
use super::{ApiError, ApiState};
use crate::actors::deletion::RegulationAdded;
use crate::actors::router::{PauseDestination, WakeDestinations};
use crate::clock::{iso, now_ms};
use crate::store::{ControlChange, DeadLetterQuery, Regulation, RegulationType, ReplaySelection};

/// How long a regulation request waits for the regulation to be applied.
const APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Segment's limit on subjects in one regulation.
pub const MAX_SUBJECTS: usize = 5_000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/v1/regulations", web::post().to(create_regulation))
        .route("/admin/v1/regulations/{id}", web::get().to(regulation))
        .route("/admin/v1/suppressions", web::get().to(suppressions))
        .route(
            "/admin/v1/suppressions/{source}/{user_id}",
            web::delete().to(lift_suppression),
        )
        .route("/admin/v1/messages/{message_id}", web::get().to(message))
        .route("/admin/v1/destinations", web::get().to(destinations))
        .route(
            "/admin/v1/destinations/{source}/{destination}/{action}",
            web::post().to(pause_or_resume),
        )
        .route("/admin/v1/dead-letters", web::get().to(dead_letters))
        .route("/admin/v1/dead-letters/replay", web::post().to(replay))
        .route("/admin/v1/instances", web::get().to(instances));
}

/// Admits the request if it carries the admin token. With no token configured the admin
/// API does not exist (404); a missing or wrong token is 401.
fn authorize(req: &HttpRequest, state: &ApiState) -> Result<(), ApiError> {
    let config = state.config.current();
    let Some(token) = &config.server.admin_token else {
        return Err(ApiError::NotFound(format!(
            "no endpoint {} {}",
            req.method(),
            req.path()
        )));
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::Unauthorized("the admin API needs Authorization: Bearer <admin_token>".into())
        })?;
    if token.matches(presented.trim()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("wrong admin token".into()))
    }
}

/// `POST /admin/v1/regulations`: stored before the 202; applied by the deletion actor.
async fn create_regulation(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let limit = state.config.current().server.max_batch_bytes * 2;
    let body = read_json_body(&req, payload, limit).await?;
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))?;
    let regulation = parse_regulation(&body, &state)?;
    let id = regulation.id.clone();
    let subjects = regulation.subject_ids.len();
    state.store.add_regulation(regulation).await.map_err(|e| {
        log::error!("regulation not stored: {e}");
        ApiError::Unavailable("the store is unavailable; retry later".into())
    })?;
    log::info!("regulation {id} accepted: {subjects} subject(s)");
    // Answer once it is applied: after the 202 nothing it purged starts being sent. If
    // applying is slow or fails, it is stored and is applied later (at the latest at the
    // next start); the 202 stands.
    match tokio::time::timeout(APPLY_WAIT, state.deletion.send(RegulationAdded)).await {
        Ok(Ok(Ok(()))) => {}
        _ => log::warn!("regulation {id} stored but not applied yet; it will be"),
    }
    Ok(HttpResponse::Accepted().json(json!({"regulationId": id})))
}

fn parse_regulation(body: &Value, state: &ApiState) -> Result<Regulation, ApiError> {
    let bad = |message: &str| ApiError::BadRequest(message.to_string());
    let body = body
        .as_object()
        .ok_or_else(|| bad("body must be a JSON object"))?;
    let regulation_type = body
        .get("regulationType")
        .and_then(Value::as_str)
        .and_then(RegulationType::from_name)
        .ok_or_else(|| bad("`regulationType` must be DELETE_ONLY or SUPPRESS_WITH_DELETE"))?;
    if body.get("subjectType").and_then(Value::as_str) != Some("USER_ID") {
        return Err(bad("`subjectType` must be USER_ID"));
    }
    let subjects = body
        .get("subjectIds")
        .and_then(Value::as_array)
        .filter(|ids| !ids.is_empty())
        .ok_or_else(|| bad("`subjectIds` must be a non-empty array of user ids"))?;
    if subjects.len() > MAX_SUBJECTS {
        return Err(ApiError::BadRequest(format!(
            "`subjectIds` has {} entries; at most {MAX_SUBJECTS} are allowed",
            subjects.len()
        )));
    }
    let mut subject_ids = Vec::with_capacity(subjects.len());
    for (i, subject) in subjects.iter().enumerate() {
        match subject.as_str() {
            Some(id) if !id.is_empty() => subject_ids.push(id.to_string()),
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "`subjectIds[{i}]` must be a non-empty string"
                )))
            }
        }
    }
    let sources = match body.get("sources") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) if !list.is_empty() => {
            let mut names = Vec::with_capacity(list.len());
            for (i, name) in list.iter().enumerate() {
                let name = name.as_str().unwrap_or_default();
                if !state
                    .config
                    .current()
                    .sources
                    .iter()
                    .any(|s| s.name == name)
                {
                    return Err(ApiError::BadRequest(format!(
                        "`sources[{i}]` is not a configured source"
                    )));
                }
                names.push(name.to_string());
            }
            Some(names)
        }
        Some(_) => return Err(bad("`sources` must be a non-empty array of source names")),
    };
    Ok(Regulation {
        id: uuid::Uuid::new_v4().to_string(),
        regulation_type,
        subject_ids,
        sources,
        created_at_ms: now_ms(),
        applied_at_ms: None,
    })
}

/// `GET /admin/v1/regulations/{id}`: the regulation and its notifications' progress.
async fn regulation(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let progress = state
        .store
        .regulation_progress(&id)
        .await
        .map_err(|e| ApiError::Unavailable(format!("the store is unavailable: {e}")))?
        .ok_or_else(|| ApiError::NotFound(format!("no regulation {id}")))?;
    let r = &progress.regulation;
    let notifications: Vec<Value> = progress
        .notifications
        .iter()
        .map(|n| {
            json!({"source": n.source, "destination": n.destination, "total": n.total,
                "delivered": n.delivered, "pending": n.pending, "dead": n.dead})
        })
        .collect();
    let status = match r.applied_at_ms {
        None => "pending",
        Some(_) if progress.notifications.iter().any(|n| n.pending > 0) => "notifying",
        Some(_) if progress.notifications.iter().any(|n| n.dead > 0) => "done_with_failures",
        Some(_) => "done",
    };
    Ok(HttpResponse::Ok().json(json!({
        "regulationId": r.id,
        "regulationType": r.regulation_type.as_str(),
        "subjectType": "USER_ID",
        "subjectCount": r.subject_ids.len(),
        "sources": r.sources,
        "status": status,
        "createdAt": iso(r.created_at_ms),
        "appliedAt": r.applied_at_ms.map(iso),
        "purgedDeliveries": progress.purged_deliveries,
        "notifications": notifications,
    })))
}

/// `GET /admin/v1/suppressions`: users whose events are dropped at ingest.
async fn suppressions(
    req: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let list = state
        .store
        .suppressions()
        .await
        .map_err(|e| ApiError::Unavailable(format!("the store is unavailable: {e}")))?;
    let list: Vec<Value> = list
        .iter()
        .map(|s| {
            json!({"source": s.source, "userId": s.user_id, "regulationId": s.regulation_id,
                "createdAt": iso(s.created_at_ms)})
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "suppressions": list })))
}

/// `DELETE /admin/v1/suppressions/{source}/{userId}`: the user's events are accepted again.
async fn lift_suppression(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let (source, user_id) = path.into_inner();
    let lifted = state
        .store
        .lift_suppression(&source, &user_id)
        .await
        .map_err(|e| ApiError::Unavailable(format!("the store is unavailable: {e}")))?;
    if !lifted {
        return Err(ApiError::NotFound(format!(
            "no suppression of that user in source {source:?}"
        )));
    }
    log::info!("suppression lifted in source {source}");
    Ok(HttpResponse::Ok().json(json!({"success": true})))
}

/// `GET /admin/v1/messages/{messageId}`: in every source, the event with that id and each
/// of its deliveries with every attempt.
async fn message(
    req: HttpRequest,
    message_id: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let unavailable = |e: crate::store::StoreError| {
        ApiError::Unavailable(format!("the store is unavailable: {e}"))
    };
    let mut events = Vec::new();
    for source in &state.config.current().sources {
        let Some(event) = state
            .store
            .find_event(&source.name, &message_id)
            .await
            .map_err(unavailable)?
        else {
            continue;
        };
        let deliveries = state
            .store
            .deliveries_of(&source.name, &message_id)
            .await
            .map_err(unavailable)?;
        let deliveries: Vec<Value> = deliveries
            .iter()
            .map(|d| {
                let attempts: Vec<Value> = d
                    .attempts
                    .iter()
                    .map(|a| {
                        json!({"at": iso(a.attempted_at_ms), "url": a.url, "status": a.status,
                            "error": a.error, "latencyMs": a.latency_ms, "responseBody": a.response_body})
                    })
                    .collect();
                json!({"deliveryId": d.delivery_id, "destination": d.destination, "state": d.state,
                    "attemptCount": d.attempt_count,
                    "nextAttemptAt": (d.state == "pending").then(|| iso(d.next_attempt_at_ms)),
                    "lastError": d.last_error, "attempts": attempts})
            })
            .collect();
        events.push(json!({"source": source.name, "type": event.event_type,
            "receivedAt": iso(event.received_at_ms), "deliveries": deliveries}));
    }
    if events.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no event with messageId {message_id:?}"
        )));
    }
    Ok(HttpResponse::Ok().json(json!({"messageId": message_id.as_str(), "events": events})))
}

/// `GET /admin/v1/destinations`: each configured destination's queue, health and state.
async fn destinations(
    req: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let now = now_ms();
    let stats = state
        .store
        .destination_stats(now)
        .await
        .map_err(|e| ApiError::Unavailable(format!("the store is unavailable: {e}")))?;
    let controls = state
        .store
        .destination_controls()
        .await
        .map_err(|e| ApiError::Unavailable(format!("the store is unavailable: {e}")))?;
    let config = state.config.current();
    // Nothing can be sent while the store cannot record what is sent.
    let store_problem = state.store.health().problem();
    let mut list = Vec::new();
    for source in &config.sources {
        for destination in &source.destinations {
            let s = stats
                .iter()
                .find(|s| s.source == source.name && s.destination == destination.name)
                .cloned()
                .unwrap_or_default();
            let control = controls
                .iter()
                .find(|c| c.source == source.name && c.destination == destination.name)
                .cloned()
                .unwrap_or_default();
            let disabled_reason = if !destination.enabled {
                Some("enabled = false in the configuration".to_string())
            } else {
                control.disabled_reason.clone()
            };
            let status = if disabled_reason.is_some() {
                "disabled"
            } else if s.paused {
                "paused"
            } else if store_problem.is_some() {
                "blocked"
            } else {
                "active"
            };
            let success_rate = (s.attempts_last_hour > 0)
                .then(|| s.successes_last_hour as f64 / s.attempts_last_hour as f64);
            list.push(json!({
                "source": source.name,
                "destination": destination.name,
                "state": status,
                "queueDepth": s.pending,
                "oldestPendingAgeSeconds": s.oldest_pending_received_at_ms.map(|t| (now - t).max(0) as f64 / 1000.0),
                "deadLetters": s.dead,
                "attemptsLastHour": s.attempts_last_hour,
                "successRateLastHour": success_rate,
                "lastError": s.last_error,
                "lastErrorAt": s.last_error_at_ms.map(iso),
                "blockedReason": (status == "blocked").then_some(&store_problem),
                "disabledReason": disabled_reason,
                "disabledAt": control.disabled_at_ms.map(iso),
                "goneUrls": control.gone_urls.iter().map(|u| crate::redact::url(u)).collect::<Vec<_>>(),
                "failingSince": control.failing_since_ms.map(iso),
            }));
        }
    }
    Ok(HttpResponse::Ok().json(json!({ "destinations": list })))
}

/// `POST /admin/v1/destinations/{source}/{destination}/pause` and `.../resume`.
async fn pause_or_resume(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let (source, destination, action) = path.into_inner();
    let paused = match action.as_str() {
        "pause" => true,
        "resume" => false,
        _ => {
            return Err(ApiError::NotFound(format!(
                "no endpoint {} {}",
                req.method(),
                req.path()
            )))
        }
    };
    let config = state.config.current();
    let known = config
        .sources
        .iter()
        .any(|s| s.name == source && s.destinations.iter().any(|d| d.name == destination));
    if !known {
        return Err(ApiError::NotFound(format!(
            "no destination {source}/{destination}"
        )));
    }
    let unavailable = |e| ApiError::Unavailable(format!("the store is unavailable: {e}"));
    state
        .store
        .set_paused(&source, &destination, paused, now_ms())
        .await
        .map_err(unavailable)?;
    if !paused {
        // A resume also enables a destination disabled for its failures.
        state
            .store
            .change_control(&source, &destination, ControlChange::Enabled, now_ms())
            .await
            .map_err(unavailable)?;
    }
    state.router.do_send(PauseDestination {
        source: source.clone(),
        destination: destination.clone(),
        paused,
    });

    Ok(
        HttpResponse::Ok().json(json!({"source": source, "destination": destination,
        "state": if paused { "paused" } else { "active" }})),
    )
}

/// Query of `GET /admin/v1/dead-letters`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadLetterParams {
    source: Option<String>,
    destination: Option<String>,
    /// ISO 8601: dead-lettered at or after.
    since: Option<String>,
    /// ISO 8601: dead-lettered before.
    until: Option<String>,
    /// The `nextCursor` of the previous page.
    cursor: Option<i64>,
    limit: Option<usize>,
}

const DEAD_LETTER_PAGE: usize = 100;
const DEAD_LETTER_PAGE_MAX: usize = 1_000;

fn time_param(name: &str, value: &Option<Value>) -> Result<Option<i64>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => crate::segment::time::parse_iso8601(text)
            .map(|t| Some(t.timestamp_millis()))
            .ok_or_else(|| ApiError::BadRequest(format!("`{name}` is not an ISO 8601 date-time"))),
        Some(_) => Err(ApiError::BadRequest(format!(
            "`{name}` must be an ISO 8601 string"
        ))),
    }
}

/// `GET /admin/v1/dead-letters?source=&destination=&since=&until=&cursor=&limit=`.
async fn dead_letters(
    req: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let params = web::Query::<DeadLetterParams>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(format!("bad query: {e}")))?
        .into_inner();
    let limit = params
        .limit
        .unwrap_or(DEAD_LETTER_PAGE)
        .clamp(1, DEAD_LETTER_PAGE_MAX);
    let query = DeadLetterQuery {
        source: params.source,
        destination: params.destination,
        since_ms: time_param("since", &params.since.map(Value::String))?,
        until_ms: time_param("until", &params.until.map(Value::String))?,
        after_id: params.cursor,
        limit,
    };
    let letters = state
        .store
        .dead_letters(query)
        .await
        .map_err(|e| ApiError::Unavailable(format!("the store is unavailable: {e}")))?;
    let next_cursor = (letters.len() == limit)
        .then(|| letters.last().map(|l| l.delivery_id))
        .flatten();
    let letters: Vec<Value> = letters
        .iter()
        .map(|l| {
            json!({"deliveryId": l.delivery_id, "source": l.source, "destination": l.destination,
                "messageId": l.message_id, "type": l.event_type, "attemptCount": l.attempt_count,
                "lastError": l.last_error, "deadAt": iso(l.dead_at_ms),
                "firstAttemptAt": l.first_attempt_at_ms.map(iso)})
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"deadLetters": letters, "nextCursor": next_cursor})))
}

/// `POST /admin/v1/dead-letters/replay` with `{"deliveryIds": [...]}` or
/// `{"source": ..., "destination": ..., "since": ..., "until": ...}`.
async fn replay(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let body = read_json_body(&req, payload, state.config.current().server.max_batch_bytes).await?;
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))?;
    let selection = if let Some(ids) = body.get("deliveryIds") {
        let ids = ids
            .as_array()
            .filter(|ids| !ids.is_empty())
            .and_then(|ids| ids.iter().map(Value::as_i64).collect::<Option<Vec<_>>>())
            .ok_or_else(|| {
                ApiError::BadRequest("`deliveryIds` must be a non-empty array of ids".into())
            })?;
        ReplaySelection::Ids(ids)
    } else {
        let text = |name: &str| {
            body.get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("`{name}` is required (or give `deliveryIds`)"))
                })
        };
        ReplaySelection::Destination {
            source: text("source")?,
            destination: text("destination")?,
            since_ms: time_param("since", &body.get("since").cloned())?,
            until_ms: time_param("until", &body.get("until").cloned())?,
        }
    };
    let replayed = state
        .store
        .replay_dead_letters(selection, now_ms())
        .await
        .map_err(|e| ApiError::Unavailable(format!("the store is unavailable: {e}")))?;
    let total: u64 = replayed.iter().map(|(_, _, n)| n).sum();
    log::info!("dead letters replayed: {total}");
    let woken: Vec<_> = replayed.into_iter().map(|(s, d, _)| (s, d)).collect();
    state.router.do_send(WakeDestinations(woken));
    Ok(HttpResponse::Ok().json(json!({"replayed": total})))
}

/// `GET /admin/v1/instances`: every instance on this store (one on SQLite), live or not.
async fn instances(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let list = state
        .store
        .instances(now_ms())
        .await
        .map_err(|e| ApiError::Unavailable(format!("the store is unavailable: {e}")))?;
    let mine = list
        .iter()
        .find(|i| i.info.id == state.instance_id)
        .map(|i| i.info.config_fingerprint.clone());
    let list: Vec<Value> = list
        .iter()
        .map(|i| {
            json!({
                "id": i.info.id,
                "address": i.info.address,
                "version": i.info.version,
                "startedAt": iso(i.info.started_at_ms),
                "lastHeartbeat": iso(i.heartbeat_at_ms),
                "live": i.live,
                "destinationsOwned": i.destinations_owned,
                "configFingerprint": i.info.config_fingerprint,
                "sameConfig": mine.as_ref() == Some(&i.info.config_fingerprint),
                "self": i.info.id == state.instance_id,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "instances": list })))
}
