//! The raw HTTP limit of this machine: `wrk` (when installed) posting one fixed track
//! event to the trivial receiver. It is the fastest thing this machine does for the same
//! work, so the ratios to it do not flatter; the harness's own generator is slower.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Requests per second `wrk -t1 -c64` gets posting `body` to `url` for `duration`, or
/// `None` when `wrk` is missing or fails.
pub fn raw_limit(url: &str, body: &str, duration: Duration, dir: &Path) -> Option<f64> {
    let script = dir.join("webhookd-bench-raw.lua");
    // For an ASCII body, its JSON string literal is a Lua string literal too.
    let lua_body = serde_json::to_string(body).ok()?;
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = {lua_body}\n\
             wrk.headers[\"Content-Type\"] = \"application/json\"\n"
        ),
    )
    .ok()?;
    let output = Command::new("wrk")
        .args(["-t1", "-c64"])
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("-s")
        .arg(&script)
        .arg(url)
        .output()
        .ok()?;
    let _ = std::fs::remove_file(&script);
    if !output.status.success() {
        return None;
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|rate| rate.trim().parse().ok())
}
