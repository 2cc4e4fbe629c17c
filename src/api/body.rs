//! Reading a request body within its limits: content type, optional gzip, a size bound
//! that also applies while inflating, and a deadline for clients that send slowly.

use std::io::Read;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use futures_util::StreamExt;

use super::ApiError;

/// A client gets this long to send its whole body.
const BODY_DEADLINE: Duration = Duration::from_secs(30);

/// Reads the JSON body of `req`, at most `limit` bytes once decoded.
pub async fn read_json_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    check_content_type(req)?;
    let gzip = match req.headers().get(header::CONTENT_ENCODING) {
        None => false,
        Some(v) => match v.to_str().map(|s| s.trim().to_ascii_lowercase()) {
            Ok(s) if s == "gzip" || s == "x-gzip" => true,
            Ok(s) if s == "identity" || s.is_empty() => false,
            _ => {
                return Err(ApiError::UnsupportedMediaType(
                    "Content-Encoding must be gzip or identity".into(),
                ))
            }
        },
    };
    let too_large = || ApiError::PayloadTooLarge(format!("body is over {limit} bytes"));

    let read = async {
        let mut raw = Vec::new();
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::BadRequest(format!("cannot read the body: {e}")))?;
            // A gzip body never needs to be larger than its inflated limit.
            if raw.len() + chunk.len() > limit {
                return Err(too_large());
            }
            raw.extend_from_slice(&chunk);
        }
        Ok(raw)
    };
    let raw = tokio::time::timeout(BODY_DEADLINE, read)
        .await
        .map_err(|_| ApiError::RequestTimeout("the body took too long to arrive".into()))??;
    if !gzip {
        return Ok(raw);
    }
    let mut inflated = Vec::new();
    // Read one byte past the limit: stopping there is what keeps a gzip bomb small.
    flate2::read::GzDecoder::new(raw.as_slice())
        .take(limit as u64 + 1)
        .read_to_end(&mut inflated)
        .map_err(|_| ApiError::BadRequest("body is not valid gzip".into()))?;
    if inflated.len() > limit {
        return Err(too_large());
    }
    Ok(inflated)
}

/// JSON is sent as `application/json`, or `text/plain` by browsers' `sendBeacon`; a
/// missing type is taken as JSON.
fn check_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" | "text/plain" => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType(
            "Content-Type must be application/json or text/plain".into(),
        )),
    }
}
