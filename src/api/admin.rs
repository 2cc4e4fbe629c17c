//! The admin API under `/admin/v1`, behind `Authorization: Bearer <admin_token>`:
//! regulations (user deletion requests) and suppressions.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::DateTime;
use serde_json::{json, Value};

use super::body::read_json_body;
use super::{ApiError, ApiState};
use crate::actors::deletion::RegulationAdded;
use crate::segment::time::format_iso8601;
use crate::store::{Regulation, RegulationType};

/// Segment's limit on subjects in one regulation.
pub const MAX_SUBJECTS: usize = 5_000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/v1/regulations", web::post().to(create_regulation))
        .route("/admin/v1/regulations/{id}", web::get().to(regulation))
        .route("/admin/v1/suppressions", web::get().to(suppressions))
        .route(
            "/admin/v1/suppressions/{source}/{user_id}",
            web::delete().to(lift_suppression),
        );
}

/// Admits the request if it carries the admin token. With no token configured the admin
/// API does not exist (404); a missing or wrong token is 401.
fn authorize(req: &HttpRequest, state: &ApiState) -> Result<(), ApiError> {
    let Some(token) = &state.config.server.admin_token else {
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

fn iso(ms: i64) -> String {
    format_iso8601(DateTime::from_timestamp_millis(ms).unwrap_or_default())
}

/// `POST /admin/v1/regulations`: stored before the 202; applied by the deletion actor.
async fn create_regulation(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let body = read_json_body(&req, payload, state.config.server.max_batch_bytes * 2).await?;
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
    state.deletion.do_send(RegulationAdded);
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
                if !state.config.sources.iter().any(|s| s.name == name) {
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
        created_at_ms: chrono::Utc::now().timestamp_millis(),
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
