//! Whether to retry: one URL's result classified as success, retryable or permanent
//! (SPEC §4). Deciding *when* to retry is [`super::backoff`]'s job.

use std::io;

use awc::error::{ConnectError, SendRequestError};

/// What one request to one URL came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlOutcome {
    /// A 2xx: the delivery is done.
    Success,
    /// Worth trying this URL again later.
    Retryable,
    /// This URL will not be tried again for this delivery.
    Permanent,
    /// `410 Gone`: this URL will not be tried again for any delivery (until a resume or
    /// a reload).
    Gone,
}

/// Classifies an HTTP status. Redirects are never followed, so a 3xx is permanent.
pub fn classify_status(status: u16) -> UrlOutcome {
    match status {
        200..=299 => UrlOutcome::Success,
        408 | 423 | 429 => UrlOutcome::Retryable,
        410 => UrlOutcome::Gone,
        501 => UrlOutcome::Permanent,
        500..=599 => UrlOutcome::Retryable,
        _ => UrlOutcome::Permanent,
    }
}

/// Classifies a request that got no response, with the reason to record.
pub fn classify_error(error: &SendRequestError, timeout_ms: u64) -> (UrlOutcome, String) {
    match error {
        SendRequestError::Timeout => (
            UrlOutcome::Retryable,
            format!("timeout: no response within {timeout_ms} ms"),
        ),
        SendRequestError::Connect(connect) => classify_connect_error(connect, timeout_ms),
        SendRequestError::Send(e) => (
            UrlOutcome::Retryable,
            format!("connection lost while sending: {e}"),
        ),
        SendRequestError::Response(e) => {
            (UrlOutcome::Retryable, format!("invalid HTTP response: {e}"))
        }
        SendRequestError::Url(e) => (UrlOutcome::Permanent, format!("invalid URL: {e}")),
        other => (UrlOutcome::Retryable, format!("request failed: {other}")),
    }
}

fn classify_connect_error(error: &ConnectError, timeout_ms: u64) -> (UrlOutcome, String) {
    match error {
        ConnectError::Resolver(e) => (UrlOutcome::Retryable, format!("DNS failure: {e}")),
        ConnectError::NoRecords => (UrlOutcome::Retryable, "DNS failure: no records".into()),
        ConnectError::Timeout => (
            UrlOutcome::Retryable,
            format!("timeout: not connected within {timeout_ms} ms"),
        ),
        ConnectError::Io(e) => classify_io_error(e),
        // awc's word for a connection the receiver closed before answering.
        ConnectError::Disconnected => (
            UrlOutcome::Retryable,
            "connection closed by the receiver before it answered".into(),
        ),
        other => (UrlOutcome::Retryable, format!("cannot connect: {other}")),
    }
}

fn classify_io_error(error: &io::Error) -> (UrlOutcome, String) {
    if let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        // A certificate that does not verify will not verify on the next try either.
        return (
            UrlOutcome::Permanent,
            format!("TLS handshake failed: {tls}"),
        );
    }
    let reason = match error.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        io::ErrorKind::ConnectionReset => "connection reset".to_string(),
        _ => format!("cannot connect: {error}"),
    };
    (UrlOutcome::Retryable, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_connection_is_not_called_a_failure_to_connect() {
        let (outcome, reason) = classify_error(
            &SendRequestError::Connect(ConnectError::Disconnected),
            5_000,
        );
        assert_eq!(outcome, UrlOutcome::Retryable);
        assert_eq!(
            reason,
            "connection closed by the receiver before it answered"
        );
    }

    #[test]
    fn statuses_are_classified_as_segment_does() {
        for status in [200, 201, 204, 299] {
            assert_eq!(classify_status(status), UrlOutcome::Success, "{status}");
        }
        for status in [408, 423, 429, 500, 502, 503, 504, 599] {
            assert_eq!(classify_status(status), UrlOutcome::Retryable, "{status}");
        }
        for status in [301, 302, 307, 400, 401, 403, 404, 422, 501] {
            assert_eq!(classify_status(status), UrlOutcome::Permanent, "{status}");
        }
        assert_eq!(classify_status(410), UrlOutcome::Gone);
    }

    #[test]
    fn tls_failures_are_permanent_and_refusals_retryable() {
        let tls = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let (outcome, reason) = classify_io_error(&tls);
        assert_eq!(outcome, UrlOutcome::Permanent);
        assert!(
            reason.starts_with("TLS handshake failed: invalid peer certificate"),
            "{reason}"
        );
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            classify_io_error(&refused),
            (UrlOutcome::Retryable, "connection refused".into())
        );
    }
}
