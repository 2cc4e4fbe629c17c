//! The raw HTTP limit of this machine: `wrk` (when installed) posting one fixed track
//! event to the trivial receiver. It is the fastest thing this machine does for the same
//! work, so the ratios to it do not flatter; the harness's own generator is slower. And
//! the load at full speed, posted the same way, so that the generator takes no more of
//! the machine from webhookd than it does from the trivial receiver.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::bodies::Ids;
use crate::load::{Load, LoadResult};

/// Requests per second `wrk -t1 -c64` gets posting `body` to `url` for `duration`, or
/// `None` when `wrk` is missing or fails.
pub fn raw_limit(url: &str, body: &str, duration: Duration, dir: &Path) -> Option<f64> {
    // For an ASCII body, its JSON string literal is a Lua string literal too.
    let lua_body = serde_json::to_string(body).ok()?;
    let script = format!(
        "wrk.method = \"POST\"\nwrk.body = {lua_body}\n\
         wrk.headers[\"Content-Type\"] = \"application/json\"\n"
    );
    run_wrk(&["-c64".into()], duration, &script, url, dir)?
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|rate| rate.trim().parse().ok())
}

/// Runs `wrk -t1` with `args`, for `duration`, with `script` (written to a file in `dir`
/// for the run) against `url`; its output, or `None` when wrk is missing or fails.
fn run_wrk(
    args: &[String],
    duration: Duration,
    script: &str,
    url: &str,
    dir: &Path,
) -> Option<String> {
    let path = dir.join(format!("webhookd-bench-{}.lua", std::process::id()));
    std::fs::write(&path, script).ok()?;
    let output = Command::new("wrk")
        .arg("-t1")
        .args(args)
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("-s")
        .arg(&path)
        .arg(url)
        .output()
        .ok()?;
    let _ = std::fs::remove_file(&path);
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Whether wrk can post `load`: one URL, at full speed, for a time.
pub fn can_post(load: &Load) -> bool {
    load.urls.len() == 1 && load.rate.is_none() && load.max_requests.is_none()
}

/// Posts `load` (one that [`can_post`]) with `wrk -t1` (the tool the raw limit is
/// measured with), a Lua script making each body from `load.body`'s templates with fresh
/// ids; `None` when wrk is missing or fails.
pub fn post(load: &Load, dir: &Path) -> Option<LoadResult> {
    let url = load.urls.first()?;
    let args = ["--latency".into(), format!("-c{}", load.concurrency)];
    let out = run_wrk(&args, load.duration, &lua_script(load), url, dir)?;
    parse_summary(&out)
}

/// A Lua long string holding `text` verbatim: no escapes to get right. (Set it off with
/// spaces inside brackets: `t[[[x]]]` would open a long string.)
fn lua_literal(text: &str) -> String {
    let level = (0..)
        .map(|n| "=".repeat(n))
        .find(|eq| !text.contains(&format!("]{eq}]")))
        .expect("some level is free");
    format!("[{level}[{text}]{level}]")
}

/// The script: headers, the templates, and a `request` that fills each template's id
/// places with random UUIDv4s (122 random bits each) or with UUIDv7s in order.
fn lua_script(load: &Load) -> String {
    let (templates, ids) = load.body.templates();
    let mut lua = String::from("wrk.method = \"POST\"\n");
    for (name, value) in &load.headers {
        lua += &format!(
            "wrk.headers[ {} ] = {}\n",
            lua_literal(name),
            lua_literal(value)
        );
    }
    lua += "local templates = {\n";
    for parts in templates {
        let parts: Vec<String> = parts
            .iter()
            .map(|p| lua_literal(&String::from_utf8_lossy(p)))
            .collect();
        lua += &format!("  {{{}}},\n", parts.join(", "));
    }
    lua += "}\n";
    let started_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    lua += &format!(
        "math.randomseed({})\nlocal ordered = {}\nlocal stamp = \"{:08x}-{:04x}\"\n",
        rand::random::<u32>(),
        ids == Ids::Ordered,
        started_ms >> 16,
        started_ms & 0xffff,
    );
    lua += r#"local random, format, concat = math.random, string.format, table.concat
local count, sent = 0, 0
local function id()
  if ordered then
    count = count + 1
    return stamp .. format("-7000-8000-%012x", count)
  end
  return format("%08x-%04x-4%03x-%04x-%04x%08x", random(0, 0xffffffff), random(0, 0xffff),
    random(0, 0xfff), random(0x8000, 0xbfff), random(0, 0xffff), random(0, 0xffffffff))
end
request = function()
  sent = sent + 1
  local parts = templates[sent % #templates + 1]
  local out = {parts[1]}
  for i = 2, #parts do
    out[#out + 1] = id()
    out[#out + 1] = parts[i]
  end
  return wrk.format(nil, nil, nil, concat(out))
end
"#;
    lua
}

/// Reads wrk's summary: requests done, those that failed, the time, latency percentiles.
fn parse_summary(out: &str) -> Option<LoadResult> {
    let mut done = None;
    let mut elapsed = None;
    let (mut non_2xx, mut socket_errors) = (0u64, 0u64);
    let (mut p50_ms, mut p99_ms) = (0.0, 0.0);
    for line in out.lines().map(str::trim) {
        if let Some((requests, rest)) = line.split_once(" requests in ") {
            done = requests.parse::<u64>().ok();
            elapsed = rest
                .split(',')
                .next()
                .and_then(duration_ms)
                .map(|ms| ms / 1000.0);
        } else if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = n.trim().parse().unwrap_or(0);
        } else if let Some(errors) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0": requests that never completed.
            socket_errors = errors
                .split(',')
                .filter_map(|e| e.trim().split_once(' '))
                .filter_map(|(_, n)| n.parse::<u64>().ok())
                .sum();
        } else if let Some(p) = line.strip_prefix("50%") {
            p50_ms = duration_ms(p.trim()).unwrap_or(0.0);
        } else if let Some(p) = line.strip_prefix("99%") {
            p99_ms = duration_ms(p.trim()).unwrap_or(0.0);
        }
    }
    // "requests" counts completed responses, the non-2xx among them.
    let done = done?;
    Some(LoadResult {
        ok: done.saturating_sub(non_2xx),
        failed: non_2xx + socket_errors,
        elapsed: Duration::from_secs_f64(elapsed?),
        p50_ms,
        p99_ms,
    })
}

/// "1.23ms", "850.00us", "10.01s", "2.00m" in milliseconds.
fn duration_ms(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (value, unit) = text.split_at(split);
    let value: f64 = value.parse().ok()?;
    let scale = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    Some(value * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_gives_requests_failures_time_and_percentiles() {
        let out = "Running 10s test @ http://127.0.0.1:7400/v1/track
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.32ms  420.10us  12.00ms   90.00%
  Latency Distribution
     50%  850.00us
     75%    1.40ms
     90%    1.80ms
     99%    2.31ms
  244873 requests in 10.01s, 31.75MB read
  Socket errors: connect 0, read 3, write 2, timeout 1
  Non-2xx or 3xx responses: 10
Requests/sec:  24463.84
Transfer/sec:      3.17MB
";
        let result = parse_summary(out).expect("a summary");
        assert_eq!((result.ok, result.failed), (244_863, 16));
        assert_eq!(result.elapsed, Duration::from_millis(10_010));
        assert!((result.p50_ms - 0.85).abs() < 1e-9, "{}", result.p50_ms);
        assert!((result.p99_ms - 2.31).abs() < 1e-9, "{}", result.p99_ms);
        assert!(parse_summary("wrk: connection refused\n").is_none());
    }

    #[test]
    fn a_long_string_level_is_chosen_that_the_text_does_not_close() {
        assert_eq!(lua_literal("a\"b"), "[[a\"b]]");
        assert_eq!(lua_literal("x]]y"), "[=[x]]y]=]");
        assert_eq!(lua_literal("]]]=]"), "[==[]]]=]]==]");
    }
}
