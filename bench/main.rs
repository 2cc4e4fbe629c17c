//! `webhookd-bench`: how fast webhookd is, against the HTTP limit of this machine, in one
//! run. Every figure is also given as a ratio to the baseline measured in the same run:
//! the load generator posting straight to a trivial receiver.
//!
//! Scenarios: baseline; durable ingest (single events, batches of 100); end to end at full
//! and half load; a backlog ingested while the receiver fails, then drained; isolation
//! from a hanging destination; fan-out to five destinations.

mod load;
mod receiver;
mod service;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use clap::Parser;
use serde::Serialize;
use serde_json::json;

use load::{Load, LoadResult};
use receiver::{Latency, Mode, Receiver};
use service::{Service, WRITE_KEY};

/// Measures webhookd on this machine and prints a table (and JSON) of the figures.
#[derive(Parser)]
struct Args {
    /// Seconds each load phase runs.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Events ingested while the receiver fails, for the backlog scenario.
    #[arg(long, default_value_t = 1_000_000)]
    backlog: u64,
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// The webhookd binary; default: the one beside this one.
    #[arg(long)]
    webhookd: Option<PathBuf>,
    /// Where the JSON results go.
    #[arg(long, default_value = "bench-results.json")]
    json: PathBuf,
}

#[derive(Serialize, Default)]
struct Results {
    machine: String,
    baseline_requests_per_s: f64,
    ingest_track_events_per_s: f64,
    ingest_batch_events_per_s: f64,
    e2e_full_delivered_per_s: f64,
    e2e_full_latency: Latency,
    e2e_half_rate_per_s: f64,
    e2e_half_latency: Latency,
    backlog_events: u64,
    backlog_ingest_events_per_s: f64,
    backlog_peak_rss_mib: f64,
    backlog_drain_per_s: f64,
    isolation_half_latency: Latency,
    fanout_deliveries_per_s: f64,
    fanout_events_per_s: f64,
}

fn track_body() -> Bytes {
    Bytes::from(
        json!({"userId": "user-42", "event": "Order Completed",
            "properties": {"revenue": 39.95, "currency": "USD", "sku": "sku-1234"},
            "context": {"library": {"name": "webhookd-bench"}}})
        .to_string(),
    )
}

fn batch_body(size: usize) -> Bytes {
    let items: Vec<_> = (0..size)
        .map(|i| {
            json!({"type": "track", "userId": format!("user-{i}"), "event": "Order Completed",
                "properties": {"revenue": 39.95, "currency": "USD", "sku": format!("sku-{i}")}})
        })
        .collect();
    Bytes::from(json!({ "batch": items }).to_string())
}

fn auth() -> Vec<(String, String)> {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.encode(format!("{WRITE_KEY}:"));
    vec![
        ("Authorization".into(), format!("Basic {key}")),
        ("Content-Type".into(), "application/json".into()),
    ]
}

/// Sends `load`, then waits for the receiver to have `per_event` deliveries of each
/// accepted event; returns the load's result and the deliveries per second from the start
/// of the load to the last arrival.
fn end_to_end(load: Load, receiver: &Receiver, per_event: u64) -> (LoadResult, f64) {
    receiver.reset();
    let started = Instant::now();
    let sent = load::run(load);
    let expected = sent.ok * per_event;
    if !receiver.wait_for(expected, Duration::from_secs(600)) {
        eprintln!(
            "warning: only {} of {expected} deliveries arrived",
            receiver.delivered()
        );
    }
    let rate = receiver.delivered() as f64 / started.elapsed().as_secs_f64();
    (sent, rate)
}

fn main() {
    let args = Args::parse();
    let webhookd = args.webhookd.clone().unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("own path");
        exe.with_file_name("webhookd")
    });
    if let Some(cargo) = std::env::var_os("CARGO").filter(|_| args.webhookd.is_none()) {
        // Run by cargo: make sure the service binary beside us is as fresh as we are.
        let release = webhookd.parent().is_some_and(|p| p.ends_with("release"));
        let mut build = std::process::Command::new(cargo);
        build.args(["build", "--bin", "webhookd"]);
        if release {
            build.arg("--release");
        }
        assert!(
            build.status().expect("cargo runs").success(),
            "building webhookd failed"
        );
    }
    let seconds = Duration::from_secs(args.seconds);
    let receiver = Receiver::start();
    let mut r = Results {
        machine: machine(),
        ..Results::default()
    };
    let base_load = |url: String, body: Bytes| Load {
        url,
        headers: auth(),
        body,
        concurrency: args.concurrency,
        duration: seconds,
        max_requests: None,
        rate: None,
    };
    // Fast retries, so that a backlog drains at delivery speed rather than on a long timer.
    let delivery = "backoff_initial_ms = 100\nbackoff_max_ms = 1000\n";

    eprintln!("1/6 baseline");
    r.baseline_requests_per_s =
        load::run(base_load(receiver.url("/baseline"), track_body())).per_second();

    eprintln!("2/6 ingest");
    {
        let service = Service::start(&webhookd, &[], delivery);
        r.ingest_track_events_per_s =
            load::run(base_load(service.url("/v1/track"), track_body())).per_second();
        let batch = Load {
            concurrency: args.concurrency.min(16),
            ..base_load(service.url("/v1/batch"), batch_body(100))
        };
        r.ingest_batch_events_per_s = load::run(batch).per_second() * 100.0;
    }

    eprintln!("3/6 end to end");
    {
        let service = Service::start(&webhookd, &[("hook", receiver.url("/hook"))], delivery);
        let (_, rate) = end_to_end(
            base_load(service.url("/v1/track"), track_body()),
            &receiver,
            1,
        );
        r.e2e_full_delivered_per_s = rate;
        r.e2e_full_latency = receiver.latency();
        r.e2e_half_rate_per_s = (rate / 2.0).max(1.0);
        let half = Load {
            rate: Some(r.e2e_half_rate_per_s),
            ..base_load(service.url("/v1/track"), track_body())
        };
        end_to_end(half, &receiver, 1);
        r.e2e_half_latency = receiver.latency();
    }

    eprintln!("4/6 backlog of {}", args.backlog);
    {
        let service = Service::start(&webhookd, &[("hook", receiver.url("/hook"))], delivery);
        receiver.set_mode(Mode::Unavailable);
        let batches = args.backlog.div_ceil(100);
        let ingest = Load {
            concurrency: args.concurrency.min(16),
            duration: Duration::from_secs(3600),
            max_requests: Some(batches),
            ..base_load(service.url("/v1/batch"), batch_body(100))
        };
        receiver.reset();
        let sent = load::run(ingest);
        r.backlog_events = sent.ok * 100;
        r.backlog_ingest_events_per_s = sent.per_second() * 100.0;
        receiver.reset();
        let started = Instant::now();
        receiver.set_mode(Mode::Ok);
        if !receiver.wait_for(r.backlog_events, Duration::from_secs(900)) {
            eprintln!(
                "warning: backlog not drained: {} of {}",
                receiver.delivered(),
                r.backlog_events
            );
        }
        r.backlog_drain_per_s = receiver.delivered() as f64 / started.elapsed().as_secs_f64();
        r.backlog_peak_rss_mib = service.peak_rss_mib();
    }

    eprintln!("5/6 isolation");
    {
        let destinations = [
            ("healthy", receiver.url("/hook")),
            ("hanging", receiver.url("/hang")),
        ];
        let service = Service::start(
            &webhookd,
            &destinations,
            &format!("{delivery}timeout_ms = 60000\n"),
        );
        let half = Load {
            rate: Some(r.e2e_half_rate_per_s),
            ..base_load(service.url("/v1/track"), track_body())
        };
        end_to_end(half, &receiver, 1);
        r.isolation_half_latency = receiver.latency();
    }

    eprintln!("6/6 fan-out");
    {
        let destinations: Vec<(&str, String)> = ["d1", "d2", "d3", "d4", "d5"]
            .into_iter()
            .map(|d| (d, receiver.url("/hook")))
            .collect();
        let service = Service::start(&webhookd, &destinations, delivery);
        let (_, rate) = end_to_end(
            base_load(service.url("/v1/track"), track_body()),
            &receiver,
            5,
        );
        r.fanout_deliveries_per_s = rate;
        r.fanout_events_per_s = rate / 5.0;
    }

    print_table(&r);
    std::fs::write(&args.json, serde_json::to_string_pretty(&r).unwrap()).expect("write JSON");
    eprintln!("results written to {}", args.json.display());
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    format!("{cpus} CPU(s), {model}")
}

fn print_table(r: &Results) {
    let base = r.baseline_requests_per_s.max(1e-9);
    let ratio = |v: f64| format!("{:.2}", v / base);
    let latency = |l: &Latency| {
        format!(
            "p50 {} ms, p99 {} ms, max {} ms",
            l.p50_ms, l.p99_ms, l.max_ms
        )
    };
    println!("machine: {}", r.machine);
    println!(
        "{:<44} {:>14} {:>8}  notes",
        "scenario", "per second", "ratio"
    );
    let row = |name: &str, value: f64, notes: String| {
        println!("{name:<44} {value:>14.0} {:>8}  {notes}", ratio(value));
    };
    row(
        "1 baseline: POST to a trivial receiver",
        r.baseline_requests_per_s,
        "requests/s".into(),
    );
    row(
        "2 ingest /v1/track (durable)",
        r.ingest_track_events_per_s,
        "events/s".into(),
    );
    row(
        "2 ingest /v1/batch x100 (durable)",
        r.ingest_batch_events_per_s,
        "events/s".into(),
    );
    row(
        "3 end to end, full load",
        r.e2e_full_delivered_per_s,
        format!("delivered/s; {}", latency(&r.e2e_full_latency)),
    );
    row(
        "3 end to end, half load",
        r.e2e_half_rate_per_s,
        format!("offered/s; {}", latency(&r.e2e_half_latency)),
    );
    row(
        "4 backlog ingest (receiver 503)",
        r.backlog_ingest_events_per_s,
        format!(
            "{} events, peak RSS {:.0} MiB",
            r.backlog_events, r.backlog_peak_rss_mib
        ),
    );
    row(
        "4 backlog drain",
        r.backlog_drain_per_s,
        "delivered/s".into(),
    );
    row(
        "5 isolation: healthy beside a hanging one",
        r.e2e_half_rate_per_s,
        format!("offered/s; {}", latency(&r.isolation_half_latency)),
    );
    row(
        "6 fan-out to 5 destinations",
        r.fanout_deliveries_per_s,
        format!("deliveries/s ({:.0} events/s)", r.fanout_events_per_s),
    );
}
