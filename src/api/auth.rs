//! The admin token, checked once per request by an extractor: a handler that takes
//! [`Admin`] is only reached with the right token.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};

use super::{ApiError, ApiState};

/// Proof that the request carries `Authorization: Bearer <server.admin_token>`.
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Admin, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(state) = req.app_data::<web::Data<ApiState>>() else {
            return ready(Err(ApiError::Unavailable("not ready".into())));
        };
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        ready(check(req, state, presented).map(|()| Admin))
    }
}

/// With no token configured the admin API does not exist (404); a missing or wrong token
/// is 401, and a wrong one is logged with the client's address (never the token).
pub fn check(req: &HttpRequest, state: &ApiState, presented: Option<&str>) -> Result<(), ApiError> {
    let config = state.config.current();
    let Some(token) = &config.server.admin_token else {
        return Err(ApiError::NotFound(format!(
            "no endpoint {} {}",
            req.method(),
            req.path()
        )));
    };
    let presented = presented.ok_or_else(|| {
        ApiError::Unauthorized("the admin API needs Authorization: Bearer <admin_token>".into())
    })?;
    if token.matches(presented.trim()) {
        Ok(())
    } else {
        state
            .metrics
            .admin_auth_failures
            .with_label_values(&["api"])
            .inc();
        let peer = req.peer_addr().map(|a| a.ip().to_string());
        log::warn!(
            "wrong admin token from {} for {} {}",
            peer.as_deref().unwrap_or("an unknown address"),
            req.method(),
            crate::redact::log_text(req.path(), 200)
        );
        Err(ApiError::Unauthorized("wrong admin token".into()))
    }
}
