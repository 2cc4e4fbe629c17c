//! Liveness, readiness and metrics.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::ApiState;

/// Liveness and readiness, on every listener.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

/// `/metrics`, with the operators' endpoints.
pub fn configure_metrics(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics));
}

/// Prometheus text format. The per-destination gauges and the store's size are read
/// from the store now.
async fn metrics(state: web::Data<ApiState>) -> HttpResponse {
    let now = crate::clock::now_ms();
    match state.store.destination_stats(now).await {
        Ok(stats) => {
            let config = state.config.current();
            state
                .metrics
                .set_destination_gauges(&stats, now, |source, destination| {
                    config.has_destination(source, destination)
                })
        }
        Err(e) => log::warn!("metrics: destination gauges not refreshed: {e}"),
    }
    match state.store.size_bytes().await {
        Ok(bytes) => state.metrics.store_size.set(bytes as i64),
        Err(e) => log::warn!("metrics: store size not refreshed: {e}"),
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

/// 200 while the process serves HTTP.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// 200 once the store is open and the actors run (the HTTP server is only started after
/// both, so serving this route is the proof) and while the store takes writes; 503 with
/// the reason while it cannot (ingest would answer 503 too).
async fn readyz(state: web::Data<ApiState>) -> HttpResponse {
    match state.store.health().problem() {
        None => HttpResponse::Ok().json(json!({"status": "ready"})),
        Some(problem) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "unavailable", "reason": problem})),
    }
}
