//! The HTTP API (actix-web): Segment-compatible ingest, health, and the JSON error shape
//! every endpoint shares.

mod admin;
mod body;
mod health;
mod ingest;

use std::sync::Arc;

use actix::Addr;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde_json::json;

use crate::actors::deletion::DeletionActor;
use crate::actors::router::Router;
use crate::config::SharedConfig;
use crate::metrics::Metrics;
use crate::store::Store;

/// What every handler can reach.
pub struct ApiState {
    pub config: SharedConfig,
    pub store: Arc<dyn Store>,
    pub router: Addr<Router>,
    pub deletion: Addr<DeletionActor>,
    pub metrics: Arc<Metrics>,
    /// This instance's id in the store's registry.
    pub instance_id: String,
}

/// An error answered as `{"success": false, "error": "<what and where>"}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unavailable(String),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .json(json!({"success": false, "error": self.to_string()}))
    }
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    ingest::configure(cfg);
    admin::configure(cfg);
    health::configure(cfg);
    cfg.default_service(web::to(no_route));
}

async fn no_route(req: HttpRequest) -> HttpResponse {
    ApiError::NotFound(format!("no endpoint {} {}", req.method(), req.path())).error_response()
}
