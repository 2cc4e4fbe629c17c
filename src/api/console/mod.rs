//! `/console`: the operator's web console, served by the binary. Sign in with the admin
//! token; then destinations (health, pause, resume), messages and their attempts, dead
//! letters and their replay, regulations and suppressions, instances. Pages are built
//! from the same operations as the admin API ([`super::admin`]).

mod pages;
mod session;

use std::future::{ready, Ready};

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};

use super::admin::{self, model::*};
use super::{ApiError, ApiState};
use crate::clock::now_ms;
use pages::{DeadLetterFilters, MessageSearch, Page};
pub use session::Session;

/// Messages listed for a `userId`, at most.
const USER_MESSAGES: usize = 20;
/// Regulations listed, at most.
const REGULATIONS_LISTED: usize = 50;
/// The largest form accepted.
const MAX_FORM_BYTES: usize = 256 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/console")
            .app_data(web::PayloadConfig::new(MAX_FORM_BYTES))
            .route("", web::get().to(home))
            .route("/", web::get().to(home))
            .route("/login", web::get().to(login_page))
            .route("/login", web::post().to(login))
            .route("/logout", web::post().to(logout))
            .route("/destinations", web::get().to(destinations))
            .route(
                "/destinations/{source}/{destination}/{action}",
                web::post().to(pause_or_resume),
            )
            .route("/messages", web::get().to(messages))
            .route("/dead-letters", web::get().to(dead_letters))
            .route("/dead-letters/replay", web::post().to(replay))
            .route("/regulations", web::get().to(regulations))
            .route(
                "/suppressions/{source}/{user_id}/lift",
                web::post().to(lift),
            )
            .route("/instances", web::get().to(instances)),
    );
}

/// Why a console request is not served.
#[derive(Debug, thiserror::Error)]
enum ConsoleError {
    /// No admin token is configured: there is no console.
    #[error("no console: server.admin_token is not set")]
    Off,
    #[error("sign in first")]
    SignedOut,
    /// A form posted from elsewhere, or without this session's token.
    #[error("{0}")]
    Forbidden(&'static str),
    /// What the admin operation answered.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl ResponseError for ConsoleError {
    fn status_code(&self) -> StatusCode {
        match self {
            ConsoleError::Off => StatusCode::NOT_FOUND,
            ConsoleError::SignedOut => StatusCode::SEE_OTHER,
            ConsoleError::Forbidden(_) => StatusCode::FORBIDDEN,
            ConsoleError::Api(e) => e.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ConsoleError::SignedOut => redirect("/console/login"),
            _ => html(self.status_code(), pages::problem(&self.to_string())),
        }
    }
}

/// A request from a signed-in browser.
struct SignedIn(Session);

impl FromRequest for SignedIn {
    type Error = ConsoleError;
    type Future = Ready<Result<SignedIn, ConsoleError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(signed_in(req).map(SignedIn))
    }
}

fn signed_in(req: &HttpRequest) -> Result<Session, ConsoleError> {
    let token = admin_token(req)?;
    let cookie = req.cookie(session::COOKIE).ok_or(ConsoleError::SignedOut)?;
    Session::verify(&token, cookie.value(), now_ms() / 1000).ok_or(ConsoleError::SignedOut)
}

fn admin_token(req: &HttpRequest) -> Result<crate::secret::Secret, ConsoleError> {
    req.app_data::<web::Data<ApiState>>()
        .and_then(|state| state.config.current().server.admin_token.clone())
        .ok_or(ConsoleError::Off)
}

/// A form post must come from a page of this console: its `Origin` (sent by browsers with
/// every POST) names this host, and it carries the session's CSRF token.
fn check_form(
    req: &HttpRequest,
    session: Option<&Session>,
    form: &Form,
) -> Result<(), ConsoleError> {
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let host = req.connection_info().host().to_string();
        let origin = origin.to_str().unwrap_or_default();
        let same = origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(&host));
        if !same {
            log::warn!("console: a form post from another site was refused");
            return Err(ConsoleError::Forbidden(
                "cross-site request refused: this form must be posted from webhookd's console",
            ));
        }
    }
    if let Some(session) = session {
        let presented = form.first("csrf").unwrap_or_default();
        if !session.csrf_matches(presented) {
            return Err(ConsoleError::Forbidden(
                "the form's CSRF token is missing or stale: reload the page and try again",
            ));
        }
    }
    Ok(())
}

/// A posted form's fields, repeated ones kept.
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Form {
        Form(form_urlencoded::parse(body).into_owned().collect())
    }

    fn first(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn html(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        // No script at all, styles inline, forms only to this console, never in a frame.
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        // Not `no-referrer`: with it, browsers send `Origin: null` with form posts.
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// Back to `page` with a notice shown once.
fn redirect_with(page: &str, notice: &str) -> HttpResponse {
    redirect(&format!("{page}?notice={}", pages::urlencode(notice)))
}

fn query(req: &HttpRequest) -> Vec<(String, String)> {
    form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .filter(|(_, v)| !v.trim().is_empty())
        .collect()
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim())
}

async fn home(req: HttpRequest) -> Result<HttpResponse, ConsoleError> {
    signed_in(&req)?;
    Ok(redirect("/console/destinations"))
}

async fn login_page(req: HttpRequest) -> Result<HttpResponse, ConsoleError> {
    admin_token(&req)?;
    if signed_in(&req).is_ok() {
        return Ok(redirect("/console/destinations"));
    }
    Ok(html(StatusCode::OK, pages::login(None)))
}

async fn login(req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ConsoleError> {
    let token = admin_token(&req)?;
    let form = Form::parse(&body);
    check_form(&req, None, &form)?;
    let presented = form.first("token").unwrap_or_default();
    let state = req.app_data::<web::Data<ApiState>>();
    let peer = req.peer_addr().map(|a| a.ip());
    if let Some(Err(ApiError::TooManyRequests { retry_after_s, .. })) =
        state.map(|s| s.failed_auth.check(peer))
    {
        let mut page = html(
            StatusCode::TOO_MANY_REQUESTS,
            pages::login(Some(&format!(
                "Too many wrong tokens from this address: wait {retry_after_s} s."
            ))),
        );
        if let Ok(value) = header::HeaderValue::from_str(&retry_after_s.to_string()) {
            page.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return Ok(page);
    }
    if !token.matches(presented.trim()) {
        if let Some(state) = state {
            super::auth::wrong_token(state, peer, "console");
        }
        log::warn!(
            "console: a sign-in with a wrong token from {}",
            peer.map_or_else(|| "an unknown address".into(), |ip| ip.to_string())
        );
        return Ok(html(
            StatusCode::UNAUTHORIZED,
            pages::login(Some("Wrong admin token.")),
        ));
    }
    if let Some(state) = state {
        state.failed_auth.succeeded(peer);
    }
    let (_, value) = Session::start(&token, now_ms() / 1000);
    let cookie = Cookie::build(session::COOKIE, value)
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::seconds(
            session::LIFETIME_S,
        ))
        .finish();
    log::info!("console: signed in");
    let mut answer = redirect("/console/destinations");
    answer
        .add_cookie(&cookie)
        .map_err(|_| ConsoleError::Forbidden("cannot set the session cookie"))?;
    Ok(answer)
}

async fn logout(
    SignedIn(session): SignedIn,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    check_form(&req, Some(&session), &Form::parse(&body))?;
    let mut gone = Cookie::build(session::COOKIE, "")
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .finish();
    gone.make_removal();
    let mut answer = redirect("/console/login");
    answer
        .add_cookie(&gone)
        .map_err(|_| ConsoleError::Forbidden("cannot clear the session cookie"))?;
    Ok(answer)
}

fn page(
    req: &HttpRequest,
    session: &Session,
    which: Page,
    title: &str,
    content: maud::Markup,
) -> HttpResponse {
    let q = query(req);
    let notice = param(&q, "notice");
    html(
        StatusCode::OK,
        pages::layout(which, title, &session.csrf_token(), notice, content),
    )
}

async fn destinations(
    SignedIn(session): SignedIn,
    req: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ConsoleError> {
    let list = admin::destination_list(&state).await?;
    let content = pages::destinations(&list, &session.csrf_token());
    Ok(page(
        &req,
        &session,
        Page::Destinations,
        "Destinations",
        content,
    ))
}

async fn pause_or_resume(
    SignedIn(session): SignedIn,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    body: web::Bytes,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ConsoleError> {
    check_form(&req, Some(&session), &Form::parse(&body))?;
    let (source, destination, action) = path.into_inner();
    let paused = match action.as_str() {
        "pause" => true,
        "resume" => false,
        _ => return Err(ApiError::NotFound(format!("no action {action:?}")).into()),
    };
    admin::set_paused(&state, &source, &destination, paused).await?;
    log::info!(
        "console: {source}/{destination} {}",
        if paused { "paused" } else { "resumed" }
    );
    let done = if paused { "paused" } else { "resumed" };
    Ok(redirect_with(
        "/console/destinations",
        &format!("{source}/{destination} {done}."),
    ))
}

async fn messages(
    SignedIn(session): SignedIn,
    req: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ConsoleError> {
    let q = query(&req);
    let search = MessageSearch {
        message_id: param(&q, "messageId"),
        user_id: param(&q, "userId"),
    };
    let found = match (search.message_id, search.user_id) {
        (Some(id), _) => admin::find_message(&state, id).await?.into_iter().collect(),
        (None, Some(user)) => admin::messages_of_user(&state, user, USER_MESSAGES).await?,
        (None, None) => Vec::new(),
    };
    let searched = search.message_id.is_some() || search.user_id.is_some();
    let content = pages::messages(&search, &found, searched);
    Ok(page(&req, &session, Page::Messages, "Messages", content))
}

async fn dead_letters(
    SignedIn(session): SignedIn,
    req: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ConsoleError> {
    let q = query(&req);
    let filters = DeadLetterFilters {
        source: param(&q, "source"),
        destination: param(&q, "destination"),
        since: param(&q, "since"),
    };
    let params = DeadLetterParams {
        source: filters.source.map(str::to_string),
        destination: filters.destination.map(str::to_string),
        since: filters.since.map(str::to_string),
        until: None,
        cursor: param(&q, "cursor").and_then(|c| c.parse().ok()),
        limit: None,
    };
    let letters = admin::dead_letter_page(&state, params).await?;
    let content = pages::dead_letters(&filters, &letters, &session.csrf_token());
    Ok(page(
        &req,
        &session,
        Page::DeadLetters,
        "Dead letters",
        content,
    ))
}

async fn replay(
    SignedIn(session): SignedIn,
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ConsoleError> {
    let form = Form::parse(&body);
    check_form(&req, Some(&session), &form)?;
    let ids: Vec<i64> = form
        .all("deliveryId")
        .filter_map(|v| v.parse().ok())
        .collect();
    if ids.is_empty() {
        return Ok(redirect_with(
            "/console/dead-letters",
            "Select the dead letters to replay first.",
        ));
    }
    let request = ReplayRequest::Ids(ReplayIds { delivery_ids: ids });
    let replayed = admin::replay_dead_letters(&state, request).await?;
    Ok(redirect_with(
        "/console/dead-letters",
        &format!("{} dead letter(s) replayed.", replayed.replayed),
    ))
}

async fn regulations(
    SignedIn(session): SignedIn,
    req: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ConsoleError> {
    let list = admin::recent_regulations(&state, REGULATIONS_LISTED).await?;
    let suppressions = admin::suppression_list(&state).await?;
    let content = pages::regulations(&list, &suppressions, &session.csrf_token());
    Ok(page(
        &req,
        &session,
        Page::Regulations,
        "Regulations",
        content,
    ))
}

async fn lift(
    SignedIn(session): SignedIn,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ConsoleError> {
    check_form(&req, Some(&session), &Form::parse(&body))?;
    let (source, user_id) = path.into_inner();
    admin::lift(&state, &source, &user_id).await?;
    Ok(redirect_with(
        "/console/regulations",
        &format!("Suppression lifted in {source}."),
    ))
}

async fn instances(
    SignedIn(session): SignedIn,
    req: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ConsoleError> {
    let list = admin::instance_list(&state).await?;
    Ok(page(
        &req,
        &session,
        Page::Instances,
        "Instances",
        pages::instances(&list),
    ))
}
