//! Prometheus metrics: one registry, shared by the API and the actors, served at `/metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Every metric webhookd exports.
pub struct Metrics {
    registry: Registry,
    /// `webhookd_events_received_total{source,type}`: events accepted at ingest.
    pub events_received: IntCounterVec,
    /// `webhookd_events_rejected_total{source,reason}`: events refused at ingest.
    pub events_rejected: IntCounterVec,
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
            deliveries,
            attempts,
            attempt_duration,
            actor_restarts,
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
