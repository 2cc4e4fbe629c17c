//! Wiring: open the store, start the actors, start the HTTP server.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix::Supervisor;
use actix_web::{web, App, HttpServer};

use crate::actors::router::Router;
use crate::api::{self, ApiState};
use crate::config::Config;
use crate::store::{SqliteStore, Store, StoreError};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot serve HTTP: {0}")]
    Http(#[from] std::io::Error),
}

/// A started service: its address, and the server future that runs until it stops.
pub struct Service {
    pub addr: SocketAddr,
    pub server: actix_web::dev::Server,
}

/// Starts webhookd on `listener`. Must be called inside an actix system; the returned
/// server runs when awaited.
pub fn start(config: Config, listener: TcpListener) -> Result<Service, StartError> {
    let config = Arc::new(config);
    let dedupe_window = Duration::from_secs(config.server.dedupe_window_s);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.storage.path, dedupe_window)?);
    log::info!("store open at {}", config.storage.path.display());

    let router = Supervisor::start(|_| Router::default());

    let state = web::Data::new(ApiState {
        config: Arc::clone(&config),
        store,
        router,
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
    Ok(Service { addr, server })
}
