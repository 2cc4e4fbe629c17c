//! Store faults: when the store is out of space, ingest answers 503 rather than 200 for
//! what it could not store, the service keeps running, delivery keeps its state, and
//! everything recovers when space returns. These run on SQLite whatever the suite's
//! backend: `storage.max_size_mb` and the filesystem are the embedded store's (a
//! PostgreSQL server's disk is its own; its outages are tested in `tests/outage`).

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::receiver::Receiver;
use crate::common::{wait_until, web_to_hook, Webhookd};

fn config(max_size_mb: u64, receiver: &Receiver) -> String {
    format!(
        "[storage]\nmax_size_mb = {max_size_mb}\n{}",
        web_to_hook(receiver)
    )
}

#[test]
fn a_full_store_answers_503_and_recovers_when_space_returns() {
    let receiver = Receiver::ok();
    // The cap sits in [storage] beside the path, so the test writes the whole file.
    let mut service = Webhookd::start_on(None, &web_to_hook(&receiver), "");
    let db = service.db_path().display().to_string();
    let capped = |mb: u64| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = {db:?}\n{}",
            config(mb, &receiver).replacen("[storage]\n", "", 1)
        )
    };
    service.write_raw_config(&capped(1));
    service.start_again();

    let pad = "x".repeat(2_000);
    let mut acked = Vec::new();
    let mut refused = None;
    for batch in 0..200 {
        let items: Vec<Value> = (0..20)
            .map(|i| json!({"type": "track", "userId": "u", "event": "E", "messageId": format!("full-{batch}-{i}"), "properties": {"pad": pad}}))
            .collect();
        let response = service.post("/v1/batch", &json!({ "batch": items }));
        if response.status == 200 {
            acked.extend((0..20).map(|i| format!("full-{batch}-{i}")));
        } else {
            refused = Some(response);
            break;
        }
    }
    let refused = refused.expect("a 1 MiB store fills up");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.error(), "the store is out of space; retry later");
    assert!(!acked.is_empty());
    assert!(service.is_running());
    assert_eq!(crate::common::get(&service.url("/healthz")).status, 200);

    // Space returns: a larger cap, and a restart to take it.
    service.write_raw_config(&capped(64));
    service.start_again();
    let store = service.store();
    for id in &acked {
        assert!(
            store.find("web", id).is_some(),
            "{id} was acknowledged but is not stored"
        );
    }
    let response = service.post(
        "/v1/track",
        &json!({"userId": "u", "event": "E", "messageId": "after-full"}),
    );
    assert_eq!(response.status, 200);
    // Every acknowledged event is delivered in the end.
    assert!(wait_until(Duration::from_secs(60), || store
        .pending("web", "hook")
        == 0));
    let arrived: std::collections::HashSet<String> = receiver
        .requests()
        .iter()
        .map(|r| r.json()["messageId"].as_str().unwrap().to_string())
        .collect();
    let missing: Vec<&String> = acked.iter().filter(|id| !arrived.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events never delivered",
        missing.len()
    );
}

/// A real filesystem that fills: a 3 MiB tmpfs, mounted by the test (it needs root; where
/// mounting is not allowed the test says so and does nothing).
struct SmallFilesystem {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallFilesystem {
    fn mount(size: &str) -> Option<SmallFilesystem> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fs");
        std::fs::create_dir(&path).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .is_ok_and(|o| o.status.success());
        mounted.then_some(SmallFilesystem { path, _dir: dir })
    }

    /// Remounts it read-only (`true`) or writable again.
    fn set_read_only(&self, read_only: bool) {
        let mode = if read_only {
            "remount,ro"
        } else {
            "remount,rw"
        };
        let status = std::process::Command::new("mount")
            .args(["-o", mode])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn resize(&self, size: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

#[test]
fn a_full_filesystem_answers_503_and_recovers_live_when_space_returns() {
    let Some(fs) = SmallFilesystem::mount("3m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root); the page-cap test covers the 503 path");
        return;
    };
    let receiver = Receiver::ok();
    let service = Webhookd::start_on(None, &web_to_hook(&receiver), "");
    let db = fs.path.join("webhookd.db").display().to_string();
    service.write_raw_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = {db:?}\n{}",
        web_to_hook(&receiver)
    ));
    let mut service = service;
    service.start_again();

    let pad = "y".repeat(2_000);
    let mut acked = Vec::new();
    let mut refused = None;
    for batch in 0..500 {
        let items: Vec<Value> = (0..20)
            .map(|i| json!({"type": "track", "userId": "u", "event": "E", "messageId": format!("fs-{batch}-{i}"), "properties": {"pad": pad}}))
            .collect();
        let response = service.post("/v1/batch", &json!({ "batch": items }));
        if response.status == 200 {
            acked.extend((0..20).map(|i| format!("fs-{batch}-{i}")));
        } else {
            refused = Some(response);
            break;
        }
    }
    let refused = refused.expect("a 3 MiB filesystem fills up");
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.error(), "the store is out of space; retry later");
    assert!(!acked.is_empty());
    assert!(service.is_running());

    // Space returns while webhookd runs: it accepts again without a restart.
    fs.resize("64m");
    let accepted = wait_until(Duration::from_secs(30), || {
        service
            .post(
                "/v1/track",
                &json!({"userId": "u", "event": "E", "messageId": "fs-after"}),
            )
            .status
            == 200
    });
    assert!(accepted, "ingest did not recover:\n{}", service.log_text());
    let store = crate::common::StoreProbe::open(&fs.path.join("webhookd.db"));
    for id in &acked {
        assert!(
            store.find("web", id).is_some(),
            "{id} was acknowledged but is not stored"
        );
    }
    assert!(wait_until(Duration::from_secs(60), || store
        .pending("web", "hook")
        == 0));
    drop(store);
    // Before the filesystem goes away.
    service.kill();
}

#[test]
fn a_full_store_stops_delivery_instead_of_sending_again_and_a_reload_frees_it() {
    let (receiver, open) = crate::common::receiver::Receiver::gated();
    let service = Webhookd::start_on(None, &web_to_hook(&receiver), "");
    let db = service.db_path().display().to_string();
    let whole = |mb: u64| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_token = {:?}\n\
             [storage]\npath = {db:?}\nmax_size_mb = {mb}\n\
             [delivery]\nbackoff_initial_ms = 100\nbackoff_max_ms = 500\n{}",
            crate::common::ADMIN_TOKEN,
            web_to_hook(&receiver)
        )
    };
    service.write_raw_config(&whole(1));
    let mut service = service;
    service.start_again();

    // 3,000 events of about 500 bytes while the receiver answers 503, until the store is full.
    let pad = "z".repeat(400);
    let mut acked = Vec::new();
    let mut full = false;
    for batch in 0..150 {
        let items: Vec<Value> = (0..20)
            .map(|i| json!({"type": "track", "userId": "u", "event": "E", "messageId": format!("loop-{batch}-{i}"), "properties": {"pad": pad}}))
            .collect();
        let response = service.post("/v1/batch", &json!({ "batch": items }));
        if response.status == 200 {
            acked.extend((0..20).map(|i| format!("loop-{batch}-{i}")));
        } else {
            assert_eq!(response.status, 503, "{response:?}");
            full = true;
        }
    }
    assert!(full, "a 1 MiB store fills up");
    assert!(!acked.is_empty());

    // The receiver recovers; the store is still full. Delivery stops rather than sending
    // the same events again and again, and says why.
    let before_recovery = receiver.count();
    open.store(true, std::sync::atomic::Ordering::SeqCst);
    let ready = crate::common::get(&service.url("/readyz"));
    assert_eq!(ready.status, 503, "{ready:?}");
    assert_eq!(ready.body["reason"], "the store is out of space");
    let destinations = crate::common::admin("GET", &service.url("/admin/v1/destinations"), None);
    assert_eq!(destinations.body["destinations"][0]["state"], "blocked");
    // The absence of a loop can only be watched for a while.
    std::thread::sleep(Duration::from_secs(3));
    let arrivals_since = |start: usize| {
        let mut counts = std::collections::HashMap::<String, usize>::new();
        for r in &receiver.requests()[start..] {
            let id = r.json()["messageId"].as_str().unwrap().to_string();
            *counts.entry(id).or_default() += 1;
        }
        counts
    };
    let while_full = arrivals_since(before_recovery);
    assert!(
        while_full.values().all(|n| *n <= 1),
        "sent again while the store was full: {:?}",
        while_full
            .iter()
            .filter(|(_, n)| **n > 1)
            .collect::<Vec<_>>()
    );

    // Space is freed by a reload with a larger cap: the backlog drains, each event at
    // most twice in all.
    service.write_raw_config(&whole(64));
    service.signal("HUP");
    let store = service.store();
    assert!(
        wait_until(Duration::from_secs(120), || store.pending("web", "hook")
            == 0),
        "the backlog did not drain:\n{}",
        service.log_text()
    );
    let delivered = arrivals_since(before_recovery);
    let missing: Vec<_> = acked
        .iter()
        .filter(|id| !delivered.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events never arrived",
        missing.len()
    );
    let repeated: Vec<_> = delivered.iter().filter(|(_, n)| **n > 2).collect();
    assert!(repeated.is_empty(), "arrived more than twice: {repeated:?}");
    assert_eq!(crate::common::get(&service.url("/readyz")).status, 200);
}

/// A store that cannot be created (a read-only filesystem) stops the start with the
/// database's path and the reason, not "unable to open database file" alone.
#[test]
fn an_unwritable_store_is_named_with_the_reason() {
    let Some(fs) = SmallFilesystem::mount("8m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    fs.set_read_only(true);
    let receiver = Receiver::ok();
    let service = Webhookd::start_on(None, &web_to_hook(&receiver), "");
    let db = fs.path.join("webhookd.db").display().to_string();
    service.write_raw_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = {db:?}\n{}",
        web_to_hook(&receiver)
    ));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_webhookd"))
        .arg("--config")
        .arg(service.dir.path().join("config.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_until(Duration::from_secs(20), || {
        child.try_wait().unwrap().is_some()
    });
    if !exited {
        let _ = child.kill();
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        exited,
        "webhookd started on a read-only filesystem:\n{stderr}"
    );
    assert!(stderr.contains(&db), "{stderr}");
    assert!(
        stderr.to_lowercase().contains("read-only file system"),
        "{stderr}"
    );
    fs.set_read_only(false);
}
