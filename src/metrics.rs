//! Prometheus metrics: one registry, shared by the API and the actors, served at `/metrics`.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::store::DestinationStats;

/// Every metric webhookd exports.
pub struct Metrics {
    registry: Registry,
    /// `webhookd_events_received_total{source,type}`: events accepted at ingest.
    pub events_received: IntCounterVec,
    /// `webhookd_events_rejected_total{source,reason}`: events refused at ingest.
    pub events_rejected: IntCounterVec,
    /// `webhookd_events_filtered_total{source,destination,reason}`: events not delivered to
    /// a destination because of what they say: `integrations` flags, or not matching its
    /// trigger (`subscribe`).
    pub events_filtered: IntCounterVec,
    /// `webhookd_deliveries_total{source,destination,outcome}`: finished deliveries
    /// (`delivered` or `dead`).
    pub deliveries: IntCounterVec,
    /// `webhookd_attempts_total{source,destination,result}`: requests by status class
    /// (`2xx`, `3xx`, `4xx`, `5xx`) or `error` when no response came.
    pub attempts: IntCounterVec,
    /// `webhookd_attempt_duration_seconds{source,destination}`: request latency.
    pub attempt_duration: HistogramVec,
    /// `webhookd_actor_restarts_total{actor}`: actors restarted by their supervisor.
    pub actor_restarts: IntCounterVec,
    /// `webhookd_queue_depth{source,destination}`: pending deliveries (set at scrape).
    pub queue_depth: IntGaugeVec,
    /// `webhookd_oldest_pending_age_seconds{source,destination}`: age of the oldest
    /// pending delivery's event (set at scrape).
    pub oldest_pending_age: GaugeVec,
    /// `webhookd_dead_letters{source,destination}`: dead-lettered deliveries (set at scrape).
    pub dead_letters: IntGaugeVec,
    /// `webhookd_orphaned_deliveries{source,destination}`: pending deliveries of a
    /// destination no longer configured (removed or renamed without `previous_names`);
    /// they are not counted in `webhookd_queue_depth` (set at scrape).
    pub orphaned_deliveries: IntGaugeVec,
    /// `webhookd_store_commit_duration_seconds`: one group commit.
    pub store_commit_duration: Histogram,
    /// `webhookd_store_commit_jobs`: writes that shared one commit.
    pub store_commit_jobs: Histogram,
    /// `webhookd_delivery_actors`: delivery actors running (idle ones stop).
    pub delivery_actors: IntGauge,
    /// `webhookd_store_writable`: 1 while the store takes writes; 0 while it is full or
    /// unreachable (ingest answers 503, delivery holds off).
    pub store_writable: IntGauge,
    /// `webhookd_urls_gone_total{source,destination}`: URLs that answered `410 Gone` and
    /// are no longer tried.
    pub urls_gone: IntCounterVec,
    /// `webhookd_destination_disabled{source,destination}`: 1 while disabled for its
    /// failures (`disable_after_s`, or every URL gone), until resumed.
    pub destination_disabled: IntGaugeVec,
    /// `webhookd_destination_probing{source,destination}`: 1 while probed (one request
    /// at a time after consecutive failures).
    pub destination_probing: IntGaugeVec,
    /// `webhookd_notifications_total{type}`: operational webhooks stored for sending.
    pub notifications: IntCounterVec,
    /// `webhookd_pruned_total{what}`: rows removed by retention (`events`, `dedupe`).
    pub pruned: IntCounterVec,
    /// `webhookd_store_size_bytes`: space the store takes (set at scrape).
    pub store_size: IntGauge,
    /// `webhookd_admin_auth_failures_total{via}`: wrong admin tokens (`api`, `console`).
    pub admin_auth_failures: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let events_received = counter(
            "webhookd_events_received_total",
            "Events accepted at ingest",
            &["source", "type"],
        );
        let events_rejected = counter(
            "webhookd_events_rejected_total",
            "Events refused at ingest",
            &["source", "reason"],
        );
        let events_filtered = counter(
            "webhookd_events_filtered_total",
            "Events not delivered to a destination because of what they say",
            &["source", "destination", "reason"],
        );
        let deliveries = counter(
            "webhookd_deliveries_total",
            "Finished deliveries by outcome (delivered, dead)",
            &["source", "destination", "outcome"],
        );
        let attempts = counter(
            "webhookd_attempts_total",
            "Webhook requests by status class, or error when no response came",
            &["source", "destination", "result"],
        );
        let actor_restarts = counter(
            "webhookd_actor_restarts_total",
            "Actors restarted by their supervisor",
            &["actor"],
        );
        let urls_gone = counter(
            "webhookd_urls_gone_total",
            "URLs that answered 410 Gone and are no longer tried",
            &["source", "destination"],
        );
        let notifications = counter(
            "webhookd_notifications_total",
            "Operational webhooks stored for sending, by type",
            &["type"],
        );
        let pruned = counter(
            "webhookd_pruned_total",
            "Rows removed by retention (events, dedupe)",
            &["what"],
        );
        let admin_auth_failures = counter(
            "webhookd_admin_auth_failures_total",
            "Requests with a wrong admin token, by where they came (api, console)",
            &["via"],
        );
        for via in ["api", "console"] {
            admin_auth_failures.with_label_values(&[via]);
        }
        for what in ["events", "dedupe"] {
            pruned.with_label_values(&[what]);
        }
        let gauge = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["source", "destination"])
                .expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let queue_depth = gauge("webhookd_queue_depth", "Pending deliveries per destination");
        let dead_letters = gauge(
            "webhookd_dead_letters",
            "Dead-lettered deliveries per destination",
        );
        let orphaned_deliveries = gauge(
            "webhookd_orphaned_deliveries",
            "Pending deliveries of a destination that is no longer configured",
        );
        let destination_disabled = gauge(
            "webhookd_destination_disabled",
            "1 while a destination is disabled for its failures, until resumed",
        );
        let destination_probing = gauge(
            "webhookd_destination_probing",
            "1 while a destination is probed, one request at a time",
        );
        let oldest_pending_age = GaugeVec::new(
            Opts::new(
                "webhookd_oldest_pending_age_seconds",
                "Age of the oldest pending delivery's event per destination",
            ),
            &["source", "destination"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(oldest_pending_age.clone()))
            .expect("unique metric");
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let store_commit_duration = histogram(
            "webhookd_store_commit_duration_seconds",
            "Duration of one group commit",
            vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ],
        );
        let store_commit_jobs = histogram(
            "webhookd_store_commit_jobs",
            "Writes that shared one commit",
            vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
        );
        let delivery_actors = IntGauge::new("webhookd_delivery_actors", "Delivery actors running")
            .expect("valid metric");
        registry
            .register(Box::new(delivery_actors.clone()))
            .expect("unique metric");
        let store_writable = IntGauge::new(
            "webhookd_store_writable",
            "1 while the store takes writes, 0 while it is full or unreachable",
        )
        .expect("valid metric");
        store_writable.set(1);
        registry
            .register(Box::new(store_writable.clone()))
            .expect("unique metric");
        let store_size = IntGauge::new("webhookd_store_size_bytes", "Space the store takes")
            .expect("valid metric");
        registry
            .register(Box::new(store_size.clone()))
            .expect("unique metric");
        // Present from the start, so that alerts on increase() work before a first restart.
        for actor in ["router", "delivery", "deletion", "notifier", "retention"] {
            actor_restarts.with_label_values(&[actor]);
        }
        let attempt_duration = HistogramVec::new(
            HistogramOpts::new(
                "webhookd_attempt_duration_seconds",
                "Webhook request latency, to the response headers",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["source", "destination"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(attempt_duration.clone()))
            .expect("unique metric");
        Metrics {
            registry,
            events_received,
            events_rejected,
            events_filtered,
            deliveries,
            attempts,
            attempt_duration,
            actor_restarts,
            queue_depth,
            orphaned_deliveries,
            oldest_pending_age,
            dead_letters,
            store_commit_duration,
            store_commit_jobs,
            delivery_actors,
            store_writable,
            urls_gone,
            admin_auth_failures,
            destination_disabled,
            destination_probing,
            notifications,
            pruned,
            store_size,
        }
    }

    /// Sets the per-destination gauges from the store's figures. The pending work of a
    /// destination that is not `configured` is shown as orphaned, not as a queue: no
    /// actor drains it, and an alert on a stuck queue would fire for it forever.
    pub fn set_destination_gauges(
        &self,
        stats: &[DestinationStats],
        now_ms: i64,
        configured: impl Fn(&str, &str) -> bool,
    ) {
        self.queue_depth.reset();
        self.oldest_pending_age.reset();
        self.dead_letters.reset();
        self.orphaned_deliveries.reset();
        for s in stats {
            let labels = [s.source.as_str(), s.destination.as_str()];
            self.dead_letters
                .with_label_values(&labels)
                .set(s.dead as i64);
            if !configured(&s.source, &s.destination) {
                self.orphaned_deliveries
                    .with_label_values(&labels)
                    .set(s.pending as i64);
                continue;
            }
            self.queue_depth
                .with_label_values(&labels)
                .set(s.pending as i64);
            let age = s
                .oldest_pending_received_at_ms
                .map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0);
            self.oldest_pending_age.with_label_values(&labels).set(age);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail on a Vec");
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// One destination's attempt and delivery series, each resolved once, when first used:
/// `with_label_values` hashes its labels and takes a lock, and a delivery actor counts
/// every request it makes.
pub struct DestinationSeries {
    metrics: std::sync::Arc<Metrics>,
    source: String,
    destination: String,
    /// `webhookd_attempts_total`, by status class (index 1 to 9 for `1xx` to `9xx`, 0
    /// for `error`).
    attempts: [std::cell::OnceCell<prometheus::IntCounter>; 10],
    attempt_duration: std::cell::OnceCell<Histogram>,
    delivered: std::cell::OnceCell<prometheus::IntCounter>,
    dead: std::cell::OnceCell<prometheus::IntCounter>,
}

impl DestinationSeries {
    pub fn new(metrics: std::sync::Arc<Metrics>, source: &str, destination: &str) -> Self {
        DestinationSeries {
            metrics,
            source: source.to_string(),
            destination: destination.to_string(),
            attempts: Default::default(),
            attempt_duration: Default::default(),
            delivered: Default::default(),
            dead: Default::default(),
        }
    }

    /// One request: its status (`None` when no response came) and how long it took.
    pub fn attempt(&self, status: Option<u16>, seconds: f64) {
        let class = status.map_or(0, |s| usize::from(s / 100).clamp(1, 9));
        self.attempts[class]
            .get_or_init(|| {
                let result = match status {
                    Some(_) => format!("{class}xx"),
                    None => "error".to_string(),
                };
                self.metrics
                    .attempts
                    .with_label_values(&[&self.source, &self.destination, &result])
            })
            .inc();
        self.attempt_duration
            .get_or_init(|| {
                self.metrics
                    .attempt_duration
                    .with_label_values(&[&self.source, &self.destination])
            })
            .observe(seconds);
    }

    /// A delivery finished: delivered, or dead-lettered.
    pub fn finished(&self, delivered: bool) {
        let (cell, outcome) = match delivered {
            true => (&self.delivered, "delivered"),
            false => (&self.dead, "dead"),
        };
        cell.get_or_init(|| {
            self.metrics
                .deliveries
                .with_label_values(&[&self.source, &self.destination, outcome])
        })
        .inc();
    }
}
