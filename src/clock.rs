//! The one clock: every time webhookd stores or compares comes from here, so that the
//! store never reads a clock of its own.

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
