//! The benchmark runs at a tiny size, so that it cannot rot. No figure is judged here:
//! only that every scenario ran and produced one.

use std::process::Command;

/// Runs the benchmark at a tiny size with `extra` arguments; its table and JSON.
fn run_bench(extra: &[&str]) -> (String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("results.json");
    let out = Command::new(env!("CARGO_BIN_EXE_webhookd-bench"))
        .args(["--seconds", "1", "--backlog", "300", "--concurrency", "4"])
        .args(extra)
        .arg("--webhookd")
        .arg(env!("CARGO_BIN_EXE_webhookd"))
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let results = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (table, results)
}

fn check_backend(results: &serde_json::Value) {
    for key in [
        "ingest_track_events_per_s",
        "ingest_batch_events_per_s",
        "e2e_full_delivered_per_s",
        "backlog_drain_per_s",
        "backlog_peak_rss_mib",
        "backlog_scrape_ms",
        "fanout_deliveries_per_s",
        "ingest_mixed_events_per_s",
        "e2e_mixed_delivered_per_s",
    ] {
        assert!(
            results[key].as_f64().unwrap() > 0.0,
            "{key}: {}",
            results[key]
        );
    }
    assert_eq!(results["backlog_events"], 300);
    for key in ["ingest_batch", "e2e_full", "e2e_mixed"] {
        assert!(
            results["cpu_us"][key].as_f64().unwrap() > 0.0,
            "CPU per event of {key}: {}",
            results["cpu_us"][key]
        );
    }
}

#[test]
fn the_benchmark_runs_every_scenario() {
    let (table, results) = run_bench(&[]);
    for scenario in [
        "1 baseline",
        "2 ingest /v1/batch",
        "3 end to end, half load",
        "4 backlog drain",
        "5 isolation",
        "6 fan-out",
        "7 trigger (half) + mapping",
        "8 batch_size = 100",
        "messageIds: random UUIDv4",
        "0.3-8 KB events",
        "us CPU/event",
    ] {
        assert!(table.contains(scenario), "{scenario} missing from\n{table}");
    }
    assert!(results["baseline_requests_per_s"].as_f64().unwrap() > 0.0);
    check_backend(&results["sqlite"]);
    for key in [
        "actions_trigger_mapping_delivered_per_s",
        "actions_batch_delivered_events_per_s",
    ] {
        assert!(results["sqlite"][key].as_f64().unwrap() > 0.0, "{key}");
    }
}

#[test]
fn the_benchmark_runs_on_postgresql_and_in_a_cluster() {
    if !crate::common::postgres::postgres_available() {
        return;
    }
    let (table, results) = run_bench(&["--backend", "postgres"]);
    assert!(
        table.contains("PostgreSQL against SQLite in this run"),
        "{table}"
    );
    check_backend(&results["postgres"]);
    let cluster = results["cluster"].as_array().unwrap();
    assert_eq!(cluster.len(), 3);
    for c in cluster {
        assert!(c["e2e_delivered_per_s"].as_f64().unwrap() > 0.0, "{c}");
    }
}
