//! `GET /openapi.json`: OpenAPI 3.1 for the ingest and admin APIs, generated from the
//! handlers' annotations and the request and response types.

use actix_web::{web, HttpResponse};
use serde_json::json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{admin, ingest};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "webhookd",
        description = "Segment-compatible event ingest, and the admin API of webhookd's delivery."
    ),
    paths(
        ingest::track, ingest::identify, ingest::page, ingest::screen, ingest::group,
        ingest::alias, ingest::batch,
        admin::create_regulation, admin::regulations, admin::regulation, admin::suppressions,
        admin::lift_suppression, admin::message, admin::destinations, admin::pause,
        admin::resume, admin::dead_letters, admin::replay, admin::instances,
    ),
    modifiers(&Security),
    tags(
        (name = "ingest", description = "Segment's HTTP Tracking API: events in"),
        (name = "regulations", description = "Deleting users' data, and suppressions"),
        (name = "messages", description = "One event, its deliveries and attempts"),
        (name = "destinations", description = "Queues, health, pause and resume"),
        (name = "dead letters", description = "Deliveries that gave up, and their replay"),
        (name = "instances", description = "webhookd processes on this store"),
    )
)]
pub struct ApiDoc;

/// The two ways in: a source's write key as Basic auth's user name (the password is
/// empty), and the admin token as a Bearer token.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "write_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(openapi_json));
}

async fn openapi_json() -> HttpResponse {
    // The same for the process's life: built once.
    static DOCUMENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(document);
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT.as_str())
}

/// The methods of the documented path `path` matches (`{name}` matches one segment).
pub fn methods_of(path: &str) -> Option<&'static [&'static str]> {
    static ROUTES: std::sync::LazyLock<Vec<(Vec<String>, Vec<&'static str>)>> =
        std::sync::LazyLock::new(|| {
            ApiDoc::openapi()
                .paths
                .paths
                .iter()
                .map(|(pattern, item)| {
                    let methods = [
                        ("GET", item.get.is_some()),
                        ("POST", item.post.is_some()),
                        ("PUT", item.put.is_some()),
                        ("PATCH", item.patch.is_some()),
                        ("DELETE", item.delete.is_some()),
                    ]
                    .into_iter()
                    .filter_map(|(m, has)| has.then_some(m))
                    .collect();
                    (pattern.split('/').map(str::to_string).collect(), methods)
                })
                .collect()
        });
    let segments: Vec<&str> = path.split('/').collect();
    ROUTES.iter().find_map(|(pattern, methods)| {
        let matches = pattern.len() == segments.len()
            && pattern
                .iter()
                .zip(&segments)
                .all(|(p, s)| p == s || (p.starts_with('{') && p.ends_with('}') && !s.is_empty()));
        matches.then_some(methods.as_slice())
    })
}

/// The description as JSON.
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let mut doc = serde_json::to_value(doc).unwrap_or_default();
    // Segment's rule, which a struct cannot say: `userId` or `anonymousId`, not null.
    if let Some(common) = doc.pointer_mut("/components/schemas/Common") {
        let present = |field: &str| json!({"required": [field], "properties": {field: {"not": {"type": "null"}}}});
        common["anyOf"] = json!([present("userId"), present("anonymousId")]);
        // A non-empty string or a number.
        for field in ["userId", "anonymousId"] {
            if let Some(property) = common.pointer_mut(&format!("/properties/{field}")) {
                property["anyOf"] = json!([
                    {"type": "string", "minLength": 1}, {"type": "number"}, {"type": "null"}
                ]);
            }
        }
    }
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}
