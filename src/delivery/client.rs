//! The HTTP client webhooks are sent with (rustls verifying against the standard web roots
//! plus any configured extra CAs, no redirects), and one request sent with it, within the
//! timeout from the config.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::RETRY_AFTER;
use actix_web::web::Bytes;
use awc::error::SendRequestError;
use chrono::Utc;
use futures_util::StreamExt;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::backoff::parse_retry_after;
use super::outcome::{classify_error, classify_status, UrlOutcome};
use super::request::{Request as Outgoing, UrlTarget};
use crate::clock::now_ms;
use crate::config::Method;
use crate::store::AttemptRecord;

/// How much of a response body an attempt keeps.
pub const RESPONSE_BODY_KEPT: usize = 1024;

/// Why the TLS setup could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read CA certificates from {path}: {reason}")]
    ExtraRoots { path: String, reason: String },
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The TLS client configuration: web roots, plus the PEM certificates at `extra_roots`.
pub fn tls_config(extra_roots: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = extra_roots {
        let bad = |reason: String| TlsSetupError::ExtraRoots {
            path: path.display().to_string(),
            reason,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no certificate in the file".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// One destination's client: its own connection pool (kept alive between requests) of at
/// most `max_connections`, connecting within `timeout`. A request's own deadline is
/// [`send`]'s to keep. Not `Send`: built on the thread of the actor that uses it.
pub fn build_client(
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
    max_connections: usize,
) -> awc::Client {
    let connector = awc::Connector::new()
        .rustls_0_23(tls)
        .timeout(timeout)
        .handshake_timeout(timeout)
        .limit(max_connections);
    awc::Client::builder()
        .connector(connector)
        .disable_timeout()
        .disable_redirects()
        .no_default_headers()
        .finish()
}

/// One URL's request: the record to store, the classification, any `Retry-After`.
pub struct UrlResult {
    pub record: AttemptRecord,
    pub outcome: UrlOutcome,
    pub retry_after: Option<Duration>,
}

/// Sends `content` to one URL of a destination, and keeps the first
/// [`RESPONSE_BODY_KEPT`] bytes of the answer.
///
/// The answer must begin within `timeout_ms`. That deadline is kept here rather than by
/// awc, which looks at its timer before the connection: a delivery thread late to run
/// again (a busy machine) would count a request answered in time as timed out. Here an
/// answer that is there when the thread runs is taken.
pub async fn send(
    client: awc::Client,
    target: UrlTarget,
    content: Outgoing,
    timeout_ms: u64,
) -> UrlResult {
    let attempted_at_ms = now_ms();
    let started = Instant::now();
    let mut request = match content.method {
        Method::Post => client.post(&target.url),
        Method::Put => client.put(&target.url),
        Method::Patch => client.patch(&target.url),
    };
    for (name, value) in target.headers.into_iter().chain(content.headers) {
        request = request.insert_header((name, value));
    }
    let body: Bytes = content.body;
    let timeout = Duration::from_millis(timeout_ms);
    let answer = actix_rt::time::timeout(timeout, request.send_body(body)).await;
    match answer.unwrap_or(Err(SendRequestError::Timeout)) {
        Ok(mut response) => {
            let latency_ms = started.elapsed().as_millis() as u64;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, Utc::now()));
            let kept = read_prefix(&mut response, timeout).await;
            let outcome = classify_status(status);
            let error = (outcome != UrlOutcome::Success).then(|| format!("HTTP {status}"));
            UrlResult {
                record: AttemptRecord {
                    attempted_at_ms,
                    url: target.url,
                    status: Some(status),
                    error,
                    latency_ms,
                    response_body: Some(kept),
                },
                outcome,
                retry_after,
            }
        }
        Err(e) => {
            let (outcome, reason) = classify_error(&e, timeout_ms);
            UrlResult {
                record: AttemptRecord {
                    attempted_at_ms,
                    url: target.url,
                    status: None,
                    error: Some(reason),
                    latency_ms: started.elapsed().as_millis() as u64,
                    response_body: None,
                },
                outcome,
                retry_after: None,
            }
        }
    }
}

/// The first [`RESPONSE_BODY_KEPT`] bytes of a response body, read within `limit`; the
/// rest is never read (an endless body costs nothing).
async fn read_prefix<S>(response: &mut awc::ClientResponse<S>, limit: Duration) -> String
where
    S: futures_util::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin,
{
    let mut kept = Vec::new();
    let read = async {
        while let Some(Ok(chunk)) = response.next().await {
            kept.extend_from_slice(&chunk[..chunk.len().min(RESPONSE_BODY_KEPT - kept.len())]);
            if kept.len() >= RESPONSE_BODY_KEPT {
                break;
            }
        }
    };
    let _ = actix_rt::time::timeout(limit, read).await;
    String::from_utf8_lossy(&kept).into_owned()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    use super::*;

    /// How long the receiver below waits, once it has a request, before it answers.
    const ANSWER_AFTER: Duration = Duration::from_millis(100);

    /// A receiver on 127.0.0.1 that says when it has its first request, and answers it
    /// `200 ok` [`ANSWER_AFTER`] later.
    fn receiver() -> (String, mpsc::Receiver<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (got_request, heard) = mpsc::channel();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = got_request.send(());
            std::thread::sleep(ANSWER_AFTER);
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
        });
        (url, heard)
    }

    #[actix_rt::test]
    async fn an_answer_in_time_counts_though_the_thread_runs_late() {
        let (url, heard) = receiver();
        let timeout_ms = 2_000;
        let tls = tls_config(None).unwrap();
        let client = build_client(tls, Duration::from_millis(timeout_ms), 1);
        let target = UrlTarget {
            url,
            headers: Vec::new(),
        };
        let content = Outgoing {
            method: Method::Post,
            body: Bytes::from_static(b"{}"),
            headers: Vec::new(),
            delivery_ids: vec![1],
        };
        let sending = actix_rt::spawn(send(client, target, content, timeout_ms));
        let waiting = Instant::now();
        while heard.try_recv().is_err() {
            assert!(waiting.elapsed() < Duration::from_secs(30), "no request");
            actix_rt::time::sleep(Duration::from_millis(1)).await;
        }
        // The answer comes while the thread is kept from running until past the deadline,
        // as on a busy machine.
        std::thread::sleep(Duration::from_millis(timeout_ms + 1_000));
        let result = sending.await.unwrap();
        assert_eq!(result.outcome, UrlOutcome::Success, "{:?}", result.record);
        assert_eq!(result.record.response_body.as_deref(), Some("ok"));
    }
}
