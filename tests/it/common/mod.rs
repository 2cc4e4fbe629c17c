//! Test harness: runs the real `webhookd` binary as a child process on 127.0.0.1 with its
//! SQLite file in a temp dir, and talks to it over real HTTP.

#![allow(dead_code)]

pub mod pki;
pub mod postgres;
pub mod receiver;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use webhookd::config::{StorageBackend, StorageConfig};
use webhookd::store::{DeliveryStatus, SqliteStore, Store, StoredEvent};

use postgres::{suite_on_postgres, TestDatabase};

pub const WRITE_KEY: &str = "WRITE_KEY_WEB";
pub const ADMIN_TOKEN: &str = "test-admin-token";
/// The Node.js clients and reference packages (`npm ci` there).
pub const CLIENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");

/// A config with one source `web` (write key [`WRITE_KEY`]) and one destination.
pub fn one_source_config() -> String {
    format!(
        r#"
[[sources]]
name = "web"
write_key = "{WRITE_KEY}"
  [[sources.destinations]]
  name = "primary"
  urls = ["http://127.0.0.1:9/hook"]
  shared_secret = "s3cr3t"
"#
    )
}

/// One source `web` (write key [`WRITE_KEY`]) with one destination `hook` posting to
/// `receiver`'s `/hook`.
pub fn web_to_hook(receiver: &receiver::Receiver) -> String {
    format!(
        "[[sources]]\nname = \"web\"\nwrite_key = \"{WRITE_KEY}\"\n\
         [[sources.destinations]]\nname = \"hook\"\nurls = [{:?}]\n",
        receiver.url("/hook")
    )
}

/// How long a lease holds in tests on PostgreSQL: short, so that a restarted or killed
/// instance's destinations pass on quickly.
pub const TEST_LEASE_S: u64 = 3;

/// A running `webhookd` child process.
pub struct Webhookd {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    /// The `[server]` and `[storage]` part of the config file.
    head: String,
    logs: Arc<Mutex<Vec<String>>>,
    /// The PostgreSQL database it runs on, if it does (shared by the instances of one
    /// cluster).
    pub database: Option<Arc<TestDatabase>>,
}

impl Webhookd {
    /// Starts webhookd with `sources_toml` (sources and any other sections but `[server]`
    /// `listen` and `[storage]`, which the harness sets).
    pub fn start(sources_toml: &str) -> Webhookd {
        Webhookd::start_with(sources_toml, "")
    }

    /// As [`Webhookd::start`], with extra `[server]` keys. The store is the suite's
    /// backend: SQLite in a temp dir, or a PostgreSQL database of its own
    /// (`WEBHOOKD_TEST_BACKEND=postgres`).
    pub fn start_with(sources_toml: &str, server_keys: &str) -> Webhookd {
        let database = suite_on_postgres().then(|| Arc::new(TestDatabase::create()));
        Webhookd::start_on(database, sources_toml, server_keys)
    }

    /// Another instance on the same PostgreSQL database as `peer` (a cluster).
    pub fn join(peer: &Webhookd, sources_toml: &str, server_keys: &str) -> Webhookd {
        let database = peer.database.clone().expect("a cluster runs on PostgreSQL");
        Webhookd::start_on(Some(database), sources_toml, server_keys)
    }

    /// Starts webhookd on `database` (PostgreSQL), or on SQLite in a temp dir.
    pub fn start_on(
        database: Option<Arc<TestDatabase>>,
        sources_toml: &str,
        server_keys: &str,
    ) -> Webhookd {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = match &database {
            Some(db) => format!(
                "[storage]\nbackend = \"postgres\"\nurl = {:?}\nlease_s = {TEST_LEASE_S}\n",
                db.url
            ),
            None => format!(
                "[storage]\npath = {:?}\n",
                dir.path().join("webhookd.db").display().to_string()
            ),
        };
        let head = format!("[server]\nlisten = \"127.0.0.1:0\"\n{server_keys}\n{storage}");
        let mut service = Webhookd {
            child: None,
            addr: "127.0.0.1:0".parse().unwrap(),
            dir,
            head,
            logs: Arc::new(Mutex::new(Vec::new())),
            database,
        };
        service.rewrite_config(sources_toml);
        service.spawn();
        service
    }

    /// The `[storage]` settings the service runs on.
    pub fn storage(&self) -> StorageConfig {
        let mut storage = StorageConfig::default();
        match &self.database {
            Some(db) => {
                storage.backend = StorageBackend::Postgres;
                storage.url = Some(webhookd::config::StorageUrl::new(db.url.clone()));
                storage.pool_size = 2;
                storage.lease_s = TEST_LEASE_S;
            }
            None => storage.path = self.db_path(),
        }
        storage
    }

    /// Bytes the store takes on disk: SQLite's file and write-ahead log, or the
    /// PostgreSQL database's size.
    pub fn store_bytes(&self) -> u64 {
        match &self.database {
            Some(db) => db.size_bytes(),
            None => {
                let db = self.db_path();
                let wal = db.with_extension("db-wal");
                [db, wal]
                    .iter()
                    .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
                    .sum()
            }
        }
    }

    /// The first column of the first row `sql` gives, read straight from the store, as
    /// text (a test's look at what no API shows).
    pub fn sql_text(&self, sql: &str) -> String {
        match &self.database {
            Some(db) => db.query_text(sql),
            None => {
                let conn = rusqlite::Connection::open(self.db_path()).unwrap();
                conn.query_row(sql, [], |row| {
                    row.get::<_, Option<String>>(0)
                        .map(Option::unwrap_or_default)
                        .or_else(|_| row.get::<_, i64>(0).map(|n| n.to_string()))
                })
                .unwrap()
            }
        }
    }

    /// Replaces the config file's sources (and other sections) for the next start or
    /// SIGHUP; `[server]` and `[storage]` stay.
    pub fn rewrite_config(&self, sources_toml: &str) {
        let path = self.dir.path().join("config.toml");
        std::fs::write(path, format!("{}{sources_toml}", self.head)).unwrap();
    }

    /// Writes `text` as the whole config file.
    pub fn write_raw_config(&self, text: &str) {
        std::fs::write(self.dir.path().join("config.toml"), text).unwrap();
    }

    /// Sends `signal` (TERM, HUP, ...) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill")
            .args(["-s", signal, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGTERM, then waits up to `limit` for the process to exit; its exit code, or
    /// `None` if it was still running (it is then killed).
    pub fn terminate(&mut self, limit: Duration) -> Option<i32> {
        self.signal("TERM");
        let mut child = self.child.take().unwrap();
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Starts the process again (after [`Webhookd::terminate`] or [`Webhookd::kill`]).
    pub fn start_again(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Waits up to `limit` for a log line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> bool {
        wait_until(limit, || self.log_text().contains(needle))
    }

    fn spawn(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_webhookd"))
            .arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .env(
                "RUST_LOG",
                std::env::var("WEBHOOKD_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn webhookd");
        let stderr = child.stderr.take().unwrap();
        let (found, listening) = mpsc::channel();
        let logs = Arc::clone(&self.logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = found.send(addr);
                }
                logs.lock().unwrap().push(line);
            }
        });
        let addr = listening
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("webhookd did not start; log:\n{}", self.log_text()));
        self.addr = addr.parse().unwrap();
        self.child = Some(child);
    }

    /// Kills the process with SIGKILL: no chance to flush or clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGKILL, then start again on the same config and database.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The sum of the samples of metric `name` whose labels include every one of
    /// `labels` (`key="value"`), as `/metrics` shows them now.
    pub fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        self.metric_text()
            .lines()
            .filter(|l| {
                l.split(['{', ' ']).next() == Some(name) && labels.iter().all(|k| l.contains(k))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// `/metrics` as served now.
    pub fn metric_text(&self) -> String {
        ureq::get(&self.url("/metrics"))
            .call()
            .expect("metrics")
            .into_string()
            .unwrap()
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("webhookd.db")
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// The process id of the running service.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Open file descriptors of the process.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count())
    }

    /// Threads of the process now.
    pub fn threads(&self) -> usize {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Peak resident memory of the process so far, in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// POSTs `body` to `path` with `Authorization: Basic <WRITE_KEY>:`.
    pub fn post(&self, path: &str, body: &Value) -> Response {
        post(
            &self.url(path),
            &[
                ("Authorization", &basic_auth(WRITE_KEY)),
                ("Content-Type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
    }

    /// Posts `count` track events with messageIds `{prefix}-{i}`, 100 to a batch; each
    /// batch must be answered 200.
    pub fn send_batches(&self, count: usize, prefix: &str) {
        for chunk in (0..count).collect::<Vec<_>>().chunks(100) {
            let items: Vec<Value> = chunk
                .iter()
                .map(|i| serde_json::json!({"type": "track", "userId": "u", "event": "E", "messageId": format!("{prefix}-{i}")}))
                .collect();
            let response = self.post("/v1/batch", &serde_json::json!({ "batch": items }));
            assert_eq!(response.status, 200, "{response:?}");
        }
    }

    /// The service's store, opened beside it through the store interface.
    pub fn store(&self) -> StoreProbe {
        StoreProbe::beside(&self.storage())
    }

    /// The stored event of `source` with `message_id`.
    pub fn stored(&self, source: &str, message_id: &str) -> Option<StoredEvent> {
        self.store().find(source, message_id)
    }

    /// The stored event's body as JSON; panics if it is not stored.
    pub fn stored_body(&self, message_id: &str) -> Value {
        let event = self
            .stored("web", message_id)
            .unwrap_or_else(|| panic!("{message_id} is not stored"));
        serde_json::from_str(&event.body).unwrap()
    }

    pub fn pending_count(&self, source: &str, destination: &str) -> u64 {
        self.store().pending(source, destination)
    }
}

/// Reads a service's store through the store interface, as the service would.
pub struct StoreProbe {
    store: Arc<dyn Store>,
    runtime: actix_rt::SystemRunner,
}

impl StoreProbe {
    /// The SQLite store at `path` (a service's database elsewhere than its default place).
    pub fn open(path: &std::path::Path) -> StoreProbe {
        StoreProbe {
            store: Arc::new(SqliteStore::open_beside(path).unwrap()),
            runtime: actix_rt::System::new(),
        }
    }

    /// The store `storage` names, opened beside the service that runs on it.
    pub fn beside(storage: &StorageConfig) -> StoreProbe {
        match storage.backend {
            StorageBackend::Sqlite => StoreProbe::open(&storage.path),
            StorageBackend::Postgres => {
                let runtime = actix_rt::System::new();
                let store = runtime
                    .block_on(webhookd::store::open(storage, Box::new(|_, _| {})))
                    .unwrap();
                StoreProbe { store, runtime }
            }
        }
    }

    /// The store itself.
    pub fn inner(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// Runs a store future to its end.
    pub fn block_on<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(future)
    }

    pub fn find(&self, source: &str, message_id: &str) -> Option<StoredEvent> {
        self.runtime
            .block_on(self.store.find_event(source, message_id))
            .unwrap()
    }

    /// The ids among `message_ids` that have no stored event in `source`.
    pub fn missing<'a>(&self, source: &str, message_ids: &'a [String]) -> Vec<&'a String> {
        message_ids
            .iter()
            .filter(|id| self.find(source, id).is_none())
            .collect()
    }

    /// The deliveries of `source`'s event `message_id`, with their attempts.
    pub fn deliveries(&self, source: &str, message_id: &str) -> Vec<DeliveryStatus> {
        self.runtime
            .block_on(self.store.deliveries_of(source, message_id))
            .unwrap()
    }

    /// Waits (at most `limit`) until every delivery of the event is in `state`.
    pub fn wait_for_state(
        &self,
        source: &str,
        message_id: &str,
        state: &str,
        limit: Duration,
    ) -> Vec<DeliveryStatus> {
        let mut last = Vec::new();
        let reached = wait_until(limit, || {
            last = self.deliveries(source, message_id);
            !last.is_empty() && last.iter().all(|d| d.state == state)
        });
        assert!(reached, "{message_id} never became {state}: {last:#?}");
        last
    }

    pub fn pending(&self, source: &str, destination: &str) -> u64 {
        self.runtime
            .block_on(self.store.pending_count(source, destination))
            .unwrap()
    }
}

impl Drop for Webhookd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A status code and the JSON body (Null when the body is not JSON).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Value,
}

impl Response {
    /// The `error` of a JSON error body.
    pub fn error(&self) -> &str {
        assert_eq!(self.body["success"], false, "{self:?}");
        self.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error in {self:?}"))
    }
}

pub fn basic_auth(write_key: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{write_key}:"))
    )
}

pub fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    try_post(url, headers, body).unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

/// POST that reports a transport failure (refused, reset) instead of panicking.
pub fn try_post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Response, String> {
    let mut request = ureq::post(url).timeout(Duration::from_secs(30));
    for (name, value) in headers {
        request = request.set(name, value);
    }
    let response = match request.send_bytes(body) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e.to_string()),
    };
    let status = response.status();
    let text = response.into_string().map_err(|e| e.to_string())?;
    Ok(Response {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    })
}

/// A request with the admin token.
pub fn admin(method: &str, url: &str, body: Option<&Value>) -> Response {
    let request = ureq::request(method, url)
        .timeout(Duration::from_secs(30))
        .set("Authorization", &format!("Bearer {ADMIN_TOKEN}"));
    let result = match body {
        Some(body) => request
            .set("Content-Type", "application/json")
            .send_string(&body.to_string()),
        None => request.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = response.status();
    let text = response.into_string().unwrap_or_default();
    Response {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

pub fn get(url: &str) -> Response {
    let response = match ureq::get(url).timeout(Duration::from_secs(30)).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {url}: {e}"),
    };
    let status = response.status();
    let text = response.into_string().unwrap_or_default();
    Response {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

/// Sends raw bytes on a new connection and returns what came back (until close or 30 s).
pub fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // The server may answer and close before it has read everything we send.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// Polls `check` until it is true or `limit` passes.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

/// Whether Node.js can be run. Tests that compare with real JavaScript need it; under CI
/// it must be there.
pub fn node_available() -> bool {
    let found = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have node on the PATH"
        );
        eprintln!("SKIPPED: node is not installed; the JavaScript comparison did not run");
    }
    found
}

/// Runs `script` with Node, `input` on its standard input; returns its standard output.
pub fn run_node(script: &str, input: &str) -> String {
    let mut child = std::process::Command::new("node")
        .args(["-e", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        output.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Whether the official `standardwebhooks` package accepts each request with `secret`.
pub fn standard_webhooks_verify(secret: &str, requests: &[receiver::Recorded]) -> Vec<bool> {
    let items: Vec<Value> = requests
        .iter()
        .map(|r| {
            serde_json::json!({"secret": secret, "body": String::from_utf8(r.body.clone()).unwrap(),
                "headers": {"webhook-id": r.header("webhook-id"),
                    "webhook-timestamp": r.header("webhook-timestamp"),
                    "webhook-signature": r.header("webhook-signature")}})
        })
        .collect();
    let code = format!(
        "process.chdir({CLIENTS:?}); require({:?})",
        std::path::Path::new(CLIENTS)
            .join("standard-webhooks-verify.js")
            .display()
            .to_string()
    );
    serde_json::from_str(&run_node(&code, &serde_json::to_string(&items).unwrap())).unwrap()
}

pub fn standard_webhooks_installed() -> bool {
    let found = std::path::Path::new(CLIENTS)
        .join("node_modules/standardwebhooks")
        .is_dir()
        && node_available();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must verify with the standardwebhooks package (npm ci in tests/clients)"
        );
        eprintln!("SKIPPED: standardwebhooks is not installed (npm ci in tests/clients)");
    }
    found
}
