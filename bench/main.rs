//! `webhookd-bench`: how fast webhookd is, against the HTTP limit of this machine, in one
//! run. Every figure is also given as a ratio to the raw HTTP limit measured in the same
//! run: `wrk` posting straight to a trivial receiver (the harness's own generator when
//! `wrk` is not installed).
//!
//! Scenarios: baseline; durable ingest (single events, batches of 100); end to end at full
//! and half load; a backlog ingested while the receiver fails, then drained; isolation
//! from a hanging destination; fan-out to five destinations; destinations of the Actions
//! kind; and, when asked for, retention under steady load for millions of events.

mod bodies;
mod load;
mod receiver;
mod service;
mod wrk;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Serialize;
use serde_json::json;

use bodies::{Body, Ids};
use load::{Load, LoadResult};
use receiver::{Latency, Mode, Receiver};
use service::{Database, Service, Storage, WRITE_KEY};

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
    /// Post every load with this harness's own generator, even where `wrk` could post it
    /// (full speed, one URL): the figures of runs before wrk posted them.
    #[arg(long)]
    harness_load: bool,
    /// `sqlite`, or `postgres`: every scenario on SQLite and on PostgreSQL side by side,
    /// then 1, 2 and 3 instances on one PostgreSQL database.
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "postgres"])]
    backend: String,
    /// The PostgreSQL server the scenarios create their databases on.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pg_url: String,
    /// The backlog scenario's size on PostgreSQL (default: that of SQLite).
    #[arg(long)]
    pg_backlog: Option<u64>,
    /// The webhookd binary; default: the one beside this one.
    #[arg(long)]
    webhookd: Option<PathBuf>,
    /// Scenario 9, retention: this many events through one destination with
    /// `delivered_s = 60`, at `--retention-rate`; 0 skips it.
    #[arg(long, default_value_t = 0)]
    retention_events: u64,
    /// Events per second offered in the retention scenario.
    #[arg(long, default_value_t = 6_000.0)]
    retention_rate: f64,
    /// Events per second offered in the retention scenario on PostgreSQL (default: the
    /// same as on SQLite; PostgreSQL delivers fewer per second on this machine).
    #[arg(long)]
    pg_retention_rate: Option<f64>,
    /// Run the retention scenario alone (with the baseline), skipping 1 to 8.
    #[arg(long, requires = "retention_events")]
    retention_only: bool,
    /// Time-ordered (UUIDv7) `messageId`s instead of random UUIDv4 ones, which real
    /// clients send.
    #[arg(long)]
    ordered_ids: bool,
    /// Only these scenarios (comma-separated: ingest, e2e, backlog, isolation, fanout,
    /// actions); default: all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where the JSON results go.
    #[arg(long, default_value = "bench-results.json")]
    json: PathBuf,
}

/// The figures of one run.
#[derive(Serialize, Default)]
struct Results {
    machine: String,
    /// `random UUIDv4` or `ordered UUIDv7`.
    message_ids: String,
    /// What posts the load at full speed.
    load_generator: String,
    /// `wrk` posting a fixed track event to the trivial receiver: the raw HTTP limit every
    /// ratio is taken to (to the generator's baseline when `wrk` is not installed).
    raw_limit_requests_per_s: Option<f64>,
    /// This harness's own generator posting to the trivial receiver.
    baseline_requests_per_s: f64,
    sqlite: BackendResults,
    postgres: Option<BackendResults>,
    /// 1, 2 and 3 instances on one PostgreSQL database.
    cluster: Vec<ClusterResults>,
    /// Scenario 9, by backend.
    retention: Vec<RetentionResults>,
}

/// Retention under steady load: how the store's size moves, and what pruning costs
/// ingest.
#[derive(Serialize, Default)]
struct RetentionResults {
    backend: String,
    events: u64,
    offered_events_per_s: f64,
    delivered: u64,
    /// Batch requests (100 events) in the first 55 s, before anything is old enough to
    /// prune, and after, while pruning runs.
    p50_before_ms: f64,
    p99_before_ms: f64,
    p50_during_ms: f64,
    p99_during_ms: f64,
    pruned_events: f64,
    /// Events of a source whose receiver refuses connections: all must stay pending.
    held_sent: u64,
    held_pending: f64,
    /// (seconds since the load started, bytes the store takes), every 10 s.
    size_curve: Vec<(u64, u64)>,
}

/// Every scenario on one backend.
#[derive(Serialize, Default)]
struct BackendResults {
    /// Its scenarios ran (not skipped by `--retention-only`).
    #[serde(skip)]
    ran: bool,
    ingest_track_events_per_s: f64,
    ingest_batch_events_per_s: f64,
    e2e_full_delivered_per_s: f64,
    e2e_full_latency: Latency,
    /// `/v1/batch` ×100 in, each event delivered on its own.
    e2e_batch_delivered_per_s: f64,
    e2e_batch_latency: Latency,
    e2e_half_rate_per_s: f64,
    e2e_half_latency: Latency,
    backlog_events: u64,
    backlog_ingest_events_per_s: f64,
    backlog_peak_rss_mib: f64,
    /// A deletion request (`POST /admin/v1/regulations`, to its 202) for a user with no
    /// events, with the backlog stored: the search for the user's events, the fastest of
    /// three, milliseconds.
    backlog_deletion_ms: f64,
    backlog_drain_per_s: f64,
    /// A `/metrics` scrape right after the drain, with every delivery's attempt in the
    /// last hour (the fastest of three), milliseconds.
    backlog_scrape_ms: f64,
    isolation_half_latency: Latency,
    fanout_deliveries_per_s: f64,
    fanout_events_per_s: f64,
    /// Mixed event sizes (0.3 to 8 KB), batches of 50.
    ingest_mixed_events_per_s: f64,
    e2e_mixed_delivered_per_s: f64,
    /// webhookd's own CPU time (user + system) per event, in microseconds: per event
    /// ingested for ingest, per delivery for the others.
    cpu_us: CpuPerEvent,
    /// SQLite only: a trigger taking half the events and a mapping, delivered events/s.
    actions_trigger_mapping_delivered_per_s: f64,
    actions_trigger_mapping_ingested_per_s: f64,
    /// SQLite only: `batch_size = 100`, delivered events/s.
    actions_batch_delivered_events_per_s: f64,
}

/// webhookd's CPU time per event, microseconds, by scenario.
#[derive(Serialize, Default)]
struct CpuPerEvent {
    ingest_track: f64,
    ingest_batch: f64,
    ingest_mixed: f64,
    e2e_full: f64,
    e2e_batch: f64,
    e2e_mixed: f64,
    backlog_drain: f64,
    fanout: f64,
}

/// Microseconds of `service`'s CPU per event since `before` (its CPU seconds then).
fn cpu_us(service: &Service, before: f64, events: f64) -> f64 {
    (service.cpu_seconds() - before) * 1e6 / events.max(1.0)
}

/// Several instances on one database: load spread over all of them.
#[derive(Serialize, Default)]
struct ClusterResults {
    instances: usize,
    ingest_batch_events_per_s: f64,
    e2e_delivered_per_s: f64,
}

fn end_to_end_ratio(
    load: Load,
    receiver: &Receiver,
    per_request: u64,
    one_in: u64,
) -> (LoadResult, f64) {
    receiver.reset();
    let started = Instant::now();
    let sent = load::run(load);
    let expected = sent.ok * per_request / one_in;
    if !receiver.wait_for(expected, Duration::from_secs(600)) {
        eprintln!(
            "warning: only {} of {expected} deliveries arrived",
            receiver.delivered()
        );
    }
    (
        sent,
        receiver.delivered() as f64 / started.elapsed().as_secs_f64(),
    )
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

/// What every scenario shares.
struct Bench {
    args: Args,
    webhookd: PathBuf,
    receiver: Receiver,
}

/// Events per batch of mixed sizes: at most 400 KB, under the batch limit.
const MIXED_BATCH: u64 = 50;

/// Fast retries, so that a backlog drains at delivery speed rather than on a long timer.
const DELIVERY: &str = "backoff_initial_ms = 100\nbackoff_max_ms = 1000\n";

impl Bench {
    fn wants(&self, scenario: &str) -> bool {
        self.args.only.is_empty() || self.args.only.iter().any(|s| s == scenario)
    }

    fn ids(&self) -> Ids {
        if self.args.ordered_ids {
            Ids::Ordered
        } else {
            Ids::Random
        }
    }

    /// Single track events (about 230 bytes), each with a fresh `messageId`.
    fn track(&self) -> Body {
        Body::new(vec![bodies::track_event(0)], self.ids())
    }

    /// Batches of [`MIXED_BATCH`] events of 0.3 to 8 KB.
    fn mixed(&self) -> Body {
        Body::new(bodies::mixed_batches(MIXED_BATCH as usize), self.ids())
    }

    /// Batches of `size` track events, each with a fresh `messageId`.
    fn batch(&self, size: usize) -> Body {
        Body::new(vec![bodies::batch(size)], self.ids())
    }

    fn load(&self, urls: Vec<String>, body: Body) -> Load {
        Load {
            urls,
            headers: auth(),
            body,
            concurrency: self.args.concurrency,
            duration: Duration::from_secs(self.args.seconds),
            max_requests: None,
            rate: None,
            wrk: !self.args.harness_load,
        }
    }

    /// A fresh store for one scenario (and what keeps it alive).
    fn storage(&self, postgres: bool) -> (Storage, Option<Database>) {
        if !postgres {
            return (Storage::Sqlite, None);
        }
        let database = Database::create(&self.args.pg_url);
        let storage = Storage::Postgres {
            url: database.url.clone(),
        };
        (storage, Some(database))
    }

    fn start(&self, storage: &Storage, destinations: &[(&str, String)], delivery: &str) -> Service {
        Service::start(&self.webhookd, storage, destinations, delivery, "")
    }

    /// Scenarios 7 and 8 (SQLite): a destination of the Actions kind, end to end.
    fn actions(&self, r: &mut BackendResults) {
        let receiver = &self.receiver;
        eprintln!("SQLite: 7 trigger matching half the events, and a mapping");
        {
            // The body alternates between two events; the trigger takes one of them.
            let trigger = "subscribe = 'type = \"track\" and event = \"Order Completed\"'\n\
                [data]\norder = { \"@path\" = \"$.properties.sku\" }\n\
                revenue = { \"@path\" = \"$.properties.revenue\" }\n\
                who = { \"@template\" = \"{{userId}}\" }\n"
                .replace("[data]", "[sources.destinations.data]");
            let service = Service::start(
                &self.webhookd,
                &Storage::Sqlite,
                &[("mapped", receiver.url("/hook"))],
                DELIVERY,
                &trigger,
            );
            // Events alternate between one the trigger takes and one it does not.
            let mut batch = bodies::batch(100);
            for (i, item) in batch["batch"]
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .enumerate()
            {
                if i % 2 == 1 {
                    item["event"] = json!("Product Viewed");
                }
            }
            let load = Load {
                concurrency: self.args.concurrency.min(16),
                ..self.load(
                    vec![service.url("/v1/batch")],
                    Body::new(vec![batch], self.ids()),
                )
            };
            let (sent, rate) = end_to_end_ratio(load, receiver, 100, 2);
            r.actions_trigger_mapping_delivered_per_s = rate;
            r.actions_trigger_mapping_ingested_per_s = sent.per_second() * 100.0;
        }
        eprintln!("SQLite: 8 batch_size = 100");
        {
            let service = Service::start(
                &self.webhookd,
                &Storage::Sqlite,
                &[("batched", receiver.url("/hook"))],
                DELIVERY,
                "batch_size = 100\nbatch_wait_ms = 200\n",
            );
            let load = Load {
                concurrency: self.args.concurrency.min(16),
                ..self.load(vec![service.url("/v1/batch")], self.batch(100))
            };
            let (_, rate) = end_to_end_ratio(load, receiver, 100, 1);
            r.actions_batch_delivered_events_per_s = rate;
        }
    }

    /// Scenarios 2 to 6 on one backend.
    fn scenarios(&self, postgres: bool, half_rate: Option<f64>) -> BackendResults {
        let name = if postgres { "PostgreSQL" } else { "SQLite" };
        let receiver = &self.receiver;
        let mut r = BackendResults {
            ran: true,
            ..BackendResults::default()
        };

        if self.wants("ingest") {
            eprintln!("{name}: 2/6 ingest");
            let (storage, _db) = self.storage(postgres);
            let service = self.start(&storage, &[], DELIVERY);
            let cpu = service.cpu_seconds();
            let track = load::run(self.load(vec![service.url("/v1/track")], self.track()));
            r.ingest_track_events_per_s = track.per_second();
            r.cpu_us.ingest_track = cpu_us(&service, cpu, track.ok as f64);
            let batch = Load {
                concurrency: self.args.concurrency.min(16),
                ..self.load(vec![service.url("/v1/batch")], self.batch(100))
            };
            let cpu = service.cpu_seconds();
            let batch = load::run(batch);
            r.ingest_batch_events_per_s = batch.per_second() * 100.0;
            r.cpu_us.ingest_batch = cpu_us(&service, cpu, batch.ok as f64 * 100.0);
            let mixed = Load {
                concurrency: self.args.concurrency.min(16),
                ..self.load(vec![service.url("/v1/batch")], self.mixed())
            };
            let cpu = service.cpu_seconds();
            let mixed = load::run(mixed);
            r.ingest_mixed_events_per_s = mixed.per_second() * MIXED_BATCH as f64;
            r.cpu_us.ingest_mixed = cpu_us(&service, cpu, (mixed.ok * MIXED_BATCH) as f64);
        }

        if self.wants("e2e") {
            eprintln!("{name}: 3/6 end to end");
            let (storage, _db) = self.storage(postgres);
            let service = self.start(&storage, &[("hook", receiver.url("/hook"))], DELIVERY);
            let cpu = service.cpu_seconds();
            let (_, rate) = end_to_end(
                self.load(vec![service.url("/v1/track")], self.track()),
                receiver,
                1,
            );
            r.e2e_full_delivered_per_s = rate;
            r.cpu_us.e2e_full = cpu_us(&service, cpu, receiver.delivered() as f64);
            r.e2e_full_latency = receiver.latency();
            // Both backends are measured at the same offered rate: SQLite's half load.
            r.e2e_half_rate_per_s = half_rate.unwrap_or((rate / 2.0).max(1.0));
            let half = Load {
                rate: Some(r.e2e_half_rate_per_s),
                ..self.load(vec![service.url("/v1/track")], self.track())
            };
            end_to_end(half, receiver, 1);
            r.e2e_half_latency = receiver.latency();
        }

        if self.wants("e2e") {
            eprintln!("{name}: 3/6 end to end, batches of 100");
            let (storage, _db) = self.storage(postgres);
            let service = self.start(&storage, &[("hook", receiver.url("/hook"))], DELIVERY);
            let batches = Load {
                concurrency: self.args.concurrency.min(16),
                ..self.load(vec![service.url("/v1/batch")], self.batch(100))
            };
            let cpu = service.cpu_seconds();
            let (_, rate) = end_to_end(batches, receiver, 100);
            r.e2e_batch_delivered_per_s = rate;
            r.cpu_us.e2e_batch = cpu_us(&service, cpu, receiver.delivered() as f64);
            r.e2e_batch_latency = receiver.latency();
        }

        if self.wants("e2e") {
            eprintln!("{name}: 3/6 end to end, mixed event sizes");
            let (storage, _db) = self.storage(postgres);
            let service = self.start(&storage, &[("hook", receiver.url("/hook"))], DELIVERY);
            let mixed = Load {
                concurrency: self.args.concurrency.min(16),
                ..self.load(vec![service.url("/v1/batch")], self.mixed())
            };
            let cpu = service.cpu_seconds();
            let (_, rate) = end_to_end(mixed, receiver, MIXED_BATCH);
            r.e2e_mixed_delivered_per_s = rate;
            r.cpu_us.e2e_mixed = cpu_us(&service, cpu, receiver.delivered() as f64);
        }

        let backlog = match (postgres, self.args.pg_backlog) {
            (true, Some(n)) => n,
            _ => self.args.backlog,
        };
        if self.wants("backlog") {
            eprintln!("{name}: 4/6 backlog of {backlog}");
            let (storage, _db) = self.storage(postgres);
            let service = self.start(&storage, &[("hook", receiver.url("/hook"))], DELIVERY);
            receiver.set_mode(Mode::Unavailable);
            let ingest = Load {
                concurrency: self.args.concurrency.min(16),
                duration: Duration::from_secs(3600),
                max_requests: Some(backlog.div_ceil(100)),
                ..self.load(vec![service.url("/v1/batch")], self.batch(100))
            };
            receiver.reset();
            let sent = load::run(ingest);
            r.backlog_events = sent.ok * 100;
            r.backlog_ingest_events_per_s = sent.per_second() * 100.0;
            r.backlog_deletion_ms = (0..3)
                .map(|i| {
                    let regulation = format!(
                        r#"{{"regulationType":"DELETE_ONLY","subjectType":"USER_ID","subjectIds":["nobody-{i}"]}}"#
                    );
                    let started = Instant::now();
                    let status = service.post_admin("/admin/v1/regulations", &regulation);
                    assert_eq!(status, 202, "deletion request");
                    started.elapsed().as_secs_f64() * 1000.0
                })
                .fold(f64::INFINITY, f64::min);
            receiver.reset();
            let started = Instant::now();
            let cpu = service.cpu_seconds();
            receiver.set_mode(Mode::Ok);
            if !receiver.wait_for(r.backlog_events, Duration::from_secs(900)) {
                eprintln!(
                    "warning: backlog not drained: {} of {}",
                    receiver.delivered(),
                    r.backlog_events
                );
            }
            r.backlog_drain_per_s = receiver.delivered() as f64 / started.elapsed().as_secs_f64();
            r.cpu_us.backlog_drain = cpu_us(&service, cpu, receiver.delivered() as f64);
            r.backlog_peak_rss_mib = service.peak_rss_mib();
            r.backlog_scrape_ms = (0..3)
                .map(|_| {
                    let scrape = Instant::now();
                    service.metric("webhookd_queue_depth", "");
                    scrape.elapsed().as_secs_f64() * 1000.0
                })
                .fold(f64::INFINITY, f64::min);
        }

        if self.wants("isolation") && r.e2e_half_rate_per_s > 0.0 {
            eprintln!("{name}: 5/6 isolation");
            let destinations = [
                ("healthy", receiver.url("/hook")),
                ("hanging", receiver.url("/hang")),
            ];
            let (storage, _db) = self.storage(postgres);
            let service = self.start(
                &storage,
                &destinations,
                &format!("{DELIVERY}timeout_ms = 60000\n"),
            );
            let half = Load {
                rate: Some(r.e2e_half_rate_per_s),
                ..self.load(vec![service.url("/v1/track")], self.track())
            };
            end_to_end(half, receiver, 1);
            r.isolation_half_latency = receiver.latency();
        }

        if self.wants("fanout") {
            eprintln!("{name}: 6/6 fan-out");
            let destinations: Vec<(&str, String)> = ["d1", "d2", "d3", "d4", "d5"]
                .into_iter()
                .map(|d| (d, receiver.url("/hook")))
                .collect();
            let (storage, _db) = self.storage(postgres);
            let service = self.start(&storage, &destinations, DELIVERY);
            let cpu = service.cpu_seconds();
            let (_, rate) = end_to_end(
                self.load(vec![service.url("/v1/track")], self.track()),
                receiver,
                5,
            );
            r.fanout_deliveries_per_s = rate;
            r.cpu_us.fanout = cpu_us(&service, cpu, receiver.delivered() as f64);
            r.fanout_events_per_s = rate / 5.0;
        }
        r
    }

    /// Scenario 9: `events` through one destination at `rate` events/s with
    /// `delivered_s = 60`, beside a source whose receiver refuses connections.
    fn retention(&self, postgres: bool, events: u64, rate: f64) -> RetentionResults {
        let name = if postgres { "PostgreSQL" } else { "SQLite" };
        eprintln!("{name}: 9 retention, {events} events at {rate} events/s");
        let receiver = &self.receiver;
        let (storage, _db) = self.storage(postgres);
        let service = Service::start_with(
            &self.webhookd,
            &storage,
            &[("hook", receiver.url("/hook"))],
            DELIVERY,
            "",
            "dedupe_window_s = 60",
            "[retention]\ndelivered_s = 60\ndead_letter_s = 60\n\
             [[sources]]\nname = \"held\"\nwrite_key = \"HELD_KEY\"\n\
             [[sources.destinations]]\nname = \"held\"\nurls = [\"http://127.0.0.1:9/hook\"]\n",
        );
        let held = Load {
            headers: vec![
                (
                    "Authorization".into(),
                    format!("Basic {}", base64_key("HELD_KEY")),
                ),
                ("Content-Type".into(), "application/json".into()),
            ],
            max_requests: Some(10),
            ..self.load(vec![service.url("/v1/batch")], self.batch(100))
        };
        let held_sent = load::run(held).ok * 100;
        receiver.reset();
        let requests_per_s = rate / 100.0;
        let phase = |seconds: u64, requests: u64| Load {
            concurrency: 8,
            duration: Duration::from_secs(seconds),
            max_requests: Some(requests),
            rate: Some(requests_per_s),
            ..self.load(vec![service.url("/v1/batch")], self.batch(100))
        };
        let total_requests = events.div_ceil(100);
        let started = Instant::now();
        let done = std::sync::atomic::AtomicBool::new(false);
        let mut curve = Vec::new();
        let (before, during) = std::thread::scope(|scope| {
            let sampler = scope.spawn(|| {
                let mut samples = Vec::new();
                let mut next = Duration::ZERO;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    if started.elapsed() >= next {
                        let bytes = service.metric("webhookd_store_size_bytes", "") as u64;
                        samples.push((next.as_secs(), bytes));
                        next += Duration::from_secs(10);
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                samples
            });
            let first = (55.0 * requests_per_s) as u64;
            let before = load::run(phase(55, first.min(total_requests)));
            let during = load::run(phase(3600, total_requests.saturating_sub(before.ok)));
            let sent = (before.ok + during.ok) * 100;
            if !receiver.wait_for(sent, Duration::from_secs(600)) {
                eprintln!("warning: {} of {sent} delivered", receiver.delivered());
            }
            // Pruning catches up: everything but the last minute's events goes.
            let prunable = sent.saturating_sub((rate * 75.0) as u64) as f64;
            let deadline = Instant::now() + Duration::from_secs(300);
            while service.metric("webhookd_pruned_total", "what=\"events\"") < prunable
                && Instant::now() < deadline
            {
                // Each scrape costs the store aggregate queries: not too often.
                std::thread::sleep(Duration::from_secs(5));
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            curve = sampler.join().unwrap();
            (before, during)
        });
        RetentionResults {
            backend: name.into(),
            events: (before.ok + during.ok) * 100,
            offered_events_per_s: rate,
            delivered: receiver.delivered(),
            p50_before_ms: before.p50_ms,
            p99_before_ms: before.p99_ms,
            p50_during_ms: during.p50_ms,
            p99_during_ms: during.p99_ms,
            pruned_events: service.metric("webhookd_pruned_total", "what=\"events\""),
            held_sent,
            held_pending: service.metric("webhookd_queue_depth", "source=\"held\""),
            size_curve: curve,
        }
    }

    /// `instances` webhookd on one PostgreSQL database, six destinations (so that leases
    /// spread), load spread over every instance.
    fn cluster(&self, instances: usize) -> ClusterResults {
        eprintln!("cluster: {instances} instance(s) on one database");
        let receiver = &self.receiver;
        let destinations: Vec<(&str, String)> = ["c1", "c2", "c3", "c4", "c5", "c6"]
            .into_iter()
            .map(|d| (d, receiver.url("/hook")))
            .collect();
        let (storage, _db) = self.storage(true);
        let services: Vec<Service> = (0..instances)
            .map(|_| self.start(&storage, &destinations, DELIVERY))
            .collect();
        // Leases settle: every destination owned before the load.
        std::thread::sleep(Duration::from_secs(2));
        let urls = |path: &str| services.iter().map(|s| s.url(path)).collect::<Vec<_>>();
        let batch = Load {
            concurrency: self.args.concurrency.min(16),
            ..self.load(urls("/v1/batch"), self.batch(100))
        };
        let (sent, rate) = end_to_end(batch, receiver, 6);
        ClusterResults {
            instances,
            ingest_batch_events_per_s: sent.per_second() * 100.0,
            e2e_delivered_per_s: rate / 6.0,
        }
    }
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
        // What `cargo run` sets for this binary: build scripts (ring's) that watch these
        // would otherwise see them change and rebuild their crates at every run.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
                "CARGO_PRIMARY_",
            ]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            {
                build.env_remove(name.as_ref());
            }
        }
        if release {
            build.arg("--release");
        }
        assert!(
            build.status().expect("cargo runs").success(),
            "building webhookd failed"
        );
    }
    let postgres = args.backend == "postgres";
    let mut bench = Bench {
        args,
        webhookd,
        receiver: Receiver::start(),
    };
    let mut r = Results {
        machine: machine(),
        message_ids: match bench.ids() {
            Ids::Random => "random UUIDv4".into(),
            Ids::Ordered => "ordered UUIDv7".into(),
        },
        ..Results::default()
    };
    eprintln!("1/6 baseline");
    r.raw_limit_requests_per_s = wrk::raw_limit(
        &bench.receiver.url("/baseline"),
        &bodies::track_event(0).to_string(),
        Duration::from_secs(bench.args.seconds),
        &std::env::temp_dir(),
    );
    if r.raw_limit_requests_per_s.is_none() {
        eprintln!("wrk not found: ratios are to this harness's generator, which is slower");
        bench.args.harness_load = true;
    }
    r.load_generator = if !bench.args.harness_load {
        "wrk -t1 (a Lua script makes each body's ids); this harness's generator for fixed rates and request counts".into()
    } else {
        "this harness's generator".into()
    };
    r.baseline_requests_per_s = load::run(Load {
        wrk: false,
        ..bench.load(
            vec![bench.receiver.url("/baseline")],
            Body::fixed(bodies::track_event(0)),
        )
    })
    .per_second();
    if !bench.args.retention_only {
        r.sqlite = bench.scenarios(false, None);
        if bench.wants("actions") {
            bench.actions(&mut r.sqlite);
        }
    }
    if postgres && !bench.args.retention_only {
        r.postgres = Some(bench.scenarios(true, Some(r.sqlite.e2e_half_rate_per_s)));
        r.cluster = (1..=3).map(|n| bench.cluster(n)).collect();
    }
    if bench.args.retention_events > 0 {
        let (events, rate) = (bench.args.retention_events, bench.args.retention_rate);
        r.retention.push(bench.retention(false, events, rate));
        if postgres {
            let rate = bench.args.pg_retention_rate.unwrap_or(rate);
            r.retention.push(bench.retention(true, events, rate));
        }
    }
    print_table(&r);
    std::fs::write(&bench.args.json, serde_json::to_string_pretty(&r).unwrap())
        .expect("write JSON");
    eprintln!("results written to {}", bench.args.json.display());
}

fn base64_key(key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
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
    let base = r
        .raw_limit_requests_per_s
        .unwrap_or(r.baseline_requests_per_s)
        .max(1e-9);
    let latency = |l: &Latency| {
        format!(
            "p50 {} ms, p99 {} ms, max {} ms",
            l.p50_ms, l.p99_ms, l.max_ms
        )
    };
    let backends: Vec<(&str, &BackendResults)> = std::iter::once(("SQLite", &r.sqlite))
        .chain(r.postgres.as_ref().map(|p| ("PostgreSQL", p)))
        .filter(|(_, b)| b.ran)
        .collect();
    println!("machine: {}", r.machine);
    println!("messageIds: {}", r.message_ids);
    println!("load at full speed: {}", r.load_generator);
    match r.raw_limit_requests_per_s {
        Some(raw) => {
            println!("1 raw limit: wrk -t1 -c64 posting to a trivial receiver: {raw:.0} requests/s (ratio 1.00)");
            println!(
                "1 baseline: this harness's generator posting to it: {:.0} requests/s ({:.2})",
                r.baseline_requests_per_s,
                r.baseline_requests_per_s / base
            );
        }
        None => println!(
            "1 baseline: this harness's generator posting to a trivial receiver: {:.0} requests/s (ratio 1.00; wrk not installed)",
            r.baseline_requests_per_s
        ),
    }
    for (name, b) in &backends {
        println!("\n{name}");
        println!(
            "{:<44} {:>14} {:>8}  notes",
            "scenario", "per second", "ratio"
        );
        let row = |scenario: &str, value: f64, notes: String| {
            println!(
                "{scenario:<44} {value:>14.0} {:>8.2}  {notes}",
                value / base
            );
        };
        let cpu = |us: f64| format!("{us:.0} us CPU/event");
        row(
            "2 ingest /v1/track (durable)",
            b.ingest_track_events_per_s,
            format!("events/s; {}", cpu(b.cpu_us.ingest_track)),
        );
        row(
            "2 ingest /v1/batch x100 (durable)",
            b.ingest_batch_events_per_s,
            format!("events/s; {}", cpu(b.cpu_us.ingest_batch)),
        );
        row(
            "2 ingest /v1/batch x50, 0.3-8 KB events",
            b.ingest_mixed_events_per_s,
            format!("events/s; {}", cpu(b.cpu_us.ingest_mixed)),
        );
        row(
            "3 end to end, full load",
            b.e2e_full_delivered_per_s,
            format!(
                "delivered/s; {}; {}",
                cpu(b.cpu_us.e2e_full),
                latency(&b.e2e_full_latency)
            ),
        );
        row(
            "3 end to end, /v1/batch x100 in",
            b.e2e_batch_delivered_per_s,
            format!(
                "delivered/s; {}; {}",
                cpu(b.cpu_us.e2e_batch),
                latency(&b.e2e_batch_latency)
            ),
        );
        row(
            "3 end to end, batches of 0.3-8 KB events",
            b.e2e_mixed_delivered_per_s,
            format!("delivered/s; {}", cpu(b.cpu_us.e2e_mixed)),
        );
        row(
            "3 end to end, half load",
            b.e2e_half_rate_per_s,
            format!("offered/s; {}", latency(&b.e2e_half_latency)),
        );
        row(
            "4 backlog ingest (receiver 503)",
            b.backlog_ingest_events_per_s,
            format!(
                "{} events, peak RSS {:.0} MiB",
                b.backlog_events, b.backlog_peak_rss_mib
            ),
        );
        println!(
            "{:<44} {:>14.1} {:>8}  ms to the 202, a user with no events",
            "4 deletion request, backlog stored", b.backlog_deletion_ms, ""
        );
        row(
            "4 backlog drain",
            b.backlog_drain_per_s,
            format!(
                "delivered/s; {}; then /metrics in {:.1} ms",
                cpu(b.cpu_us.backlog_drain),
                b.backlog_scrape_ms
            ),
        );
        row(
            "5 isolation: healthy beside a hanging one",
            b.e2e_half_rate_per_s,
            format!("offered/s; {}", latency(&b.isolation_half_latency)),
        );
        row(
            "6 fan-out to 5 destinations",
            b.fanout_deliveries_per_s,
            format!(
                "deliveries/s ({:.0} events/s); {} per delivery",
                b.fanout_events_per_s,
                cpu(b.cpu_us.fanout)
            ),
        );
        if b.actions_batch_delivered_events_per_s > 0.0 {
            row(
                "7 trigger (half) + mapping",
                b.actions_trigger_mapping_delivered_per_s,
                format!(
                    "delivered/s of {:.0} events/s ingested",
                    b.actions_trigger_mapping_ingested_per_s
                ),
            );
            row(
                "8 batch_size = 100",
                b.actions_batch_delivered_events_per_s,
                "events/s delivered in arrays of up to 100".into(),
            );
        }
    }
    if let Some(p) = &r.postgres {
        let s = &r.sqlite;
        println!("\nPostgreSQL against SQLite in this run");
        println!(
            "  /v1/batch durable ingest: {:.2} of SQLite's",
            p.ingest_batch_events_per_s / s.ingest_batch_events_per_s.max(1e-9)
        );
        println!(
            "  end to end delivered: {:.2} of SQLite's",
            p.e2e_full_delivered_per_s / s.e2e_full_delivered_per_s.max(1e-9)
        );
    }
    for t in &r.retention {
        println!(
            "\n9 retention on {}: {} events at {:.0}/s, delivered_s = 60",
            t.backend, t.events, t.offered_events_per_s
        );
        println!(
            "  delivered {}, pruned {:.0}; held back (receiver refusing): {} sent, {:.0} still pending",
            t.delivered, t.pruned_events, t.held_sent, t.held_pending
        );
        println!(
            "  batch ingest latency: before pruning p50 {:.1} ms p99 {:.1} ms; while pruning p50 {:.1} ms p99 {:.1} ms ({:.2}x)",
            t.p50_before_ms,
            t.p99_before_ms,
            t.p50_during_ms,
            t.p99_during_ms,
            t.p99_during_ms / t.p99_before_ms.max(1e-9)
        );
        let curve: Vec<String> = t
            .size_curve
            .iter()
            .map(|(s, b)| format!("{s}s {:.1}MB", *b as f64 / 1e6))
            .collect();
        println!("  store size: {}", curve.join(", "));
    }
    if !r.cluster.is_empty() {
        println!("\ncluster: instances on one PostgreSQL database, /v1/batch x100 spread over all");
        for c in &r.cluster {
            println!(
                "  {} instance(s): ingest {:.0} events/s ({:.2}), delivered end to end {:.0} events/s to each of 6 destinations ({:.2})",
                c.instances,
                c.ingest_batch_events_per_s,
                c.ingest_batch_events_per_s / base,
                c.e2e_delivered_per_s,
                c.e2e_delivered_per_s / base
            );
        }
    }
}
