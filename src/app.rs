//! Wiring: open the store, start the actors, start the HTTP server; then run until a
//! signal says stop (SIGTERM, Ctrl-C) or reload (SIGHUP).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::{Addr, Arbiter, Supervisor};
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use tokio::signal::unix::{signal, SignalKind};

use crate::actors::deletion::{apply_unapplied, DeletionActor};
use crate::actors::leases::{BeatNow, LeaseKeeper};
use crate::actors::notifier::Notifier;
use crate::actors::retention::Retention;
use crate::actors::router::{
    ConfigReloaded, DrainAll, PauseDestination, Router, UseNotifier, WakeDestinations,
};
use crate::api::{self, ApiState};
use crate::clock::now_ms;
use crate::config::StorageBackend;
use crate::config::{Config, ConfigError, SharedConfig};
use crate::delivery::client::{tls_config, TlsSetupError};
use crate::delivery::receiver::reload_change;
use crate::ingest::IngestService;
use crate::metrics::Metrics;
use crate::store::{self, DestinationKey, InstanceInfo, Store, StoreError};

/// Threads for delivery actors, at most: their work is mostly waiting on the network.
const MAX_DELIVERY_THREADS: usize = 4;
/// HTTP requests in progress get this long to finish at shutdown.
const HTTP_SHUTDOWN: Duration = Duration::from_secs(5);

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("cannot serve HTTP: {0}")]
    Http(#[from] std::io::Error),
    #[error("cannot listen on server.admin_listen {at}: {source}")]
    AdminListen { at: String, source: std::io::Error },
}

/// Why a new configuration was not put in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
}

/// A started service: handles on its insides, for running, reloading and stopping it.
pub struct Service {
    pub addr: SocketAddr,
    pub http: ServerHandle,
    /// The operators' server, when `server.admin_listen` is set.
    pub operators: Option<ServerHandle>,
    pub router: Addr<Router>,
    pub leases: Addr<LeaseKeeper>,
    pub metrics: Arc<Metrics>,
    pub config: SharedConfig,
    pub store: Arc<dyn Store>,
    /// This instance, as the store's registry knows it.
    pub instance: InstanceInfo,
}

/// Starts webhookd on `listener`: returns the service and its HTTP server, which serves
/// once awaited or spawned. Must run inside an actix system.
pub async fn start(
    config: Config,
    listener: TcpListener,
) -> Result<(Service, actix_web::dev::Server), StartError> {
    let metrics = Arc::new(Metrics::new());
    let on_commit = {
        let metrics = Arc::clone(&metrics);
        Box::new(move |took: Duration, jobs: usize| {
            metrics.store_commit_duration.observe(took.as_secs_f64());
            metrics.store_commit_jobs.observe(jobs as f64);
        })
    };
    let store = store::open(&config.storage, on_commit).await?;
    match config.storage.backend {
        StorageBackend::Sqlite => {
            log::info!("store open: SQLite at {}", config.storage.path.display())
        }
        StorageBackend::Postgres => log::info!(
            "store open: PostgreSQL at {}",
            config
                .storage
                .url
                .as_ref()
                .map(|u| u.redacted())
                .unwrap_or_default()
        ),
    }
    let addr = listener.local_addr()?;
    let instance = InstanceInfo {
        id: uuid::Uuid::new_v4().to_string(),
        address: addr.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at_ms: now_ms(),
        config_fingerprint: config.fingerprint(),
    };
    let tls = tls_config(config.delivery.extra_root_certs.as_deref())?;
    // Before the pauses are read and any delivery starts: renamed destinations take
    // their work (and pause) over.
    carry_over_previous_names(&config, store.as_ref()).await?;
    let paused = store.paused_destinations().await?;
    // Before any delivery resumes: regulations acknowledged before a crash take effect.
    apply_unapplied(&config, store.as_ref()).await?;
    let config = SharedConfig::new(config);

    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_DELIVERY_THREADS);
    let arbiters = (0..threads).map(|_| Arbiter::new().handle()).collect();
    let router = {
        let (config, store, metrics) = (config.clone(), Arc::clone(&store), Arc::clone(&metrics));
        Supervisor::start(move |_| Router::new(config, store, tls, metrics, arbiters, paused))
    };
    let notifier = {
        let (config, store, router) = (config.clone(), Arc::clone(&store), router.clone());
        let metrics = Arc::clone(&metrics);
        Supervisor::start(move |_| Notifier::new(config, store, router, metrics))
    };
    // Before any lease is held, so before any delivery actor starts.
    router.do_send(UseNotifier(notifier.recipient()));
    {
        let (config, store, metrics) = (config.clone(), Arc::clone(&store), Arc::clone(&metrics));
        Supervisor::start(move |_| Retention::new(config, store, metrics));
    }
    let deletion = {
        let (config, store, router) = (config.clone(), Arc::clone(&store), router.clone());
        let metrics = Arc::clone(&metrics);
        Supervisor::start(move |_| DeletionActor::new(config, store, router, metrics))
    };
    actix_rt::spawn(watch_store(Arc::clone(&store), Arc::clone(&metrics)));
    let leases = {
        let (instance, config, store) = (instance.clone(), config.clone(), Arc::clone(&store));
        let router = router.clone();
        Supervisor::start(move |_| LeaseKeeper::new(instance, config, store, router))
    };
    log::info!(
        "instance {} (config fingerprint {})",
        instance.id,
        instance.config_fingerprint
    );
    warn_of_orphans(config.current().as_ref(), store.as_ref()).await;

    let state = web::Data::new(ApiState {
        config: config.clone(),
        store: Arc::clone(&store),
        router: router.clone(),
        ingest: IngestService::new(
            config.clone(),
            Arc::clone(&store),
            router.clone(),
            Arc::clone(&metrics),
        ),
        deletion,
        metrics: Arc::clone(&metrics),
        instance_id: instance.id.clone(),
        failed_auth: api::auth::FailedAuth::default(),
    });
    // With `admin_listen`, operators' endpoints get a server of their own.
    let operators = match config.current().server.admin_listen {
        None => None,
        Some(at) => {
            let listener = TcpListener::bind(at).map_err(|e| StartError::AdminListen {
                at: at.to_string(),
                source: e,
            })?;
            let ops_addr = listener.local_addr()?;
            let state = state.clone();
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(state.clone())
                    .configure(api::configure_operators_alone)
            })
            .workers(1)
            .client_request_timeout(Duration::from_secs(5))
            .shutdown_timeout(HTTP_SHUTDOWN.as_secs())
            .disable_signals()
            .listen(listener)?
            .run();
            let handle = server.handle();
            actix_rt::spawn(server);
            log::info!("admin API, console and metrics on http://{ops_addr}");
            Some(handle)
        }
    };
    let public = operators.is_some();
    let server = HttpServer::new(move || {
        let app = App::new().app_data(state.clone());
        if public {
            app.configure(api::configure_public)
        } else {
            app.configure(api::configure)
        }
    })
    .client_request_timeout(Duration::from_secs(5))
    .shutdown_timeout(HTTP_SHUTDOWN.as_secs())
    // Signals are ours: shutdown must also drain the delivery actors.
    .disable_signals()
    .listen(listener)?
    .run();
    log::info!(
        "webhookd listening on http://{addr} ({} source(s))",
        config.current().sources.len()
    );
    let service = Service {
        addr,
        http: server.handle(),
        operators,
        router,
        leases,
        metrics,
        config,
        store,
        instance,
    };
    Ok((service, server))
}

/// Moves the stored work of each destination's `previous_names` to it; answers the
/// destinations that received some.
async fn carry_over_previous_names(
    config: &Config,
    store: &dyn Store,
) -> Result<Vec<DestinationKey>, StoreError> {
    let mut renamed = Vec::new();
    for source in &config.sources {
        for destination in &source.destinations {
            for old in &destination.previous_names {
                let moved = store
                    .rename_destination(&source.name, old, &destination.name)
                    .await?;
                if moved > 0 {
                    log::info!(
                        "destination {}/{} takes over {moved} deliveries of its previous name {old}",
                        source.name,
                        destination.name
                    );
                    renamed.push((source.name.clone(), destination.name.clone()));
                }
            }
        }
    }
    Ok(renamed)
}

/// Says which destinations have deliveries waiting but are not in `config` (removed or
/// renamed): their backlog waits, and would be forgotten otherwise.
async fn warn_of_orphans(config: &Config, store: &dyn Store) {
    let Ok(pending) = store.pending_destinations().await else {
        return;
    };
    for (source, destination) in pending {
        if !config.has_destination(&source, &destination) {
            log::warn!(
                "destination {source}/{destination} has pending deliveries but is not in the configuration: they wait until it is configured again (see /admin/v1/destinations)"
            );
        }
    }
}

impl Service {
    /// Puts `new` in force: sources, destinations, `[delivery]`, the limits and token of
    /// `[server]` and `storage.max_size_mb`. `server.listen` and `storage.path` keep their
    /// values until a restart.
    pub async fn reload(&self, mut new: Config) -> Result<(), ReloadError> {
        let current = self.config.current();
        let storage_moved = new.storage.backend != current.storage.backend
            || new.storage.path != current.storage.path
            || new.storage.url != current.storage.url
            || new.storage.pool_size != current.storage.pool_size;
        if new.server.listen != current.server.listen
            || new.server.admin_listen != current.server.admin_listen
            || storage_moved
        {
            log::warn!(
                "reload: server.listen, server.admin_listen and storage.backend, path, url and pool_size take effect at the next start"
            );
            new.server.listen = current.server.listen;
            new.server.admin_listen = current.server.admin_listen;
            let max_size_mb = new.storage.max_size_mb;
            let lease_s = new.storage.lease_s;
            new.storage = current.storage.clone();
            new.storage.max_size_mb = max_size_mb;
            new.storage.lease_s = lease_s;
        }
        if new.storage.max_size_mb != current.storage.max_size_mb {
            let bytes = new.storage.max_size_mb.map(|mb| mb * 1024 * 1024);
            self.store.set_size_limit(bytes).await?;
            log::info!(
                "reload: storage.max_size_mb is now {:?}",
                new.storage.max_size_mb
            );
        }
        let tls = tls_config(new.delivery.extra_root_certs.as_deref())?;
        let sources = new.sources.len();
        let renamed = carry_over_previous_names(&new, self.store.as_ref()).await?;
        // URLs that answered 410 Gone are tried again after a reload.
        let reset = self.reset_gone_urls().await?;
        self.config.replace(Arc::new(new));
        self.router.do_send(ConfigReloaded { tls });
        // A pause carried over from a previous name holds under the new one.
        let paused = self.store.paused_destinations().await?;
        for (source, destination) in &renamed {
            if paused.contains(&(source.clone(), destination.clone())) {
                self.router.do_send(PauseDestination {
                    source: source.clone(),
                    destination: destination.clone(),
                    paused: true,
                });
            }
        }
        self.router.do_send(WakeDestinations(reset));
        self.router.do_send(WakeDestinations(renamed));
        // The destinations wanted may have changed: leases follow at once.
        self.leases.do_send(BeatNow);
        log::info!("configuration reloaded: {sources} source(s)");
        warn_of_orphans(self.config.current().as_ref(), self.store.as_ref()).await;
        Ok(())
    }

    /// Forgets the URLs gone of every destination, and enables those disabled for them;
    /// answers the destinations changed.
    async fn reset_gone_urls(&self) -> Result<Vec<DestinationKey>, StoreError> {
        let mut changed = Vec::new();
        for control in self.store.destination_controls().await? {
            if let Some(change) = reload_change(&control) {
                self.store
                    .change_control(&control.source, &control.destination, change, now_ms())
                    .await?;
                changed.push((control.source, control.destination));
            }
        }
        Ok(changed)
    }

    /// Stops accepting requests, lets requests and delivery attempts in progress finish
    /// (each bounded by its timeout), and flushes the store.
    pub async fn shutdown(&self) {
        log::info!("shutting down: finishing requests and delivery attempts in progress");
        let attempt_limit = Duration::from_millis(self.config.current().delivery.timeout_ms)
            + Duration::from_secs(1);
        if let Some(operators) = &self.operators {
            operators.stop(true).await;
        }
        let http = self.http.stop(true);
        let deliveries = self.router.send(DrainAll {
            limit: attempt_limit,
        });
        let (_, drained) = futures_util::future::join(http, deliveries).await;
        if drained.is_err() {
            log::warn!("shutdown: the router did not answer; attempts in flight were cut");
        }
        match self.store.shutdown(&self.instance.id).await {
            Ok(()) => log::info!("store flushed, leases released; stopped"),
            Err(e) => log::error!(
                "shutdown: store flush failed (every commit is kept; leases run out by themselves): {e}"
            ),
        }
    }
}

/// How often the store's health is looked at, and probed while it cannot write.
const STORE_WATCH: Duration = Duration::from_secs(1);

/// Keeps `webhookd_store_writable` current and, while the store cannot write, probes it
/// so that it is found writable again even when nothing else writes (readiness is then
/// 503, and a load balancer may send no ingest at all).
async fn watch_store(store: Arc<dyn Store>, metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(STORE_WATCH);
    loop {
        tick.tick().await;
        if !store.health().is_writable() {
            let _ = store.probe().await;
        }
        metrics
            .store_writable
            .set(i64::from(store.health().is_writable()));
    }
}

/// Runs webhookd until SIGTERM or Ctrl-C, reloading `config_path` on SIGHUP.
pub async fn run(
    config_path: PathBuf,
    config: Config,
    listener: TcpListener,
) -> Result<(), StartError> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let (service, server) = start(config, listener).await?;
    let server = actix_rt::spawn(server);
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                log::info!("SIGHUP: reloading {}", config_path.display());
                let reloaded = match Config::load(&config_path) {
                    Ok(new) => service.reload(new).await,
                    Err(e) => Err(e.into()),
                };
                if let Err(e) = reloaded {
                    log::error!("reload refused, the configuration in force stays: {e}");
                }
            }
        }
    }
    service.shutdown().await;
    let _ = server.await;
    Ok(())
}
