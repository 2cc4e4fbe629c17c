//! The one clock: every time webhookd stores or compares comes from here, so that the
//! store never reads a clock of its own.

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `ms` since the Unix epoch as ISO 8601 in UTC with milliseconds, as webhookd writes
/// every time it shows.
pub fn iso(ms: i64) -> String {
    crate::segment::time::format_iso8601(
        chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default(),
    )
}
