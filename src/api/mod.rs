//! The HTTP API (actix-web): Segment-compatible ingest, health, and the JSON error shape
//! every endpoint shares.

pub mod admin;
pub mod auth;
mod body;
mod console;
mod health;
mod ingest;
mod openapi;

use std::sync::Arc;

use actix::Addr;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;

use crate::actors::deletion::DeletionActor;
use crate::actors::router::Router;
use crate::config::SharedConfig;
use crate::ingest::IngestService;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// What every handler can reach.
pub struct ApiState {
    pub config: SharedConfig,
    pub store: Arc<dyn Store>,
    pub router: Addr<Router>,
    /// Validates, stores and routes events.
    pub ingest: IngestService,
    pub deletion: Addr<DeletionActor>,
    pub metrics: Arc<Metrics>,
    /// This instance's id in the store's registry.
    pub instance_id: String,
    /// Wrong admin tokens per client address, for the backoff.
    pub failed_auth: auth::FailedAuth,
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
    /// Answered with `Retry-After`.
    #[error("{message}")]
    TooManyRequests { message: String, retry_after_s: u64 },
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
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let ApiError::TooManyRequests { retry_after_s, .. } = self {
            response.insert_header((header::RETRY_AFTER, retry_after_s.to_string()));
        }
        response.json(ErrorBody {
            success: false,
            error: self.to_string(),
        })
    }
}

/// Every error's body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Always false.
    pub success: bool,
    /// What is wrong, and where.
    pub error: String,
}

/// The store's own words are for the operator (the log); the client hears that it may
/// retry.
impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        log::error!("store: {error}");
        match error {
            StoreError::Full => {
                ApiError::Unavailable("the store is out of space; retry later".into())
            }
            _ => ApiError::Unavailable("the store is unavailable; retry later".into()),
        }
    }
}

/// Registers every route, for one listener.
pub fn configure(cfg: &mut web::ServiceConfig) {
    public_routes(cfg);
    configure_operators(cfg);
    cfg.default_service(web::to(|req| no_route(req, Served::All)));
}

/// What the public listener serves when operators have a listener of their own: ingest,
/// health and the API description.
pub fn configure_public(cfg: &mut web::ServiceConfig) {
    public_routes(cfg);
    cfg.default_service(web::to(|req| no_route(req, Served::Public)));
}

fn public_routes(cfg: &mut web::ServiceConfig) {
    ingest::configure(cfg);
    openapi::configure(cfg);
    health::configure(cfg);
}

/// The operators' endpoints: the admin API, the console and `/metrics`.
fn configure_operators(cfg: &mut web::ServiceConfig) {
    admin::configure(cfg);
    console::configure(cfg);
    health::configure_metrics(cfg);
}

/// The operators' own listener (`server.admin_listen`): their endpoints and health.
pub fn configure_operators_alone(cfg: &mut web::ServiceConfig) {
    configure_operators(cfg);
    health::configure(cfg);
    cfg.default_service(web::to(|req| no_route(req, Served::Operators)));
}

/// Which documented paths a listener serves.
#[derive(Clone, Copy)]
enum Served {
    All,
    Public,
    Operators,
}

/// 405 with `Allow` for a documented path served here asked with another method; 404
/// otherwise.
async fn no_route(req: HttpRequest, listener: Served) -> HttpResponse {
    let admin = req.path().starts_with("/admin/");
    let served = match listener {
        Served::All => true,
        Served::Public => !admin,
        Served::Operators => admin,
    };
    if let Some(allowed) = openapi::methods_of(req.path()).filter(|_| served) {
        return HttpResponse::MethodNotAllowed()
            .insert_header((actix_web::http::header::ALLOW, allowed.join(", ")))
            .json(ErrorBody {
                success: false,
                error: format!(
                    "{} {}: use {}",
                    req.method(),
                    req.path(),
                    allowed.join(" or ")
                ),
            });
    }
    ApiError::NotFound(format!("no endpoint {} {}", req.method(), req.path())).error_response()
}
