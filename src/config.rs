//! The configuration file: documented structs, loading and validation.
//!
//! Loading never stops at the first problem: every unknown key, wrong type and invalid
//! value is collected with its key path (`sources[0].destinations[1].urls[2]`) so that
//! one run of `webhookd --check-config` shows everything that needs fixing.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::Uri;
use serde::de::DeserializeOwned;

use crate::secret::Secret;

/// Segment's webhooks take at most five URLs per destination.
pub const MAX_URLS_PER_DESTINATION: usize = 5;

/// Headers webhookd sets itself; a configured header may not replace them.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "x-signature",
    "transfer-encoding",
    "connection",
];

/// The whole configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[server]`: the HTTP listener and ingest limits.
    pub server: ServerConfig,
    /// `[storage]`: where the durable store lives.
    pub storage: StorageConfig,
    /// `[delivery]`: how delivery actors send and retry.
    pub delivery: DeliveryConfig,
    /// `[[sources]]`: each source is one write key and the webhooks its events go to.
    pub sources: Vec<SourceConfig>,
}

/// `[server]`
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `listen`: address and port of the HTTP API. Default `127.0.0.1:8080`; port 0 picks a
    /// free port (the chosen address is logged).
    pub listen: SocketAddr,
    /// `admin_token`: Bearer token for `/admin/*`. Absent or empty: the admin API answers 404.
    pub admin_token: Option<Secret>,
    /// `max_message_bytes`: largest single event, after gzip decoding. Default 32768 (Segment: 32 KB).
    pub max_message_bytes: usize,
    /// `max_batch_bytes`: largest `/v1/batch` body, after gzip decoding. Default 512000 (Segment: 500 KB).
    pub max_batch_bytes: usize,
    /// `dedupe_window_s`: a `(source, messageId)` seen again within this many seconds is
    /// answered 200 and not stored or delivered again. Kept in the store, so it holds across
    /// restarts. Default 86400 (one day).
    pub dedupe_window_s: u64,
}

/// `[storage]`
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// `backend`: `"sqlite"` (one file, one instance; the default) or `"postgres"` (any
    /// number of instances sharing one database).
    pub backend: StorageBackend,
    /// `path`: the SQLite database file; created with its folder if missing.
    /// Default `./data/webhookd.db`. SQLite only.
    pub path: PathBuf,
    /// `max_size_mb`: cap on the database file. At the cap, ingest answers 503 (nothing is
    /// acknowledged that was not stored) until space returns; 0 or absent: no cap, the
    /// disk is the limit. SQLite only.
    pub max_size_mb: Option<u64>,
    /// `url`: the PostgreSQL database, `postgres://user:password@host:port/database`;
    /// the environment variable `WEBHOOKD_STORAGE_URL` overrides it. Its password never
    /// appears in logs or errors. PostgreSQL only.
    pub url: Option<StorageUrl>,
    /// `pool_size`: connections this instance keeps to PostgreSQL. Default 16.
    pub pool_size: usize,
    /// `lease_s`: how long the destinations an instance drives stay its own after its last
    /// heartbeat; a dead instance's destinations are taken over within this. Default 30.
    pub lease_s: u64,
}

/// Which store `[storage]` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageBackend {
    Sqlite,
    Postgres,
}

/// A database URL whose password never prints (`Debug` and `Display` show `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct StorageUrl(Secret);

impl StorageUrl {
    pub fn new(url: impl Into<String>) -> StorageUrl {
        StorageUrl(Secret::new(url))
    }

    /// The URL itself, to connect with.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_password(self.0.expose())
    }
}

impl fmt::Debug for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorageUrl({})", self.redacted())
    }
}

impl fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `scheme://user:secret@host/db` → `scheme://user:***@host/db`; `password=secret` →
/// `password=***` (the key=value form).
pub fn redact_password(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if let Some((userinfo, host)) = authority.rsplit_once('@') {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let shown = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_string()
            };
            let tail = redact_query_password(tail);
            return format!("{scheme}://{shown}@{host}{tail}");
        }
        return format!("{scheme}://{authority}{}", redact_query_password(tail));
    }
    url.split_whitespace()
        .map(|part| match part.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn redact_query_password(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_string();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// `[delivery]`: the delivery actors' settings.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// `timeout_ms`: one request's budget, connect to response headers. Default 5000 (Segment: 5 s).
    pub timeout_ms: u64,
    /// `retry_window_s`: retries go on this long after a delivery's first attempt, then the
    /// delivery is dead-lettered. Default 14400 (Segment: 4 h).
    pub retry_window_s: u64,
    /// `backoff_initial_ms`: the first retry delay; it doubles each attempt, with full jitter.
    /// Default 1000.
    pub backoff_initial_ms: u64,
    /// `backoff_max_ms`: cap on one retry delay (also caps a receiver's `Retry-After`).
    /// Default 600000 (10 min).
    pub backoff_max_ms: u64,
    /// `max_in_flight`: concurrent requests per destination. Default 64.
    pub max_in_flight: usize,
    /// `extra_root_certs`: a PEM file of CA certificates trusted in addition to the standard
    /// web roots (for receivers behind a private CA). Default: none.
    pub extra_root_certs: Option<PathBuf>,
    /// `idle_actor_stop_s`: a destination's delivery actor with nothing pending for this
    /// long stops, and is started again when work comes. Default 300.
    pub idle_actor_stop_s: u64,
}

/// One `[[sources]]` entry.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// `name`: unique among sources; used in logs, metrics and the admin API.
    pub name: String,
    /// `write_key`: what clients authenticate with; unique among sources. Never logged.
    pub write_key: Secret,
    /// `[[sources.destinations]]`: where this source's events are delivered. May be empty:
    /// events are then acknowledged and nothing is sent.
    pub destinations: Vec<DestinationConfig>,
}

/// One `[[sources.destinations]]` entry: one Segment Webhooks destination.
#[derive(Debug, Clone)]
pub struct DestinationConfig {
    /// `name`: unique within its source.
    pub name: String,
    /// `urls`: 1 to 5 webhook URLs (http or https). An attempt posts to all of them and
    /// succeeds if any one answers 2xx.
    pub urls: Vec<UrlConfig>,
    /// `headers`: added to every request of this destination.
    pub headers: Vec<(String, String)>,
    /// `shared_secret`: when set, each request carries `X-Signature`, the hex HMAC-SHA1 of
    /// the body under this secret. Never logged.
    pub shared_secret: Option<Secret>,
    /// `enabled`: a disabled destination gets no deliveries for new events. Default true.
    pub enabled: bool,
    /// `integration_name`: this destination's name in an event's `integrations` object,
    /// as Segment's: an event with `"<name>": false`, or with `"All": false` and no
    /// `"<name>": true` (or options object), is not delivered here. Case-sensitive.
    /// Default `"Webhooks"`.
    pub integration_name: String,
}

/// Segment's name for its Webhooks destination in `integrations`.
pub const DEFAULT_INTEGRATION_NAME: &str = "Webhooks";

/// One entry of `urls`: a bare string, or `{ url = "...", headers = { ... } }`.
#[derive(Debug, Clone)]
pub struct UrlConfig {
    /// The webhook URL.
    pub url: String,
    /// Headers for this URL only, added after the destination's own.
    pub headers: Vec<(String, String)>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_token: None,
            max_message_bytes: 32_768,
            max_batch_bytes: 512_000,
            dedupe_window_s: 86_400,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: StorageBackend::Sqlite,
            path: PathBuf::from("./data/webhookd.db"),
            max_size_mb: None,
            url: None,
            pool_size: 16,
            lease_s: 30,
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            timeout_ms: 5_000,
            retry_window_s: 14_400,
            backoff_initial_ms: 1_000,
            backoff_max_ms: 600_000,
            max_in_flight: 64,
            extra_root_certs: None,
            idle_actor_stop_s: 300,
        }
    }
}

/// The configuration in force, shared by the API and the actors and replaced whole when
/// it is reloaded (SIGHUP). Readers take a snapshot and keep it for one unit of work.
#[derive(Clone)]
pub struct SharedConfig(Arc<RwLock<Arc<Config>>>);

impl SharedConfig {
    pub fn new(config: Config) -> SharedConfig {
        SharedConfig(Arc::new(RwLock::new(Arc::new(config))))
    }

    /// The configuration in force now.
    pub fn current(&self) -> Arc<Config> {
        Arc::clone(
            &self
                .0
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// Puts `config` in force.
    pub fn replace(&self, config: Arc<Config>) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = config;
    }
}

/// One thing wrong with a configuration, at a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Where: `server.listen`, `sources[1].destinations[0].urls`.
    pub path: String,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", list_problems(.0))]
    Invalid(Vec<ConfigProblem>),
}

fn list_problems(problems: &[ConfigProblem]) -> String {
    let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    format!(
        "{} problem(s) in the configuration:\n  {}",
        problems.len(),
        lines.join("\n  ")
    )
}

impl SourceConfig {
    /// The destinations that take new events.
    pub fn enabled_destinations(&self) -> impl Iterator<Item = &DestinationConfig> {
        self.destinations.iter().filter(|d| d.enabled)
    }
}

impl Config {
    /// Reads and validates the file at `path`; `WEBHOOKD_STORAGE_URL`, when set,
    /// replaces `storage.url`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let url = std::env::var("WEBHOOKD_STORAGE_URL")
            .ok()
            .filter(|u| !u.is_empty());
        Config::from_toml_with_url(&text, url)
    }

    /// Parses and validates configuration text, reporting every problem found.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_with_url(text, None)
    }

    /// As [`Config::from_toml`], with `storage.url` replaced by `url` when given.
    fn from_toml_with_url(text: &str, url: Option<String>) -> Result<Config, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            ConfigError::Invalid(vec![ConfigProblem {
                path: "(file)".into(),
                message: format!("not valid TOML: {}", e.message()),
            }])
        })?;
        let mut reader = Reader::default();
        let mut config = reader.config(table);
        if let Some(url) = url {
            config.storage.url = Some(StorageUrl::new(url));
        }
        reader.check_storage(&config);
        if reader.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(reader.problems))
        }
    }

    /// A short hash of what all instances on one store should agree on: sources,
    /// destinations (secrets included) and `[delivery]`. Shown, never reversible.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        hash.update(format!("{:?}", self.delivery));
        for source in &self.sources {
            hash.update(format!(
                "\u{1}{}\u{1}{}",
                source.name,
                source.write_key.expose()
            ));
            for d in &source.destinations {
                hash.update(format!("\u{2}{d:?}"));
                if let Some(secret) = &d.shared_secret {
                    hash.update(secret.expose());
                }
            }
        }
        hex::encode(&hash.finalize()[..8])
    }

    /// The source whose write key is `key`, compared in constant time against every source.
    pub fn source_by_write_key(&self, key: &str) -> Option<&SourceConfig> {
        let mut found = None;
        for source in &self.sources {
            // Compare against all sources so timing does not tell which one matched.
            if source.write_key.matches(key) && found.is_none() {
                found = Some(source);
            }
        }
        found
    }
}

/// Walks the parsed TOML, taking each known key out of its table so that whatever is left
/// over is an unknown key; every problem is collected rather than returned.
#[derive(Default)]
struct Reader {
    problems: Vec<ConfigProblem>,
}

impl Reader {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(ConfigProblem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Takes `key` out of `table` and converts it to `T`; a wrong type is a problem.
    fn take<T: DeserializeOwned>(
        &mut self,
        table: &mut toml::Table,
        path: &str,
        key: &str,
    ) -> Option<T> {
        let value = table.remove(key)?;
        match value.try_into::<T>() {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(join(path, key), e.message().to_string());
                None
            }
        }
    }

    /// Takes a sub-table; absent gives an empty one.
    fn take_table(&mut self, table: &mut toml::Table, path: &str, key: &str) -> toml::Table {
        match table.remove(key) {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => t,
            Some(other) => {
                self.problem(
                    join(path, key),
                    format!("expected a table, found {}", other.type_str()),
                );
                toml::Table::new()
            }
        }
    }

    /// Takes an array of tables (`[[key]]`); absent gives an empty list.
    fn take_tables(&mut self, table: &mut toml::Table, path: &str, key: &str) -> Vec<toml::Table> {
        let Some(value) = table.remove(key) else {
            return Vec::new();
        };
        let toml::Value::Array(items) = value else {
            self.problem(
                join(path, key),
                format!("expected an array of tables, found {}", value.type_str()),
            );
            return Vec::new();
        };
        let mut tables = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            match item {
                toml::Value::Table(t) => tables.push(t),
                other => self.problem(
                    format!("{}[{i}]", join(path, key)),
                    format!("expected a table, found {}", other.type_str()),
                ),
            }
        }
        tables
    }

    /// Whatever keys are still in `table` were not recognised.
    fn reject_unknown(&mut self, table: toml::Table, path: &str) {
        for key in table.keys() {
            self.problem(join(path, key), "unknown key");
        }
    }

    fn config(&mut self, mut root: toml::Table) -> Config {
        let server_table = self.take_table(&mut root, "", "server");
        let server = self.server(server_table);
        let storage_table = self.take_table(&mut root, "", "storage");
        let storage = self.storage(storage_table);
        let delivery_table = self.take_table(&mut root, "", "delivery");
        let delivery = self.delivery(delivery_table);
        let source_tables = self.take_tables(&mut root, "", "sources");
        let sources = source_tables
            .into_iter()
            .enumerate()
            .map(|(i, t)| self.source(t, &format!("sources[{i}]")))
            .collect();
        self.reject_unknown(root, "");
        let config = Config {
            server,
            storage,
            delivery,
            sources,
        };
        self.check_uniqueness(&config);
        config
    }

    fn server(&mut self, mut t: toml::Table) -> ServerConfig {
        let p = "server";
        let mut server = ServerConfig::default();
        if let Some(listen) = self.take::<String>(&mut t, p, "listen") {
            match SocketAddr::from_str(&listen) {
                Ok(addr) => server.listen = addr,
                Err(_) => self.problem(
                    "server.listen",
                    format!("{listen:?} is not an address like 127.0.0.1:8080"),
                ),
            }
        }
        if let Some(token) = self.take_secret(&mut t, p, "admin_token") {
            server.admin_token = (!token.is_empty()).then(|| Secret::new(token));
        }
        if let Some(n) = self.take(&mut t, p, "max_message_bytes") {
            server.max_message_bytes = n;
        }
        if let Some(n) = self.take(&mut t, p, "max_batch_bytes") {
            server.max_batch_bytes = n;
        }
        if let Some(n) = self.take(&mut t, p, "dedupe_window_s") {
            server.dedupe_window_s = n;
        }
        if server.max_message_bytes < 1024 {
            self.problem("server.max_message_bytes", "must be at least 1024");
        }
        if server.max_batch_bytes < server.max_message_bytes {
            self.problem(
                "server.max_batch_bytes",
                "must be at least server.max_message_bytes",
            );
        }
        self.reject_unknown(t, p);
        server
    }

    fn storage(&mut self, mut t: toml::Table) -> StorageConfig {
        let mut storage = StorageConfig::default();
        if let Some(backend) = self.take::<String>(&mut t, "storage", "backend") {
            match backend.as_str() {
                "sqlite" => storage.backend = StorageBackend::Sqlite,
                "postgres" => storage.backend = StorageBackend::Postgres,
                _ => self.problem(
                    "storage.backend",
                    format!("{backend:?} is not \"sqlite\" or \"postgres\""),
                ),
            }
        }
        if let Some(url) = self.take_secret(&mut t, "storage", "url") {
            storage.url = (!url.is_empty()).then(|| StorageUrl::new(url));
        }
        if let Some(n) = self.take::<usize>(&mut t, "storage", "pool_size") {
            if (1..=1000).contains(&n) {
                storage.pool_size = n;
            } else {
                self.problem("storage.pool_size", "must be 1 to 1000");
            }
        }
        if let Some(n) = self.take::<u64>(&mut t, "storage", "lease_s") {
            if (1..=3600).contains(&n) {
                storage.lease_s = n;
            } else {
                self.problem("storage.lease_s", "must be 1 to 3600");
            }
        }
        if let Some(path) = self.take::<String>(&mut t, "storage", "path") {
            if path.is_empty() {
                self.problem("storage.path", "must not be empty");
            } else {
                storage.path = PathBuf::from(path);
            }
        }
        if let Some(mb) = self.take::<u64>(&mut t, "storage", "max_size_mb") {
            storage.max_size_mb = (mb > 0).then_some(mb);
        }
        self.reject_unknown(t, "storage");
        storage
    }

    fn delivery(&mut self, mut t: toml::Table) -> DeliveryConfig {
        let p = "delivery";
        let mut d = DeliveryConfig::default();
        if let Some(n) = self.take(&mut t, p, "timeout_ms") {
            d.timeout_ms = n;
        }
        if let Some(n) = self.take(&mut t, p, "retry_window_s") {
            d.retry_window_s = n;
        }
        if let Some(n) = self.take(&mut t, p, "backoff_initial_ms") {
            d.backoff_initial_ms = n;
        }
        if let Some(n) = self.take(&mut t, p, "backoff_max_ms") {
            d.backoff_max_ms = n;
        }
        if let Some(n) = self.take(&mut t, p, "max_in_flight") {
            d.max_in_flight = n;
        }
        if let Some(n) = self.take(&mut t, p, "idle_actor_stop_s") {
            d.idle_actor_stop_s = n;
        }
        if let Some(path) = self.take::<String>(&mut t, p, "extra_root_certs") {
            if !path.is_empty() {
                if !Path::new(&path).is_file() {
                    self.problem("delivery.extra_root_certs", format!("no file at {path:?}"));
                }
                d.extra_root_certs = Some(PathBuf::from(path));
            }
        }
        if d.timeout_ms == 0 {
            self.problem("delivery.timeout_ms", "must be greater than 0");
        }
        if d.backoff_initial_ms == 0 {
            self.problem("delivery.backoff_initial_ms", "must be greater than 0");
        }
        if d.backoff_max_ms < d.backoff_initial_ms {
            self.problem(
                "delivery.backoff_max_ms",
                "must be at least delivery.backoff_initial_ms",
            );
        }
        if d.max_in_flight == 0 {
            self.problem("delivery.max_in_flight", "must be at least 1");
        }
        if d.idle_actor_stop_s == 0 {
            self.problem("delivery.idle_actor_stop_s", "must be at least 1");
        }
        self.reject_unknown(t, p);
        d
    }

    fn source(&mut self, mut t: toml::Table, p: &str) -> SourceConfig {
        let name = self.required_string(&mut t, p, "name");
        let write_key_given = t.contains_key("write_key");
        let write_key = match self.take_secret(&mut t, p, "write_key") {
            Some(key) if !key.is_empty() => key,
            Some(_) => {
                self.problem(join(p, "write_key"), "must not be empty");
                String::new()
            }
            None if write_key_given => String::new(),
            None => {
                self.problem(join(p, "write_key"), "missing");
                String::new()
            }
        };
        let destination_tables = self.take_tables(&mut t, p, "destinations");
        let destinations = destination_tables
            .into_iter()
            .enumerate()
            .map(|(i, d)| self.destination(d, &format!("{p}.destinations[{i}]")))
            .collect();
        self.reject_unknown(t, p);
        SourceConfig {
            name,
            write_key: Secret::new(write_key),
            destinations,
        }
    }

    fn destination(&mut self, mut t: toml::Table, p: &str) -> DestinationConfig {
        let name = self.required_string(&mut t, p, "name");
        let urls = self.urls(&mut t, p);
        let headers = self.headers(&mut t, p, "headers");
        let shared_secret = self
            .take_secret(&mut t, p, "shared_secret")
            .filter(|s| !s.is_empty())
            .map(Secret::new);
        let enabled = self.take(&mut t, p, "enabled").unwrap_or(true);
        let integration_name = match self.take::<String>(&mut t, p, "integration_name") {
            Some(name) if name.is_empty() => {
                self.problem(join(p, "integration_name"), "must not be empty");
                name
            }
            Some(name) => name,
            None => DEFAULT_INTEGRATION_NAME.to_string(),
        };
        self.reject_unknown(t, p);
        DestinationConfig {
            name,
            urls,
            headers,
            shared_secret,
            enabled,
            integration_name,
        }
    }

    fn urls(&mut self, t: &mut toml::Table, p: &str) -> Vec<UrlConfig> {
        let path = join(p, "urls");
        let items = match t.remove("urls") {
            None => {
                self.problem(&path, "missing (1 to 5 URLs are needed)");
                return Vec::new();
            }
            Some(toml::Value::Array(items)) => items,
            Some(other) => {
                self.problem(
                    &path,
                    format!("expected an array, found {}", other.type_str()),
                );
                return Vec::new();
            }
        };
        if items.is_empty() || items.len() > MAX_URLS_PER_DESTINATION {
            self.problem(
                &path,
                format!("has {} URLs; 1 to 5 are allowed", items.len()),
            );
        }
        let mut urls = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            let url = match item {
                toml::Value::String(url) => UrlConfig {
                    url,
                    headers: Vec::new(),
                },
                toml::Value::Table(mut entry) => {
                    let url = self.required_string(&mut entry, &item_path, "url");
                    let headers = self.headers(&mut entry, &item_path, "headers");
                    self.reject_unknown(entry, &item_path);
                    UrlConfig { url, headers }
                }
                other => {
                    self.problem(
                        &item_path,
                        format!(
                            "expected a URL string or a table, found {}",
                            other.type_str()
                        ),
                    );
                    continue;
                }
            };
            if let Err(why) = check_url(&url.url) {
                self.problem(&item_path, why);
            }
            urls.push(url);
        }
        urls
    }

    fn headers(&mut self, t: &mut toml::Table, p: &str, key: &str) -> Vec<(String, String)> {
        let Some(map) = self.take::<toml::Table>(t, p, key) else {
            return Vec::new();
        };
        let mut headers = Vec::new();
        for (name, value) in map {
            let path = format!("{}.{name:?}", join(p, key));
            let toml::Value::String(value) = value else {
                self.problem(path, "header values must be strings");
                continue;
            };
            if HeaderName::from_str(&name).is_err() {
                self.problem(path, "not a valid HTTP header name");
                continue;
            }
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                self.problem(path, "webhookd sets this header itself");
                continue;
            }
            if HeaderValue::from_str(&value).is_err() {
                self.problem(path, "not a valid HTTP header value");
                continue;
            }
            headers.push((name, value));
        }
        headers
    }

    fn required_string(&mut self, t: &mut toml::Table, p: &str, key: &str) -> String {
        let given = t.contains_key(key);
        match self.take::<String>(t, p, key) {
            Some(s) if !s.is_empty() => s,
            Some(_) => {
                self.problem(join(p, key), "must not be empty");
                String::new()
            }
            None if given => String::new(),
            None => {
                self.problem(join(p, key), "missing");
                String::new()
            }
        }
    }

    /// Takes a secret string: a wrong type is reported without the value.
    fn take_secret(&mut self, table: &mut toml::Table, path: &str, key: &str) -> Option<String> {
        match table.remove(key)? {
            toml::Value::String(s) => Some(s),
            other => {
                self.problem(
                    join(path, key),
                    format!("must be a string, not {}", other.type_str()),
                );
                None
            }
        }
    }

    fn check_storage(&mut self, config: &Config) {
        if config.storage.backend == StorageBackend::Postgres && config.storage.url.is_none() {
            self.problem(
                "storage.url",
                "is required with backend = \"postgres\" (or set WEBHOOKD_STORAGE_URL)",
            );
        }
    }

    fn check_uniqueness(&mut self, config: &Config) {
        let mut names = HashSet::new();
        let mut keys = HashSet::new();
        for (i, source) in config.sources.iter().enumerate() {
            if !source.name.is_empty() && !names.insert(source.name.as_str()) {
                self.problem(
                    format!("sources[{i}].name"),
                    format!("{:?} is used by an earlier source", source.name),
                );
            }
            let key = source.write_key.expose();
            if !key.is_empty() && !keys.insert(key) {
                // The key itself is a secret: say only that it repeats.
                self.problem(
                    format!("sources[{i}].write_key"),
                    "is the write key of an earlier source",
                );
            }
            let mut destination_names = HashSet::new();
            for (j, destination) in source.destinations.iter().enumerate() {
                if !destination.name.is_empty()
                    && !destination_names.insert(destination.name.as_str())
                {
                    self.problem(
                        format!("sources[{i}].destinations[{j}].name"),
                        format!(
                            "{:?} is used by an earlier destination of this source",
                            destination.name
                        ),
                    );
                }
            }
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let uri = Uri::from_str(url).map_err(|_| format!("{url:?} is not a valid URL"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("{url:?} must start with http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match Config::from_toml(text) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid(p)) => p.into_iter().map(|p| p.to_string()).collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert!(c.server.admin_token.is_none());
        assert_eq!(c.server.max_message_bytes, 32_768);
        assert_eq!(c.server.max_batch_bytes, 512_000);
        assert_eq!(c.delivery.timeout_ms, 5_000);
        assert_eq!(c.delivery.retry_window_s, 14_400);
        assert_eq!(c.storage.path, PathBuf::from("./data/webhookd.db"));
    }

    #[test]
    fn reports_every_problem_with_its_key_path() {
        let text = r#"
            bogus = 1
            [server]
            listen = "nowhere"
            colour = "blue"
            [delivery]
            timeout_ms = "soon"
            [[sources]]
            name = "web"
            write_key = "k"
              [[sources.destinations]]
              name = "d"
              urls = ["ftp://x", "http://ok/", { url = "http://a/", extra = 1 }]
              headers = { "Content-Type" = "text/plain" }
            [[sources]]
            name = "web"
            write_key = "k"
        "#;
        let found = problems(text);
        let expected = [
            "server.listen: \"nowhere\" is not an address like 127.0.0.1:8080",
            "server.colour: unknown key",
            "delivery.timeout_ms: invalid type: string \"soon\", expected u64",
            "sources[0].destinations[0].urls[0]: \"ftp://x\" must start with http:// or https://",
            "sources[0].destinations[0].urls[2].extra: unknown key",
            "sources[0].destinations[0].headers.\"Content-Type\": webhookd sets this header itself",
            "sources[1].name: \"web\" is used by an earlier source",
            "sources[1].write_key: is the write key of an earlier source",
            "bogus: unknown key",
        ];
        for e in expected {
            assert!(found.iter().any(|f| f == e), "missing {e:?} in {found:#?}");
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");
    }

    #[test]
    fn url_count_is_limited_to_five() {
        let six = r#"
            [[sources]]
            name = "s"
            write_key = "k"
              [[sources.destinations]]
              name = "d"
              urls = ["http://a/1", "http://a/2", "http://a/3", "http://a/4", "http://a/5", "http://a/6"]
        "#;
        assert_eq!(
            problems(six),
            ["sources[0].destinations[0].urls: has 6 URLs; 1 to 5 are allowed"]
        );
    }

    #[test]
    fn write_keys_never_appear_in_problems() {
        let text = r#"
            [[sources]]
            name = "a"
            write_key = "SUPER-SECRET-KEY"
            [[sources]]
            name = "b"
            write_key = "SUPER-SECRET-KEY"
        "#;
        let found = problems(text);
        assert_eq!(found.len(), 1);
        assert!(!found[0].contains("SUPER-SECRET-KEY"));
    }

    #[test]
    fn per_url_headers_and_empty_admin_token() {
        let text = r#"
            [server]
            admin_token = ""
            [[sources]]
            name = "s"
            write_key = "k"
              [[sources.destinations]]
              name = "d"
              urls = [{ url = "https://example.com/h", headers = { "X-A" = "1" } }]
              enabled = false
        "#;
        let c = Config::from_toml(text).unwrap();
        assert!(c.server.admin_token.is_none());
        let d = &c.sources[0].destinations[0];
        assert!(!d.enabled);
        assert_eq!(
            d.urls[0].headers,
            vec![("X-A".to_string(), "1".to_string())]
        );
    }

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../config.example.toml");
        Config::from_toml(text).unwrap();
    }
}
