//! Wiring: open the store, start the actors, start the HTTP server.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix::{Addr, Arbiter, Supervisor};
use actix_web::{web, App, HttpServer};

use crate::actors::deletion::DeletionActor;
use crate::actors::router::Router;
use crate::api::{self, ApiState};
use crate::config::Config;
use crate::delivery::client::{tls_config, TlsSetupError};
use crate::metrics::Metrics;
use crate::store::{SqliteStore, Store, StoreError};

/// Threads for delivery actors, at most: their work is mostly waiting on the network.
const MAX_DELIVERY_THREADS: usize = 4;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("cannot serve HTTP: {0}")]
    Http(#[from] std::io::Error),
}

/// A started service: its address, the server future that runs until it stops, and
/// handles on its insides for those embedding it.
pub struct Service {
    pub addr: SocketAddr,
    pub server: actix_web::dev::Server,
    pub router: Addr<Router>,
    pub metrics: Arc<Metrics>,
}

/// Starts webhookd on `listener`. Must be called inside an actix system; the returned
/// server runs when awaited.
pub fn start(config: Config, listener: TcpListener) -> Result<Service, StartError> {
    let config = Arc::new(config);
    let dedupe_window = Duration::from_secs(config.server.dedupe_window_s);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.storage.path, dedupe_window)?);
    log::info!("store open at {}", config.storage.path.display());
    let tls = tls_config(config.delivery.extra_root_certs.as_deref())?;
    let metrics = Arc::new(Metrics::new());

    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_DELIVERY_THREADS);
    let arbiters = (0..threads).map(|_| Arbiter::new().handle()).collect();
    let router = {
        let (config, store, metrics) = (
            Arc::clone(&config),
            Arc::clone(&store),
            Arc::clone(&metrics),
        );
        Supervisor::start(move |_| Router::new(config, store, tls, metrics, arbiters))
    };
    let deletion = {
        let (config, store, router) = (Arc::clone(&config), Arc::clone(&store), router.clone());
        Supervisor::start(move |_| DeletionActor::new(config, store, router))
    };

    let state = web::Data::new(ApiState {
        config: Arc::clone(&config),
        store,
        router: router.clone(),
        deletion,
        metrics: Arc::clone(&metrics),
    });
    let addr = listener.local_addr()?;
    let server =
        HttpServer::new(move || App::new().app_data(state.clone()).configure(api::configure))
            .client_request_timeout(Duration::from_secs(5))
            .listen(listener)?
            .run();
    log::info!(
        "webhookd listening on http://{addr} ({} source(s))",
        config.sources.len()
    );
    Ok(Service {
        addr,
        server,
        router,
        metrics,
    })
}
