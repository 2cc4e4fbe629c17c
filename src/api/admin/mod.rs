//! The admin API under `/admin/v1`, behind `Authorization: Bearer <admin_token>`:
//! regulations (user deletion requests) and suppressions, message status, destinations
//! (health, pause, resume), dead letters and their replay, instances.
//!
//! Each operation is a function from typed input to a typed answer ([`model`]), shared
//! by the JSON handlers here and the console's pages.

pub mod model;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;

use super::auth::Admin;
use super::body::read_json_body;
use super::{ApiError, ApiState, ErrorBody};
use crate::actors::deletion::RegulationAdded;
use crate::actors::router::{PauseDestination, WakeDestinations};
use crate::clock::{iso, now_ms};
use crate::store::{ControlChange, DeadLetterQuery, DestinationKey, Regulation, ReplaySelection};
use model::*;

/// How long a regulation request waits for the regulation to be applied.
const APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Segment's limit on subjects in one regulation.
pub const MAX_SUBJECTS: usize = 5_000;

const DEAD_LETTER_PAGE: usize = 100;
const DEAD_LETTER_PAGE_MAX: u32 = 1_000;
/// Regulations `GET /admin/v1/regulations` lists by default, and at most.
const REGULATION_LIST: usize = 20;
const REGULATION_LIST_MAX: usize = 100;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/v1/regulations", web::post().to(create_regulation))
        .route("/admin/v1/regulations", web::get().to(regulations))
        .route("/admin/v1/regulations/{id}", web::get().to(regulation))
        .route("/admin/v1/suppressions", web::get().to(suppressions))
        .route(
            "/admin/v1/suppressions/{source}/{user_id}",
            web::delete().to(lift_suppression),
        )
        .route("/admin/v1/messages/{message_id}", web::get().to(message))
        .route("/admin/v1/destinations", web::get().to(destinations))
        .route(
            "/admin/v1/destinations/{source}/{destination}/pause",
            web::post().to(pause),
        )
        .route(
            "/admin/v1/destinations/{source}/{destination}/resume",
            web::post().to(resume),
        )
        .route("/admin/v1/dead-letters", web::get().to(dead_letters))
        .route("/admin/v1/dead-letters/replay", web::post().to(replay))
        .route("/admin/v1/instances", web::get().to(instances));
}

/// A JSON body as `T`; a problem is a 400 naming the field (`what` says what each
/// top-level field must be).
fn parse_body<T: DeserializeOwned>(
    body: &[u8],
    what: fn(&str) -> Option<&'static str>,
) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let error = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(value) => return Ok(value),
        Err(error) => error,
    };
    let path = error.path().to_string();
    let inner = error.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        return Err(ApiError::BadRequest(format!(
            "body is not valid JSON: {inner}"
        )));
    }
    let message = inner.to_string();
    // A misspelt key must not quietly widen what a request does ("sinc" replaying every
    // dead letter): every body's keys are known.
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let expected = expected.trim_start_matches(", ");
        return Err(ApiError::BadRequest(format!(
            "`{field}` is not a key of this request ({expected})"
        )));
    }
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        return Err(ApiError::BadRequest(match what(field) {
            Some(must) => format!("`{field}` is required: {must}"),
            None => format!("`{field}` is required"),
        }));
    }
    if path == "." {
        return Err(ApiError::BadRequest(format!(
            "body must be a JSON object as documented: {message}"
        )));
    }
    // `subjectIds[3]` is described as `subjectIds[]`.
    let mut key = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                key.push('[');
            }
            ']' => {
                in_index = false;
                key.push(']');
            }
            _ if in_index => {}
            _ => key.push(c),
        }
    }
    Err(ApiError::BadRequest(match what(&key) {
        Some(must) => format!("`{path}` must be {must}"),
        None => format!("`{path}`: {message}"),
    }))
}

/// `POST /admin/v1/regulations`: stored before the 202; applied by the deletion actor.
#[utoipa::path(post, path = "/admin/v1/regulations", tag = "regulations",
    request_body = RegulationRequest,
    responses(
        (status = 202, description = "Stored; applied unless that took over 30 s", body = RegulationCreated),
        (status = 400, description = "Not a valid regulation", body = ErrorBody),
        (status = 401, description = "No or a wrong admin token", body = ErrorBody),
        (status = 404, description = "A source that is not configured", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn create_regulation(
    _: Admin,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let limit = state.config.current().server.max_batch_bytes * 2;
    let body = read_json_body(&req, payload, limit).await?;
    let request: RegulationRequest = parse_body(&body, |field| match field {
        "regulationType" => Some("DELETE_ONLY or SUPPRESS_WITH_DELETE"),
        "subjectType" => Some("USER_ID"),
        "subjectIds" => Some("a non-empty array of user ids"),
        "subjectIds[]" => Some("a non-empty string"),
        "sources" => Some("a non-empty array of source names"),
        "sources[]" => Some("a source name"),
        _ => None,
    })?;
    let regulation = regulation_of(request, &state)?;
    let id = regulation.id.clone();
    let subjects = regulation.subject_ids.len();
    state.store.add_regulation(regulation).await?;
    log::info!("regulation {id} accepted: {subjects} subject(s)");
    // Answer once it is applied: after the 202 nothing it purged starts being sent. If
    // applying is slow or fails, it is stored and is applied later (at the latest at the
    // next start); the 202 stands.
    match tokio::time::timeout(APPLY_WAIT, state.deletion.send(RegulationAdded)).await {
        Ok(Ok(Ok(()))) => {}
        _ => log::warn!("regulation {id} stored but not applied yet; it will be"),
    }
    Ok(HttpResponse::Accepted().json(RegulationCreated { regulation_id: id }))
}

/// What the request asks for, checked against the limits and the configuration.
fn regulation_of(request: RegulationRequest, state: &ApiState) -> Result<Regulation, ApiError> {
    let bad = |message: String| Err(ApiError::BadRequest(message));
    if request.subject_ids.is_empty() {
        return bad("`subjectIds` must be a non-empty array of user ids".into());
    }
    if request.subject_ids.len() > MAX_SUBJECTS {
        return bad(format!(
            "`subjectIds` has {} entries; at most {MAX_SUBJECTS} are allowed",
            request.subject_ids.len()
        ));
    }
    if let Some(i) = request.subject_ids.iter().position(String::is_empty) {
        return bad(format!("`subjectIds[{i}]` must be a non-empty string"));
    }
    if let Some(sources) = &request.sources {
        if sources.is_empty() {
            return bad("`sources` must be a non-empty array of source names".into());
        }
        let config = state.config.current();
        for (i, name) in sources.iter().enumerate() {
            if !config.sources.iter().any(|s| &s.name == name) {
                return Err(ApiError::NotFound(format!(
                    "`sources[{i}]` is not a configured source"
                )));
            }
        }
    }
    // One notification per user however often a user is listed.
    let mut seen = std::collections::HashSet::new();
    let subject_ids: Vec<String> = request
        .subject_ids
        .into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect();
    Ok(Regulation {
        id: uuid::Uuid::new_v4().to_string(),
        regulation_type: request.regulation_type.into(),
        subject_ids,
        sources: request.sources,
        created_at_ms: now_ms(),
        applied_at_ms: None,
    })
}

/// `GET /admin/v1/regulations/{id}`: the regulation and its notifications' progress.
#[utoipa::path(get, path = "/admin/v1/regulations/{id}", tag = "regulations",
    params(("id" = String, Path, description = "The `regulationId`")),
    responses(
        (status = 200, description = "The regulation and its progress", body = RegulationStatus),
        (status = 401, description = "No or a wrong admin token", body = ErrorBody),
        (status = 404, description = "No such regulation", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn regulation(
    _: Admin,
    id: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<web::Json<RegulationStatus>, ApiError> {
    regulation_status(&state, &id)
        .await?
        .map(web::Json)
        .ok_or_else(|| ApiError::NotFound(format!("no regulation {id}")))
}

/// A regulation and its notifications' progress; `None` if there is no such regulation.
pub async fn regulation_status(
    state: &ApiState,
    id: &str,
) -> Result<Option<RegulationStatus>, ApiError> {
    let Some(progress) = state.store.regulation_progress(id).await? else {
        return Ok(None);
    };
    let r = &progress.regulation;
    let status = match r.applied_at_ms {
        None => RegulationState::Pending,
        Some(_) if progress.notifications.iter().any(|n| n.pending > 0) => {
            RegulationState::Notifying
        }
        Some(_) if progress.notifications.iter().any(|n| n.dead > 0) => {
            RegulationState::DoneWithFailures
        }
        Some(_) => RegulationState::Done,
    };
    Ok(Some(RegulationStatus {
        regulation_id: r.id.clone(),
        regulation_type: r.regulation_type.into(),
        subject_type: SubjectType::UserId,
        subject_count: r.subject_ids.len(),
        sources: r.sources.clone(),
        status,
        created_at: iso(r.created_at_ms),
        applied_at: r.applied_at_ms.map(iso),
        purged_deliveries: progress.purged_deliveries,
        notifications: progress.notifications.iter().map(Into::into).collect(),
    }))
}

/// The latest `limit` regulations with their progress, newest first.
pub async fn recent_regulations(
    state: &ApiState,
    limit: usize,
) -> Result<Vec<RegulationStatus>, ApiError> {
    let mut list = Vec::new();
    for regulation in state.store.recent_regulations(limit).await? {
        if let Some(status) = regulation_status(state, &regulation.id).await? {
            list.push(status);
        }
    }
    Ok(list)
}

/// `GET /admin/v1/regulations?limit=`.
#[utoipa::path(get, path = "/admin/v1/regulations", tag = "regulations",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 100,
        description = "Regulations to list, newest first (default 20)")),
    responses(
        (status = 200, description = "The latest regulations with their progress", body = RegulationList),
        (status = 400, description = "A bad `limit`", body = ErrorBody),
        (status = 401, description = "No or a wrong admin token", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn regulations(
    _: Admin,
    req: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<web::Json<RegulationList>, ApiError> {
    let mut limit = REGULATION_LIST;
    for (key, value) in form_urlencoded::parse(req.query_string().as_bytes()) {
        match (key.as_ref(), value.parse::<usize>()) {
            ("limit", Ok(n @ 1..=REGULATION_LIST_MAX)) => limit = n,
            ("limit", _) => {
                return Err(ApiError::BadRequest(format!(
                    "`limit` must be 1 to {REGULATION_LIST_MAX}"
                )))
            }
            (other, _) => {
                return Err(ApiError::BadRequest(format!(
                    "`{}` is not a parameter of this request (limit)",
                    crate::redact::log_text(other, 100)
                )))
            }
        }
    }
    Ok(web::Json(RegulationList {
        regulations: recent_regulations(&state, limit).await?,
    }))
}

/// Every suppression.
pub async fn suppression_list(state: &ApiState) -> Result<SuppressionList, ApiError> {
    let list = state.store.suppressions().await?;
    Ok(SuppressionList {
        suppressions: list.iter().map(Into::into).collect(),
    })
}

/// Accepts `user_id`'s events in `source` again.
pub async fn lift(state: &ApiState, source: &str, user_id: &str) -> Result<(), ApiError> {
    if !state.store.lift_suppression(source, user_id).await? {
        return Err(ApiError::NotFound(format!(
            "no suppression of that user in source {source:?}"
        )));
    }
    log::info!("suppression lifted in source {source}");
    Ok(())
}

/// `GET /admin/v1/suppressions`: users whose events are dropped at ingest.
#[utoipa::path(get, path = "/admin/v1/suppressions", tag = "regulations",
    responses(
        (status = 200, description = "Every suppression", body = SuppressionList),
        (status = 401, description = "No or a wrong admin token", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn suppressions(
    _: Admin,
    state: web::Data<ApiState>,
) -> Result<web::Json<SuppressionList>, ApiError> {
    suppression_list(&state).await.map(web::Json)
}

/// `DELETE /admin/v1/suppressions/{source}/{userId}`: the user's events are accepted again.
#[utoipa::path(delete, path = "/admin/v1/suppressions/{source}/{user_id}", tag = "regulations",
    params(("source" = String, Path), ("user_id" = String, Path)),
    responses(
        (status = 200, description = "Lifted", body = Success),
        (status = 401, description = "No or a wrong admin token", body = ErrorBody),
        (status = 404, description = "No such suppression", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn lift_suppression(
    _: Admin,
    path: web::Path<(String, String)>,
    state: web::Data<ApiState>,
) -> Result<web::Json<Success>, ApiError> {
    let (source, user_id) = path.into_inner();
    lift(&state, &source, &user_id).await?;
    Ok(web::Json(Success { success: true }))
}

/// In every configured source, the event with `message_id` and each of its deliveries
/// with every attempt; `None` if no source has it.
pub async fn find_message(
    state: &ApiState,
    message_id: &str,
) -> Result<Option<MessageView>, ApiError> {
    let mut events = Vec::new();
    for source in &state.config.current().sources {
        let Some(event) = state.store.find_event(&source.name, message_id).await? else {
            continue;
        };
        let deliveries = state.store.deliveries_of(&source.name, message_id).await?;
        events.push(MessageEvent {
            source: source.name.clone(),
            event_type: event.event_type.clone(),
            received_at: iso(event.received_at_ms),
            deliveries: deliveries.iter().map(Into::into).collect(),
        });
    }
    Ok((!events.is_empty()).then(|| MessageView {
        message_id: message_id.to_string(),
        events,
    }))
}

/// The latest `limit` events of `user_id` in every source, each with its deliveries.
pub async fn messages_of_user(
    state: &ApiState,
    user_id: &str,
    limit: usize,
) -> Result<Vec<MessageView>, ApiError> {
    let mut found = Vec::new();
    for event in state.store.events_of_user(user_id, limit).await? {
        let deliveries = state
            .store
            .deliveries_of(&event.source, &event.message_id)
            .await?;
        found.push(MessageView {
            message_id: event.message_id.clone(),
            events: vec![MessageEvent {
                source: event.source.clone(),
                event_type: event.event_type.clone(),
                received_at: iso(event.received_at_ms),
                deliveries: deliveries.iter().map(Into::into).collect(),
            }],
        });
    }
    Ok(found)
}

/// `GET /admin/v1/messages/{messageId}`.
#[utoipa::path(get, path = "/admin/v1/messages/{message_id}", tag = "messages",
    params(("message_id" = String, Path, description = "The event's `messageId`")),
    responses(
        (status = 200, description = "The event in each source that has it, its deliveries and attempts", body = MessageView),
        (status = 401, description = "No or a wrong admin token", body = ErrorBody),
        (status = 404, description = "No event with that messageId", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn message(
    _: Admin,
    message_id: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<web::Json<MessageView>, ApiError> {
    find_message(&state, &message_id)
        .await?
        .map(web::Json)
        .ok_or_else(|| {
            // The id as sent, cut short: an error never echoes kilobytes back.
            ApiError::NotFound(format!(
                "no event with messageId \"{}\"",
                crate::redact::log_text(&message_id, 100)
            ))
        })
}

/// Each configured destination's queue, health and state.
pub async fn destination_list(state: &ApiState) -> Result<DestinationList, ApiError> {
    let now = now_ms();
    let stats = state.store.destination_stats(now).await?;
    let controls = state.store.destination_controls().await?;
    let config = state.config.current();
    // Nothing can be sent while the store cannot record what is sent.
    let store_problem = state.store.health().problem();
    let mut destinations = Vec::new();
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
            let state = if disabled_reason.is_some() {
                DestinationState::Disabled
            } else if s.paused {
                DestinationState::Paused
            } else if store_problem.is_some() {
                DestinationState::Blocked
            } else {
                DestinationState::Active
            };
            destinations.push(DestinationView {
                // Named from the configuration: a destination without figures yet has none.
                source: source.name.clone(),
                destination: destination.name.clone(),
                blocked_reason: (state == DestinationState::Blocked)
                    .then(|| store_problem.clone())
                    .flatten(),
                disabled_reason,
                disabled_at: control.disabled_at_ms.map(iso),
                gone_urls: control
                    .gone_urls
                    .iter()
                    .map(|u| crate::redact::url(u))
                    .collect(),
                failing_since: control.failing_since_ms.map(iso),
                ..DestinationView::of_stats(&s, state, now)
            });
        }
    }
    // Backlogs of destinations no longer configured: shown, so that they are not lost
    // from sight (and their metrics explained).
    for s in &stats {
        if config.has_destination(&s.source, &s.destination) || (s.pending == 0 && s.dead == 0) {
            continue;
        }
        destinations.push(DestinationView {
            disabled_reason: Some(
                "not in the configuration: its deliveries wait until it is configured again".into(),
            ),
            ..DestinationView::of_stats(s, DestinationState::Orphaned, now)
        });
    }
    Ok(DestinationList { destinations })
}

/// `GET /admin/v1/destinations`.
#[utoipa::path(get, path = "/admin/v1/destinations", tag = "destinations",
    responses(
        (status = 200, description = "Every configured destination", body = DestinationList),
        (status = 401, description = "No or a wrong admin token", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn destinations(
    _: Admin,
    state: web::Data<ApiState>,
) -> Result<web::Json<DestinationList>, ApiError> {
    destination_list(&state).await.map(web::Json)
}

/// Pauses or resumes a configured destination (a resume also enables one disabled for
/// its failures, and gives its gone URLs another chance).
pub async fn set_paused(
    state: &ApiState,
    source: &str,
    destination: &str,
    paused: bool,
) -> Result<PauseState, ApiError> {
    let Some(enabled) = state
        .config
        .current()
        .destination(source, destination)
        .map(|d| d.enabled)
    else {
        return Err(ApiError::NotFound(format!(
            "no destination {source}/{destination}"
        )));
    };
    state
        .store
        .set_paused(source, destination, paused, now_ms())
        .await?;
    if !paused {
        state
            .store
            .change_control(source, destination, ControlChange::Enabled, now_ms())
            .await?;
    }
    state.router.do_send(PauseDestination {
        source: source.to_string(),
        destination: destination.to_string(),
        paused,
    });
    Ok(PauseState {
        source: source.to_string(),
        destination: destination.to_string(),
        // Resumed, a destination the configuration disables still sends nothing.
        state: if paused {
            DestinationState::Paused
        } else if !enabled {
            DestinationState::Disabled
        } else {
            DestinationState::Active
        },
    })
}

/// `POST /admin/v1/destinations/{source}/{destination}/pause`.
#[utoipa::path(post, path = "/admin/v1/destinations/{source}/{destination}/pause", tag = "destinations",
    params(("source" = String, Path), ("destination" = String, Path)),
    responses(
        (status = 200, description = "Paused: events are stored, nothing is sent; kept across restarts", body = PauseState),
        (status = 401, description = "No or a wrong admin token", body = ErrorBody),
        (status = 404, description = "No such configured destination", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn pause(
    _: Admin,
    path: web::Path<(String, String)>,
    state: web::Data<ApiState>,
) -> Result<web::Json<PauseState>, ApiError> {
    let (source, destination) = path.into_inner();
    set_paused(&state, &source, &destination, true)
        .await
        .map(web::Json)
}

/// `POST /admin/v1/destinations/{source}/{destination}/resume`.
#[utoipa::path(post, path = "/admin/v1/destinations/{source}/{destination}/resume", tag = "destinations",
    params(("source" = String, Path), ("destination" = String, Path)),
    responses(
        (status = 200, description = "Active again (also after being disabled)", body = PauseState),
        (status = 401, description = "No or a wrong admin token", body = ErrorBody),
        (status = 404, description = "No such configured destination", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn resume(
    _: Admin,
    path: web::Path<(String, String)>,
    state: web::Data<ApiState>,
) -> Result<web::Json<PauseState>, ApiError> {
    let (source, destination) = path.into_inner();
    set_paused(&state, &source, &destination, false)
        .await
        .map(web::Json)
}

fn time_param(name: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    match value {
        None => Ok(None),
        Some(text) => crate::segment::time::parse_iso8601(text)
            .map(|t| Some(t.timestamp_millis()))
            .ok_or_else(|| ApiError::BadRequest(format!("`{name}` is not an ISO 8601 date-time"))),
    }
}

/// One page of dead letters.
pub async fn dead_letter_page(
    state: &ApiState,
    params: DeadLetterParams,
) -> Result<DeadLetterPage, ApiError> {
    let limit = match params.limit {
        None => DEAD_LETTER_PAGE,
        Some(n @ 1..=DEAD_LETTER_PAGE_MAX) => n as usize,
        Some(_) => {
            return Err(ApiError::BadRequest(format!(
                "`limit` must be 1 to {DEAD_LETTER_PAGE_MAX}"
            )))
        }
    };
    let query = DeadLetterQuery {
        source: params.source,
        destination: params.destination,
        since_ms: time_param("since", params.since.as_deref())?,
        until_ms: time_param("until", params.until.as_deref())?,
        after_id: params.cursor,
        limit,
    };
    let letters = state.store.dead_letters(query).await?;
    let next_cursor = (letters.len() == limit)
        .then(|| letters.last().map(|l| l.delivery_id))
        .flatten();
    Ok(DeadLetterPage {
        dead_letters: letters.iter().map(Into::into).collect(),
        next_cursor,
    })
}

/// `GET /admin/v1/dead-letters?source=&destination=&since=&until=&cursor=&limit=`.
#[utoipa::path(get, path = "/admin/v1/dead-letters", tag = "dead letters",
    params(DeadLetterParams),
    responses(
        (status = 200, description = "A page of dead letters, oldest first", body = DeadLetterPage),
        (status = 400, description = "A bad filter", body = ErrorBody),
        (status = 401, description = "No or a wrong admin token", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn dead_letters(
    _: Admin,
    req: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<web::Json<DeadLetterPage>, ApiError> {
    let params = dead_letter_params(req.query_string())?;
    dead_letter_page(&state, params).await.map(web::Json)
}

/// The dead-letter filters of a query string; each bad one is a 400 naming it.
fn dead_letter_params(query: &str) -> Result<DeadLetterParams, ApiError> {
    let mut params = DeadLetterParams {
        source: None,
        destination: None,
        since: None,
        until: None,
        cursor: None,
        limit: None,
    };
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = value.into_owned();
        match key.as_ref() {
            "source" => params.source = Some(value),
            "destination" => params.destination = Some(value),
            "since" => params.since = Some(value),
            "until" => params.until = Some(value),
            "cursor" => {
                params.cursor = Some(value.parse().map_err(|_| {
                    ApiError::BadRequest(
                        "`cursor` must be the `nextCursor` of an earlier page".into(),
                    )
                })?)
            }
            "limit" => {
                params.limit = Some(value.parse().map_err(|_| {
                    ApiError::BadRequest(format!("`limit` must be 1 to {DEAD_LETTER_PAGE_MAX}"))
                })?)
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "`{}` is not a parameter of this request (source, destination, since, until, cursor, limit)",
                    crate::redact::log_text(other, 100)
                )))
            }
        }
    }
    Ok(params)
}

/// Every configured `(source, destination)`.
fn configured_destinations(config: &crate::config::Config) -> Vec<DestinationKey> {
    config
        .sources
        .iter()
        .flat_map(|s| {
            s.destinations
                .iter()
                .map(move |d| (s.name.clone(), d.name.clone()))
        })
        .collect()
}

/// Makes the selected dead letters pending again and wakes their destinations.
pub async fn replay_dead_letters(
    state: &ApiState,
    request: ReplayRequest,
) -> Result<Replayed, ApiError> {
    let asked = match &request {
        ReplayRequest::Ids(ReplayIds { delivery_ids }) => Some(
            delivery_ids
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len() as u64,
        ),
        ReplayRequest::Destination(_) => None,
    };
    let selection = match request {
        ReplayRequest::Ids(ReplayIds { delivery_ids }) if delivery_ids.is_empty() => {
            return Err(ApiError::BadRequest(
                "`deliveryIds` must be a non-empty array of ids".into(),
            ))
        }
        ReplayRequest::Ids(ReplayIds { delivery_ids }) => ReplaySelection::Ids {
            ids: delivery_ids,
            within: configured_destinations(&state.config.current()),
        },
        ReplayRequest::Destination(d) => {
            if !state
                .config
                .current()
                .has_destination(&d.source, &d.destination)
            {
                return Err(ApiError::NotFound(format!(
                    "no destination {}/{}",
                    d.source, d.destination
                )));
            }
            ReplaySelection::Destination {
                since_ms: time_param("since", d.since.as_deref())?,
                until_ms: time_param("until", d.until.as_deref())?,
                source: d.source,
                destination: d.destination,
            }
        }
    };
    let replayed = state.store.replay_dead_letters(selection, now_ms()).await?;
    let total: u64 = replayed.iter().map(|(_, _, n)| n).sum();
    log::info!("dead letters replayed: {total}");
    let woken: Vec<_> = replayed.into_iter().map(|(s, d, _)| (s, d)).collect();
    state.router.do_send(WakeDestinations(woken));
    Ok(Replayed {
        replayed: total,
        not_dead_letters: asked.map(|n| n.saturating_sub(total)),
    })
}

/// `POST /admin/v1/dead-letters/replay` with `{"deliveryIds": [...]}` or
/// `{"source": ..., "destination": ..., "since": ..., "until": ...}`.
#[utoipa::path(post, path = "/admin/v1/dead-letters/replay", tag = "dead letters",
    request_body = ReplayRequest,
    responses(
        (status = 200, description = "How many were made pending again", body = Replayed),
        (status = 400, description = "Neither ids nor a destination", body = ErrorBody),
        (status = 401, description = "No or a wrong admin token", body = ErrorBody),
        (status = 404, description = "No such configured destination", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn replay(
    _: Admin,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<web::Json<Replayed>, ApiError> {
    let body = read_json_body(&req, payload, state.config.current().server.max_batch_bytes).await?;
    let request = match serde_json::from_slice::<serde_json::Value>(&body) {
        Err(e) => return Err(ApiError::BadRequest(format!("body is not valid JSON: {e}"))),
        Ok(value)
            if value.get("deliveryIds").is_some()
                && (value.get("source").is_some() || value.get("destination").is_some()) =>
        {
            return Err(ApiError::BadRequest(
                "give `deliveryIds`, or `source` and `destination`, not both".into(),
            ))
        }
        // Which of the two shapes is meant decides which errors to name.
        Ok(value) if value.get("deliveryIds").is_some() => {
            ReplayRequest::Ids(parse_body(&body, |field| match field {
                "deliveryIds" => Some("a non-empty array of ids"),
                "deliveryIds[]" => Some("a delivery id (an integer)"),
                _ => None,
            })?)
        }
        Ok(_) => ReplayRequest::Destination(parse_body(&body, |field| match field {
            "source" | "destination" => Some("a name (or give `deliveryIds`)"),
            "since" | "until" => Some("an ISO 8601 date-time"),
            _ => None,
        })?),
    };
    replay_dead_letters(&state, request).await.map(web::Json)
}

/// `GET /admin/v1/instances`: every instance on this store (one on SQLite), live or not.
#[utoipa::path(get, path = "/admin/v1/instances", tag = "instances",
    responses(
        (status = 200, description = "Every instance the store knows", body = InstanceList),
        (status = 401, description = "No or a wrong admin token", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn instances(
    _: Admin,
    state: web::Data<ApiState>,
) -> Result<web::Json<InstanceList>, ApiError> {
    instance_list(&state).await.map(web::Json)
}

pub async fn instance_list(state: &ApiState) -> Result<InstanceList, ApiError> {
    let list = state.store.instances(now_ms()).await?;
    let mine = list
        .iter()
        .find(|i| i.info.id == state.instance_id)
        .map(|i| i.info.config_fingerprint.clone());
    Ok(InstanceList {
        instances: list
            .iter()
            .map(|i| InstanceView::new(i, mine.as_deref(), &state.instance_id))
            .collect(),
    })
}
