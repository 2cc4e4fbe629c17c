//! `webhookd listen`: a receiver for trying webhookd out. It prints every request it
//! gets (method, path, the headers that matter, the body pretty-printed) and whether
//! its signatures verify, and answers with the status asked for.

use std::io::Write;
use std::net::TcpListener;

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use subtle::ConstantTimeEq;

use crate::clock::{iso, now_ms};
use crate::delivery::{signature, standard};

/// The largest body read; a larger one is answered 413.
const MAX_BODY: usize = 8 * 1024 * 1024;
/// Standard Webhooks' tolerance for a `webhook-timestamp` away from now.
const TIMESTAMP_TOLERANCE_S: i64 = 300;
/// Headers printed when present, besides the signatures.
const SHOWN_HEADERS: [&str; 4] = ["content-type", "user-agent", "content-length", "webhook-id"];

/// What `webhookd listen` was asked for.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    /// Segment's `X-Signature` secret (the destination's `shared_secret`).
    pub shared_secret: Option<String>,
    /// A Standard Webhooks secret (`whsec_…`, one of the destination's `signing_secrets`).
    pub signing_secret: Option<String>,
    /// The status every request is answered with.
    pub status: u16,
}

/// Why `webhookd listen` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("--status {0} is not an HTTP status (100 to 599)")]
    Status(u16),
    #[error("--signing-secret: {0}")]
    SigningSecret(String),
    #[error("cannot serve: {0}")]
    Io(#[from] std::io::Error),
}

/// How a signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Verified,
    /// It did not match: the reason.
    Failed(String),
    /// There is no secret to check it with, or nothing to check.
    NotChecked(String),
}

impl Verdict {
    fn line(&self) -> String {
        match self {
            Verdict::Verified => "verified".into(),
            Verdict::Failed(why) => format!("NOT VERIFIED ({why})"),
            Verdict::NotChecked(why) => format!("not checked ({why})"),
        }
    }
}

struct Listener {
    options: ListenOptions,
    /// The decoded Standard Webhooks key.
    signing_key: Option<Vec<u8>>,
    status: StatusCode,
}

/// Serves on `listener` until the process is stopped.
pub async fn run(listener: TcpListener, options: ListenOptions) -> Result<(), ListenError> {
    let status =
        StatusCode::from_u16(options.status).map_err(|_| ListenError::Status(options.status))?;
    let signing_key = options
        .signing_secret
        .as_deref()
        .map(standard::decode_secret)
        .transpose()
        .map_err(ListenError::SigningSecret)?;
    let state = web::Data::new(Listener {
        options,
        signing_key,
        status,
    });
    let address = listener.local_addr()?;
    println!(
        "webhookd listen: http://{address}/ (any path), answering {}",
        status.as_u16()
    );
    let _ = std::io::stdout().flush();
    HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(MAX_BODY))
            .default_service(web::to(receive))
    })
    .workers(1)
    .listen(listener)?
    .run()
    .await?;
    Ok(())
}

async fn receive(req: HttpRequest, body: web::Bytes, state: web::Data<Listener>) -> HttpResponse {
    let report = report(&req, &body, &state);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(report.as_bytes());
    let _ = out.flush();
    HttpResponse::build(state.status)
        .content_type("application/json")
        .body(format!("{{\"status\":{}}}", state.status.as_u16()))
}

/// What is printed for one request.
fn report(req: &HttpRequest, body: &[u8], state: &Listener) -> String {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let mut text = format!(
        "\n── {} {} at {} ({} bytes) → {}\n",
        req.method(),
        crate::redact::log_text(&req.uri().to_string(), 500),
        iso(now_ms()),
        body.len(),
        state.status.as_u16()
    );
    for name in SHOWN_HEADERS {
        if let Some(value) = header(name) {
            text.push_str(&format!(
                "   {name}: {}\n",
                crate::redact::log_text(value, 200)
            ));
        }
    }
    let segment = check_x_signature(header("x-signature"), body, state);
    text.push_str(&format!("   X-Signature: {}\n", segment.line()));
    let standard = check_standard(
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
        body,
        state,
    );
    text.push_str(&format!("   Standard Webhooks: {}\n", standard.line()));
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(json) => {
            let pretty = serde_json::to_string_pretty(&json).unwrap_or_default();
            text.push_str(&pretty);
            text.push('\n');
        }
        Err(_) if body.is_empty() => text.push_str("(no body)\n"),
        Err(_) => {
            text.push_str(&String::from_utf8_lossy(&body[..body.len().min(4096)]));
            text.push('\n');
        }
    }
    text
}

/// Segment's check: `X-Signature` is the hex HMAC-SHA1 of the body with the secret.
fn check_x_signature(presented: Option<&str>, body: &[u8], state: &Listener) -> Verdict {
    match (presented, &state.options.shared_secret) {
        (None, None) => Verdict::NotChecked("none sent".into()),
        (None, Some(_)) => Verdict::Failed("missing, but --shared-secret is set".into()),
        (Some(_), None) => Verdict::NotChecked("no --shared-secret".into()),
        (Some(presented), Some(secret)) => {
            let expected = signature::sign(secret, body);
            if bool::from(expected.as_bytes().ct_eq(presented.trim().as_bytes())) {
                Verdict::Verified
            } else {
                Verdict::Failed("does not match the body and --shared-secret".into())
            }
        }
    }
}

/// Standard Webhooks' check: one of the `v1,` signatures in `webhook-signature` is the
/// HMAC-SHA256 of `id.timestamp.body`, and the timestamp is within five minutes.
fn check_standard(
    id: Option<&str>,
    timestamp: Option<&str>,
    signatures: Option<&str>,
    body: &[u8],
    state: &Listener,
) -> Verdict {
    let (Some(id), Some(timestamp), Some(signatures)) = (id, timestamp, signatures) else {
        return match state.signing_key {
            Some(_) => Verdict::Failed("webhook-id, -timestamp or -signature missing".into()),
            None => Verdict::NotChecked("none sent".into()),
        };
    };
    let Some(key) = &state.signing_key else {
        return Verdict::NotChecked("no --signing-secret".into());
    };
    let Ok(sent_at) = timestamp.trim().parse::<i64>() else {
        return Verdict::Failed("webhook-timestamp is not a number".into());
    };
    let expected = standard::signature_header(std::slice::from_ref(key), id, sent_at, body);
    let matches = signatures
        .split_whitespace()
        .any(|s| bool::from(s.as_bytes().ct_eq(expected.as_bytes())));
    if !matches {
        return Verdict::Failed("no signature matches the body and --signing-secret".into());
    }
    let age = now_ms() / 1000 - sent_at;
    if age.abs() > TIMESTAMP_TOLERANCE_S {
        return Verdict::Failed(format!("signed, but {age} s away from now"));
    }
    Verdict::Verified
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(shared: Option<&str>, signing: Option<&str>) -> Listener {
        Listener {
            options: ListenOptions {
                shared_secret: shared.map(str::to_string),
                signing_secret: signing.map(str::to_string),
                status: 200,
            },
            signing_key: signing.map(|s| standard::decode_secret(s).unwrap()),
            status: StatusCode::OK,
        }
    }

    #[test]
    fn x_signature_verdicts() {
        let body = br#"{"a":1}"#;
        let good = crate::delivery::signature::sign("s3cret", body);
        let with = listener(Some("s3cret"), None);
        assert_eq!(
            check_x_signature(Some(&good), body, &with),
            Verdict::Verified
        );
        assert!(matches!(
            check_x_signature(Some(&good), b"{}", &with),
            Verdict::Failed(_)
        ));
        assert!(matches!(
            check_x_signature(None, body, &with),
            Verdict::Failed(_)
        ));
        let without = listener(None, None);
        assert!(matches!(
            check_x_signature(Some(&good), body, &without),
            Verdict::NotChecked(_)
        ));
    }

    #[test]
    fn standard_webhooks_verdicts() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let key = standard::decode_secret(secret).unwrap();
        let body = br#"{"a":1}"#;
        let now = now_ms() / 1000;
        let header = standard::signature_header(&[key], "msg_1", now, body);
        let state = listener(None, Some(secret));
        let ts = now.to_string();
        let check = |body: &[u8], ts: &str| {
            check_standard(Some("msg_1"), Some(ts), Some(&header), body, &state)
        };
        assert_eq!(check(body, &ts), Verdict::Verified);
        assert!(matches!(check(b"{}", &ts), Verdict::Failed(_)));
        assert!(matches!(check(body, "12"), Verdict::Failed(_)));
        let other = listener(None, Some("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
        assert!(matches!(
            check_standard(Some("msg_1"), Some(&ts), Some(&header), body, &other),
            Verdict::Failed(_)
        ));
    }
}
