//! The benchmark runs at a tiny size, so that it cannot rot. No figure is judged here:
//! only that every scenario ran and produced one.

use std::process::Command;

#[test]
fn the_benchmark_runs_every_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("results.json");
    let out = Command::new(env!("CARGO_BIN_EXE_webhookd-bench"))
        .args(["--seconds", "1", "--backlog", "300", "--concurrency", "4"])
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
    let table = String::from_utf8_lossy(&out.stdout);
    for scenario in [
        "1 baseline",
        "2 ingest /v1/batch",
        "3 end to end, half load",
        "4 backlog drain",
        "5 isolation",
        "6 fan-out",
    ] {
        assert!(table.contains(scenario), "{scenario} missing from\n{table}");
    }
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for key in [
        "baseline_requests_per_s",
        "ingest_track_events_per_s",
        "ingest_batch_events_per_s",
        "e2e_full_delivered_per_s",
        "backlog_drain_per_s",
        "backlog_peak_rss_mib",
        "fanout_deliveries_per_s",
    ] {
        assert!(
            results[key].as_f64().unwrap() > 0.0,
            "{key}: {}",
            results[key]
        );
    }
    assert_eq!(results["backlog_events"], 300);
}
