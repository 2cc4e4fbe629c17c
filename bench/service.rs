//! A `webhookd` child process for one scenario, with its own temp dir and database.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

pub const WRITE_KEY: &str = "BENCH_WRITE_KEY";
pub const ADMIN_TOKEN: &str = "bench-admin";

pub struct Service {
    child: Child,
    pub addr: String,
    dir: PathBuf,
}

/// Where a scenario's webhookd keeps its data.
#[derive(Clone, Debug)]
pub enum Storage {
    /// A SQLite file in the scenario's temp dir.
    Sqlite,
    /// This PostgreSQL database (shared by the instances of one scenario).
    Postgres { url: String },
}

impl Storage {
    fn toml(&self, dir: &Path) -> String {
        match self {
            Storage::Sqlite => format!(
                "[storage]\npath = {:?}\n",
                dir.join("webhookd.db").display().to_string()
            ),
            Storage::Postgres { url } => {
                format!("[storage]\nbackend = \"postgres\"\nurl = {url:?}\nlease_s = 5\n")
            }
        }
    }
}

impl Service {
    /// Starts webhookd on `storage` with one source `bench` whose destinations are
    /// `(name, url)`, each with `destination_keys` (TOML) besides.
    pub fn start(
        webhookd: &Path,
        storage: &Storage,
        destinations: &[(&str, String)],
        delivery: &str,
        destination_keys: &str,
    ) -> Service {
        Service::start_with(
            webhookd,
            storage,
            destinations,
            delivery,
            destination_keys,
            "",
            "",
        )
    }

    /// As [`Service::start`], with `server_keys` in `[server]` and `tail` (more tables:
    /// sources, `[retention]`) at the end.
    pub fn start_with(
        webhookd: &Path,
        storage: &Storage,
        destinations: &[(&str, String)],
        delivery: &str,
        destination_keys: &str,
        server_keys: &str,
        tail: &str,
    ) -> Service {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "webhookd-bench-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"{ADMIN_TOKEN}\"\n{server_keys}\n\
             {}[delivery]\n{delivery}\n\
             [[sources]]\nname = \"bench\"\nwrite_key = \"{WRITE_KEY}\"\n",
            storage.toml(&dir)
        );
        for (name, url) in destinations {
            config.push_str(&format!(
                "[[sources.destinations]]\nname = \"{name}\"\nurls = [{url:?}]\n{destination_keys}\n"
            ));
        }
        config.push_str(tail);
        let config_path = dir.join("config.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut child = Command::new(webhookd)
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "warn,webhookd::app=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", webhookd.display()));
        let stderr = child.stderr.take().unwrap();
        let (found, listening) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = found.send(rest.split_whitespace().next().unwrap_or("").to_string());
                } else if line.contains("ERROR") {
                    eprintln!("webhookd: {line}");
                }
            }
        });
        let addr = listening
            .recv_timeout(Duration::from_secs(30))
            .expect("webhookd did not start");
        Service { child, addr, dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends `head` (request line and headers, without the blank line) and `body` over
    /// HTTP/1.0, and reads the whole response ("" when there is none within `limit`).
    fn exchange(&self, head: &str, body: &str, limit: Duration) -> String {
        use std::io::{Read, Write};
        let mut text = String::new();
        if let Ok(mut stream) = std::net::TcpStream::connect(&self.addr) {
            let _ = stream.set_read_timeout(Some(limit));
            let _ = write!(stream, "{head}\r\nHost: {}\r\n\r\n{body}", self.addr);
            let _ = stream.read_to_string(&mut text);
        }
        text
    }

    /// The sum of metric `name`'s samples whose labels include `label` (`k="v"`; "" for
    /// any), from `/metrics`.
    pub fn metric(&self, name: &str, label: &str) -> f64 {
        let text = self.exchange("GET /metrics HTTP/1.0", "", Duration::from_secs(30));
        text.lines()
            .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// POSTs `body` (JSON) to the admin API at `path`; the response's status, 0 when none.
    pub fn post_admin(&self, path: &str, body: &str) -> u16 {
        let head = format!(
            "POST {path} HTTP/1.0\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}",
            body.len()
        );
        let text = self.exchange(&head, body, Duration::from_secs(60));
        text.split_whitespace()
            .nth(1)
            .and_then(|status| status.parse().ok())
            .unwrap_or(0)
    }

    /// CPU time the process has used so far (user + system), in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        static TICKS_PER_S: std::sync::LazyLock<f64> = std::sync::LazyLock::new(|| {
            std::process::Command::new("getconf")
                .arg("CLK_TCK")
                .output()
                .ok()
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(100.0)
        });
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces): utime and stime are the
        // 14th and 15th of the line, the 12th and 13th after `) `.
        let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
        let fields: Vec<f64> = after
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0.0))
            .collect();
        let ticks = fields.get(11).copied().unwrap_or(0.0) + fields.get(12).copied().unwrap_or(0.0);
        ticks / *TICKS_PER_S
    }

    /// Peak resident memory so far, in MiB (Linux's VmHWM).
    pub fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A PostgreSQL database of a scenario's own, on the server `admin_url` names; dropped
/// (with its connections) afterwards.
pub struct Database {
    admin_url: String,
    name: String,
    pub url: String,
}

impl Database {
    pub fn create(admin_url: &str) -> Database {
        static CREATED: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "webhookd_bench_{}_{}",
            std::process::id(),
            CREATED.fetch_add(1, Ordering::Relaxed)
        );
        admin(
            admin_url,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
        admin(admin_url, &format!("CREATE DATABASE {name}"));
        let url = match admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => admin_url.to_string(),
        };
        Database {
            admin_url: admin_url.to_string(),
            name,
            url,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        admin(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// Runs one statement on the server `url` names.
fn admin(url: &str, sql: &str) {
    let url = url.to_string();
    let statement = sql.to_string();
    let outcome = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let (client, connection) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client.batch_execute(&statement).await
            })
    })
    .join()
    .expect("admin thread");
    if let Err(e) = outcome {
        panic!("PostgreSQL: {sql}: {e}");
    }
}
