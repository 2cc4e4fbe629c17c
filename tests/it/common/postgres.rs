//! PostgreSQL for the tests: which backend the suite runs on, and a database of its own
//! for each test (created on the local server, dropped afterwards).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use tokio_postgres::NoTls;

/// The server tests create their databases on (trust auth, as the machine is set up);
/// `WEBHOOKD_TEST_PG` overrides it.
fn admin_url() -> String {
    std::env::var("WEBHOOKD_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Whether the integration suite runs its services on PostgreSQL
/// (`WEBHOOKD_TEST_BACKEND=postgres`) rather than SQLite.
pub fn suite_on_postgres() -> bool {
    std::env::var("WEBHOOKD_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// Whether a PostgreSQL server answers. Tests that need one skip (and say so) when none
/// does, except under CI (`CI` set), where they must run.
pub fn postgres_available() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    let found = *FOUND.get_or_init(|| run(async { connect().await.is_ok() }));
    if !found {
        assert!(
            std::env::var_os("CI").is_none() && !suite_on_postgres(),
            "PostgreSQL must be reachable at {} (CI runs the PostgreSQL tests)",
            admin_url()
        );
        eprintln!(
            "SKIPPED: no PostgreSQL at {}; the PostgreSQL tests did not run",
            admin_url()
        );
    }
    found
}

/// Runs `future` on a small runtime of its own.
pub fn run<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

async fn connect_to(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn connect() -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    connect_to(&admin_url()).await
}

/// A table held locked by [`TestDatabase::lock_table`].
pub struct TableLock {
    client: tokio_postgres::Client,
    watcher: tokio_postgres::Client,
}

impl TableLock {
    /// Waits until a delivery claim waits for a lock (bounded).
    pub async fn until_a_claim_waits(&self) {
        let started = std::time::Instant::now();
        loop {
            let waiting: i64 = self
                .watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND wait_event_type = 'Lock'
                       AND query LIKE '%SET claimed_by = $7%'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if waiting > 0 {
                return;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "no claim waited for the lock"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Commits: what waited goes on. Answers the connection, for more.
    pub async fn release(self) -> tokio_postgres::Client {
        self.client.batch_execute("COMMIT").await.expect("unlock");
        self.client
    }
}

/// A database of the test's own, dropped (with its connections) when this is dropped.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub fn create() -> TestDatabase {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "webhookd_test_{}_{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        run(async {
            let client = connect().await.expect("PostgreSQL for the tests");
            // One statement each: neither may run inside a transaction block.
            client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .expect("drop a leftover test database");
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create the test database");
        });
        let base = admin_url();
        let url = match base.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => base,
        };
        TestDatabase { name, url }
    }

    /// A connection to the database, served on the calling runtime.
    pub async fn client(&self) -> tokio_postgres::Client {
        connect_to(&self.url).await.expect("the test database")
    }

    /// Locks `table` (ACCESS EXCLUSIVE) in an open transaction of a connection of its own,
    /// holding the statements that need it until released.
    pub async fn lock_table(&self, table: &str) -> TableLock {
        let client = self.client().await;
        client
            .batch_execute(&format!(
                "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
            ))
            .await
            .expect("lock the table");
        TableLock {
            client,
            watcher: self.client().await,
        }
    }

    /// The first column of the first row of `sql`, as text (NULL as "").
    pub fn query_text(&self, sql: &str) -> String {
        run(async {
            let client = connect_to(&self.url).await.expect("the test database");
            let row = client.query_one(sql, &[]).await.expect(sql);
            row.try_get::<_, Option<String>>(0)
                .map(Option::unwrap_or_default)
                .or_else(|_| row.try_get::<_, i64>(0).map(|n| n.to_string()))
                .expect("a text or bigint column")
        })
    }

    /// Bytes the database takes on disk.
    pub fn size_bytes(&self) -> u64 {
        self.query_text("SELECT pg_database_size(current_database())")
            .parse()
            .unwrap()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::panic::catch_unwind(|| {
            run(async move {
                if let Ok(client) = connect().await {
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            })
        });
    }
}

/// The local PostgreSQL cluster, to stop and start (an outage test). `None`, with a
/// note, where there is no local cluster to control (and not under CI).
pub fn server_control() -> Option<ServerControl> {
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .max()
        });
    match version {
        Some(version) => Some(ServerControl { version }),
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must have a local PostgreSQL cluster to stop and start"
            );
            eprintln!("SKIPPED: no local PostgreSQL cluster to stop and start");
            None
        }
    }
}

/// Stops and starts the local cluster; started again if dropped while stopped.
pub struct ServerControl {
    version: String,
}

impl ServerControl {
    fn control(&self, action: &str) {
        let status = std::process::Command::new("pg_ctlcluster")
            .args([
                "--skip-systemctl-redirect",
                "-m",
                "fast",
                &self.version,
                "main",
                action,
            ])
            .status()
            .expect("pg_ctlcluster");
        assert!(status.success(), "pg_ctlcluster {action}");
    }

    pub fn stop(&self) {
        self.control("stop");
    }

    pub fn start(&self) {
        self.control("start");
    }
}

impl Drop for ServerControl {
    fn drop(&mut self) {
        // Whatever happened, leave the server running for whoever comes next.
        let _ = std::process::Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &self.version, "main", "start"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}
