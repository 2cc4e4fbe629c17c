//! The configuration file: documented structs, loading and validation.
//!
//! Each key is declared once: a field with its documentation and its default (serde,
//! with `serde_inline_default`). Loading is two passes. Reading (`load.rs`) collects
//! every unknown key and every value of the wrong type with its key path
//! (`sources[0].destinations[1].urls[2]`) instead of stopping at the first; validation
//! (`check.rs`) then reports every value out of range, every duplicate and every bad
//! trigger or mapping, and resolves what later code uses (parsed triggers, mappings).
//! One run of `webhookd --check-config` shows everything that needs fixing.

mod check;
mod de;
mod load;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::Deserialize;
use serde_inline_default::serde_inline_default;

use crate::secret::Secret;
use crate::segment::fql::Fql;
use crate::segment::mapping::Mapping;

pub use de::{redact_password, Headers, StorageUrl};

/// Segment's webhooks take at most five URLs per destination.
pub const MAX_URLS_PER_DESTINATION: usize = 5;
/// Segment's Webhooks (Actions) batch at most this many events per request.
pub const MAX_BATCH_SIZE: usize = 4_000;
/// Segment's name for its Webhooks destination in `integrations`.
pub const DEFAULT_INTEGRATION_NAME: &str = "Webhooks";

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// `[server]`: the HTTP listener and ingest limits.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[storage]`: where the durable store lives.
    #[serde(default)]
    pub storage: StorageConfig,
    /// `[delivery]`: how delivery actors send and retry.
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// `[[sources]]`: each source is one write key and the webhooks its events go to.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// `[notifications]`: operational webhooks about destinations and dead letters.
    #[serde(default)]
    pub notifications: NotificationsConfig,
    /// `[retention]`: how long finished work is kept.
    #[serde(default)]
    pub retention: RetentionConfig,
}

/// `[notifications]`: operational webhooks (`destination.disabled`,
/// `destination.recovered`, `delivery.dead`), Standard Webhooks signed, sent through
/// webhookd's own delivery (stored, retried) to one URL.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NotificationsConfig {
    /// `url`: where they go. Absent: none are sent.
    #[serde(default)]
    pub url: Option<String>,
    /// `signing_secrets`: Standard Webhooks secrets (`whsec_…`) that sign them.
    #[serde(default)]
    pub signing_secrets: Vec<Secret>,
}

/// `[retention]`: finished work is pruned after these many seconds, in small steps;
/// nothing pending is ever pruned, and regulations stay.
#[serde_inline_default]
#[derive(Debug, Clone, Deserialize)]
pub struct RetentionConfig {
    /// `delivered_s`: events whose deliveries are all done (and events of sources without
    /// destinations), with their deliveries and attempts. Default 604800 (7 days).
    #[serde_inline_default(604_800)]
    pub delivered_s: u64,
    /// `dead_letter_s`: dead-lettered deliveries. Default 2592000 (30 days).
    #[serde_inline_default(2_592_000)]
    pub dead_letter_s: u64,
}

/// `[server]`
#[serde_inline_default]
#[derive(Debug, Clone, Deserialize)]
pub struct ServerConfig {
    /// `listen`: address and port of the HTTP API. Default `127.0.0.1:8080`; port 0 picks a
    /// free port (the chosen address is logged).
    #[serde_inline_default(SocketAddr::from(([127, 0, 0, 1], 8080)))]
    #[serde(deserialize_with = "de::socket_addr")]
    pub listen: SocketAddr,
    /// `admin_listen`: when set (e.g. `127.0.0.1:9090`), the admin API, the console and
    /// `/metrics` are served on this address only, and `listen` serves ingest, health and
    /// `/openapi.json`. Absent: everything on `listen`. Port 0 picks a free port (logged).
    /// Changes at the next start.
    #[serde(default, deserialize_with = "de::optional_socket_addr")]
    pub admin_listen: Option<SocketAddr>,
    /// `admin_token`: Bearer token for `/admin/*`. Absent or empty: the admin API answers 404.
    #[serde(default)]
    pub admin_token: Option<Secret>,
    /// `max_message_bytes`: largest single event, after gzip decoding and as stored.
    /// Default 32768 (Segment: 32 KB).
    #[serde_inline_default(32_768)]
    pub max_message_bytes: usize,
    /// `max_batch_bytes`: largest `/v1/batch` body, after gzip decoding. Default 512000
    /// (Segment: 500 KB).
    #[serde_inline_default(512_000)]
    pub max_batch_bytes: usize,
    /// `dedupe_window_s`: a `(source, messageId)` seen again within this many seconds is
    /// answered 200 and not stored or delivered again. Kept in the store, so it holds across
    /// restarts. Default 86400 (one day).
    #[serde_inline_default(86_400)]
    pub dedupe_window_s: u64,
}

/// `[storage]`
#[serde_inline_default]
#[derive(Debug, Clone, Deserialize)]
pub struct StorageConfig {
    /// `backend`: `"sqlite"` (one file, one instance; the default) or `"postgres"` (any
    /// number of instances sharing one database).
    #[serde(default)]
    pub backend: StorageBackend,
    /// `path`: the SQLite database file; created with its folder if missing.
    /// Default `./data/webhookd.db`. SQLite only.
    #[serde_inline_default(PathBuf::from("./data/webhookd.db"))]
    pub path: PathBuf,
    /// `max_size_mb`: cap on the database file. At the cap, ingest answers 503 (nothing is
    /// acknowledged that was not stored) until space returns; 0 or absent: no cap, the
    /// disk is the limit. SQLite only.
    #[serde(default, deserialize_with = "de::zero_is_none")]
    pub max_size_mb: Option<u64>,
    /// `url`: the PostgreSQL database, `postgres://user:password@host:port/database`;
    /// the environment variable `WEBHOOKD_STORAGE_URL` overrides it. Its password never
    /// appears in logs or errors. PostgreSQL only.
    #[serde(default)]
    pub url: Option<StorageUrl>,
    /// `pool_size`: connections this instance keeps to PostgreSQL. Default 16.
    #[serde_inline_default(16)]
    pub pool_size: usize,
    /// `lease_s`: how long the destinations an instance drives stay its own after its last
    /// heartbeat; a dead instance's destinations are taken over within this. Default 30.
    #[serde_inline_default(30)]
    pub lease_s: u64,
}

/// Which store `[storage]` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    #[default]
    Sqlite,
    Postgres,
}

/// `[delivery]`: the delivery actors' settings.
#[serde_inline_default]
#[derive(Debug, Clone, Deserialize)]
pub struct DeliveryConfig {
    /// `timeout_ms`: one request's budget, connect to response headers. Default 5000
    /// (Segment: 5 s).
    #[serde_inline_default(5_000)]
    pub timeout_ms: u64,
    /// `retry_window_s`: retries go on this long after a delivery's first attempt, then
    /// the delivery is dead-lettered. Default 14400 (Segment: 4 h).
    #[serde_inline_default(14_400)]
    pub retry_window_s: u64,
    /// `backoff_initial_ms`: the first retry delay; it doubles each attempt, with full
    /// jitter. Default 1000.
    #[serde_inline_default(1_000)]
    pub backoff_initial_ms: u64,
    /// `backoff_max_ms`: cap on one retry delay (also caps a receiver's `Retry-After`).
    /// Default 600000 (10 min).
    #[serde_inline_default(600_000)]
    pub backoff_max_ms: u64,
    /// `max_in_flight`: concurrent requests per destination. Default 64.
    #[serde_inline_default(64)]
    pub max_in_flight: usize,
    /// `extra_root_certs`: a PEM file of CA certificates trusted in addition to the
    /// standard web roots (for receivers behind a private CA). Default: none.
    #[serde(default, deserialize_with = "de::empty_is_none")]
    pub extra_root_certs: Option<PathBuf>,
    /// `idle_actor_stop_s`: a destination's delivery actor with nothing pending for this
    /// long stops, and is started again when work comes. Default 300.
    #[serde_inline_default(300)]
    pub idle_actor_stop_s: u64,
}

/// One `[[sources]]` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct SourceConfig {
    /// `name`: required, unique among sources; used in logs, metrics and the admin API.
    #[serde(default)]
    pub name: String,
    /// `write_key`: required; what clients authenticate with; unique among sources.
    /// Never logged.
    #[serde(default)]
    pub write_key: Secret,
    /// `[[sources.destinations]]`: where this source's events are delivered. May be empty:
    /// events are then acknowledged and nothing is sent.
    #[serde(default)]
    pub destinations: Vec<DestinationConfig>,
}

/// One `[[sources.destinations]]` entry: one Segment Webhooks destination, or one
/// mapping of Segment's Webhooks (Actions).
#[serde_inline_default]
#[derive(Debug, Clone, Deserialize)]
pub struct DestinationConfig {
    /// `name`: required, unique within its source.
    #[serde(default)]
    pub name: String,
    /// `urls`: 1 to 5 webhook URLs (http or https). An attempt sends to all of them and
    /// succeeds if any one answers 2xx. An entry may be `{ url = "...", headers = { ... } }`.
    #[serde(default)]
    pub urls: Vec<UrlConfig>,
    /// `headers`: added to every request of this destination. Values never print.
    #[serde(default)]
    pub headers: Headers,
    /// `shared_secret`: when set, each request carries `X-Signature`, the hex HMAC-SHA1 of
    /// the body under this secret. Never logged.
    #[serde(default)]
    pub shared_secret: Option<Secret>,
    /// `signing_secrets`: Standard Webhooks secrets (`whsec_…`); when set, each request
    /// carries `webhook-id`, `webhook-timestamp` and `webhook-signature` with one `v1,`
    /// signature per secret (rotation: receivers accept any). Never logged.
    #[serde(default)]
    pub signing_secrets: Vec<Secret>,
    /// `previous_names`: names this destination had before (`["primary"]` after renaming
    /// `primary`). At start and reload, whatever the store keeps under them (pending
    /// deliveries, dead letters, history, a pause) becomes this destination's. Without
    /// it, a renamed destination's backlog stays under the old name, orphaned.
    #[serde(default)]
    pub previous_names: Vec<String>,
    /// `enabled`: a disabled destination gets no deliveries for new events. Default true.
    #[serde_inline_default(true)]
    pub enabled: bool,
    /// `integration_name`: this destination's name in an event's `integrations` object,
    /// as Segment's: an event with `"<name>": false`, or with `"All": false` and no
    /// `"<name>": true` (or options object), is not delivered here. Case-sensitive.
    /// Default `"Webhooks"`.
    #[serde_inline_default(DEFAULT_INTEGRATION_NAME.to_string())]
    pub integration_name: String,
    /// `subscribe`: which events this destination takes, in Segment's subscription FQL
    /// (`type = "track" and event = "Order Completed"`). Absent: every event.
    #[serde(default)]
    pub subscribe: Option<String>,
    /// `method`: `POST`, `PUT` or `PATCH`. Default `POST`.
    #[serde(default)]
    pub method: Method,
    /// `batch_size`: above 1, up to this many events are sent in one request, as a JSON
    /// array (at most 4000). Default 1.
    #[serde_inline_default(1)]
    pub batch_size: usize,
    /// `batch_wait_ms`: a partial batch is sent once its oldest event has waited this long.
    /// Default 1000.
    #[serde_inline_default(1_000)]
    pub batch_wait_ms: u64,
    /// `disable_after_s`: when no attempt has succeeded for this long while attempts
    /// fail, the destination is disabled (kept across restarts; its deliveries wait;
    /// resume enables it). 0: never. Default 0.
    #[serde(default)]
    pub disable_after_s: u64,
    /// `rate_limit_per_s`: requests per second to this destination, at most. 0: no limit.
    /// Default 0.
    #[serde(default)]
    pub rate_limit_per_s: u32,
    /// `[sources.destinations.data]`: the body sent, a Segment mapping of the event
    /// (`@path`, `@template`, `@literal`, `@if`, `@arrayPath`). Absent: the whole event.
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    /// `subscribe`, parsed (set by validation).
    #[serde(skip)]
    pub trigger: Option<Arc<Fql>>,
    /// `data`, validated (set by validation).
    #[serde(skip)]
    pub mapping: Option<Arc<Mapping>>,
}

/// A request method a destination may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Post,
    Put,
    Patch,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
        }
    }
}

/// One entry of `urls`: a bare string, or `{ url = "...", headers = { ... } }`.
#[derive(Debug, Clone, PartialEq)]
pub struct UrlConfig {
    /// The webhook URL.
    pub url: String,
    /// Headers for this URL only, added after the destination's own.
    pub headers: Headers,
}

macro_rules! defaults_from_serde {
    ($($t:ty),*) => {$(
        impl Default for $t {
            /// Every key at its declared default.
            fn default() -> Self {
                load::from_empty()
            }
        }
    )*};
}

defaults_from_serde!(
    Config,
    ServerConfig,
    StorageConfig,
    DeliveryConfig,
    SourceConfig,
    DestinationConfig,
    RetentionConfig
);

/// The source webhookd's own notifications are stored in (not one of the configured
/// ones; no write key reaches it).
pub const NOTIFICATIONS_SOURCE: &str = "_webhookd";
/// Its one destination, `[notifications] url`.
pub const NOTIFICATIONS_DESTINATION: &str = "notifications";

impl SourceConfig {
    /// The destinations that take new events.
    pub fn enabled_destinations(&self) -> impl Iterator<Item = &DestinationConfig> {
        self.destinations.iter().filter(|d| d.enabled)
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

impl Config {
    /// Whether `source` has a destination named `destination` (enabled or not).
    pub fn has_destination(&self, source: &str, destination: &str) -> bool {
        self.destination(source, destination).is_some()
    }

    /// The destination `destination` of source `source`, if configured.
    pub fn destination(&self, source: &str, destination: &str) -> Option<&DestinationConfig> {
        self.sources
            .iter()
            .filter(|s| s.name == source)
            .flat_map(|s| &s.destinations)
            .find(|d| d.name == destination)
    }

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
        let (mut config, mut problems) = load::read(text)?;
        if let Some(url) = url {
            config.storage.url = Some(StorageUrl::new(url));
        }
        check::check(&mut config, &mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
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
                for secret in d.shared_secret.iter().chain(&d.signing_secrets) {
                    hash.update(secret.expose());
                }
                for (_, value) in d.headers.iter() {
                    hash.update(value);
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

#[cfg(test)]
mod tests;
