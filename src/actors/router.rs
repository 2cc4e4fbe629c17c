//! The router: the web layer tells it which events were just committed, and it wakes the
//! delivery actor of each enabled destination of their source, spawning the actor (under
//! a supervisor, on one of the delivery arbiters) the first time it is needed.
//!
//! The router only signals; it never waits on a destination, so a slow one cannot hold
//! up the others. A signal that cannot be queued is not lost work: the deliveries are in
//! the store, and the actor looks there on its next pump or idle poll. The router also
//! carries operators' decisions to the delivery actors: pauses, reloaded configuration,
//! cancellations from regulations, and the drain at shutdown.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::future::join_all;

use super::delivery::{
    ActorIdle, Cancel, DeliveryActor, Drain, Fail, Reconfigure, Retire, SetPaused, Target,
    WorkAvailable,
};
use crate::config::SharedConfig;
use crate::metrics::Metrics;
use crate::store::{PurgedDelivery, RegulationPlan, Store};

/// Messages the router can hold before senders are told it is full.
const MAILBOX_CAPACITY: usize = 4096;

type DestinationKey = (String, String);

/// Events of `source` were committed to the store with these ids.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct EventsStored {
    pub source: String,
    pub event_ids: Vec<i64>,
}

/// Makes the delivery actor of `source`/`destination` fail (as an internal error would),
/// so that its supervisor restarts it. Answers whether such an actor was running.
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct FailDestination {
    pub source: String,
    pub destination: String,
}

/// A regulation was applied: cancel its purged deliveries, send its notifications.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RegulationApplied {
    pub plan: RegulationPlan,
    pub purged: Vec<PurgedDelivery>,
}

/// An operator paused or resumed a destination (already recorded in the store).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct PauseDestination {
    pub source: String,
    pub destination: String,
    pub paused: bool,
}

/// Replayed dead letters are pending again for these destinations.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WakeDestinations(pub Vec<DestinationKey>);

/// A new configuration is in force (the shared config was replaced), with its TLS setup.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ConfigReloaded {
    pub tls: Arc<rustls::ClientConfig>,
}

/// Shutting down: every delivery actor stops starting attempts; answers when the
/// attempts in flight have ended, or after `limit`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct DrainAll {
    pub limit: Duration,
}

/// Routes stored events to delivery actors.
pub struct Router {
    config: SharedConfig,
    store: Arc<dyn Store>,
    tls: Arc<rustls::ClientConfig>,
    metrics: Arc<Metrics>,
    /// Threads the delivery actors run on, shared round-robin.
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    actors: HashMap<DestinationKey, Addr<DeliveryActor>>,
    /// When each destination's actor was last signalled, to retire only those idle since.
    last_woken: HashMap<DestinationKey, Instant>,
    /// The router's own address, for the delivery actors to report idleness.
    own: Option<Addr<Router>>,
    /// Destinations an operator paused; loaded from the store at start.
    paused: HashSet<DestinationKey>,
}

impl Router {
    pub fn new(
        config: SharedConfig,
        store: Arc<dyn Store>,
        tls: Arc<rustls::ClientConfig>,
        metrics: Arc<Metrics>,
        arbiters: Vec<ArbiterHandle>,
        paused: Vec<DestinationKey>,
    ) -> Router {
        Router {
            config,
            store,
            tls,
            metrics,
            arbiters,
            next_arbiter: 0,
            actors: HashMap::new(),
            last_woken: HashMap::new(),
            own: None,
            paused: paused.into_iter().collect(),
        }
    }

    /// The target of `source`/`destination` in the configuration in force, if enabled.
    fn target(&self, source: &str, destination: &str) -> Option<Arc<Target>> {
        let config = self.config.current();
        let source_config = config.sources.iter().find(|s| s.name == source)?;
        let destination_config = source_config
            .destinations
            .iter()
            .find(|d| d.name == destination && d.enabled)?;
        Some(Arc::new(Target::new(source, destination_config)))
    }

    /// The delivery actor of `source`/`destination`, spawned if it is not running yet.
    /// `None` when the destination is not configured or is disabled.
    fn actor(&mut self, source: &str, destination: &str) -> Option<Addr<DeliveryActor>> {
        let key = (source.to_string(), destination.to_string());
        if let Some(addr) = self.actors.get(&key) {
            return Some(addr.clone());
        }
        let target = self.target(source, destination)?;
        let settings = self.config.current().delivery.clone();
        let store = Arc::clone(&self.store);
        let tls = Arc::clone(&self.tls);
        let metrics = Arc::clone(&self.metrics);
        let paused = self.paused.contains(&key);
        let on_idle = self.own.clone()?.recipient();
        let arbiter = &self.arbiters[self.next_arbiter % self.arbiters.len()];
        self.next_arbiter += 1;
        let addr = Supervisor::start_in_arbiter(arbiter, move |_| {
            DeliveryActor::new(target, settings, store, tls, metrics, on_idle).paused(paused)
        });
        log::debug!("router: delivery actor for {source}/{destination} started");
        self.actors.insert(key, addr.clone());
        self.metrics.delivery_actors.set(self.actors.len() as i64);
        Some(addr)
    }

    fn wake(&mut self, source: &str, destination: &str) {
        self.last_woken.insert(
            (source.to_string(), destination.to_string()),
            Instant::now(),
        );
        if let Some(addr) = self.actor(source, destination) {
            // Full means signals are already queued: each of them pumps after this
            // event's commit, so dropping this one loses nothing.
            let _ = addr.try_send(WorkAvailable);
        }
    }
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.own = Some(ctx.address());
        // Resume: every destination with deliveries left pending by an earlier run.
        let pending = self.store.pending_destinations();
        ctx.spawn(pending.into_actor(self).map(|pending, router, _| match pending {
            Ok(pairs) => {
                for (source, destination) in pairs {
                    if router.actor(&source, &destination).is_some() {
                        log::info!("router: resuming pending deliveries of {source}/{destination}");
                        router.wake(&source, &destination);
                    } else {
                        log::warn!(
                            "router: {source}/{destination} has pending deliveries but is not an enabled destination; they wait"
                        );
                    }
                }
            }
            Err(e) => log::error!("router: cannot list pending deliveries: {e}"),
        }));
    }
}

impl Supervised for Router {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        log::warn!("router restarting");
        self.metrics
            .actor_restarts
            .with_label_values(&["router"])
            .inc();
    }
}

impl Handler<EventsStored> for Router {
    type Result = ();

    fn handle(&mut self, msg: EventsStored, _ctx: &mut Context<Self>) {
        let config = self.config.current();
        let Some(source) = config.sources.iter().find(|s| s.name == msg.source) else {
            return;
        };
        for destination in source.enabled_destinations() {
            self.wake(&msg.source, &destination.name);
        }
    }
}

impl Handler<RegulationApplied> for Router {
    type Result = ();

    fn handle(&mut self, msg: RegulationApplied, _ctx: &mut Context<Self>) {
        let mut purged: HashMap<DestinationKey, Vec<i64>> = HashMap::new();
        for p in msg.purged {
            purged
                .entry((p.source, p.destination))
                .or_default()
                .push(p.delivery_id);
        }
        for (key, delivery_ids) in purged {
            if let Some(addr) = self.actors.get(&key) {
                // Not try_send: a purged delivery must not be attempted again.
                addr.do_send(Cancel { delivery_ids });
            }
        }
        for (source, destinations) in &msg.plan.sources {
            for destination in destinations {
                self.wake(source, destination);
            }
        }
    }
}

impl Handler<PauseDestination> for Router {
    type Result = ();

    fn handle(&mut self, msg: PauseDestination, _ctx: &mut Context<Self>) {
        let key = (msg.source, msg.destination);
        if msg.paused {
            self.paused.insert(key.clone());
        } else {
            self.paused.remove(&key);
        }
        if let Some(addr) = self.actors.get(&key) {
            addr.do_send(SetPaused(msg.paused));
        } else if !msg.paused {
            self.wake(&key.0, &key.1);
        }
    }
}

impl Handler<WakeDestinations> for Router {
    type Result = ();

    fn handle(&mut self, msg: WakeDestinations, _ctx: &mut Context<Self>) {
        for (source, destination) in msg.0 {
            self.wake(&source, &destination);
        }
    }
}

impl Handler<ConfigReloaded> for Router {
    type Result = ();

    fn handle(&mut self, msg: ConfigReloaded, ctx: &mut Context<Self>) {
        self.tls = msg.tls;
        let settings = self.config.current().delivery.clone();
        let keys: Vec<DestinationKey> = self.actors.keys().cloned().collect();
        for key in keys {
            match self.target(&key.0, &key.1) {
                Some(target) => {
                    let addr = &self.actors[&key];
                    addr.do_send(Reconfigure {
                        target,
                        settings: settings.clone(),
                        tls: Arc::clone(&self.tls),
                    });
                }
                None => {
                    // Dropping the address as well lets the supervisor end the actor.
                    if let Some(addr) = self.actors.remove(&key) {
                        addr.do_send(Retire);
                        self.metrics.delivery_actors.set(self.actors.len() as i64);
                    }
                }
            }
        }
        // New or re-enabled destinations may have deliveries waiting already.
        let pending = self.store.pending_destinations();
        let router = ctx.address();
        actix::spawn(async move {
            if let Ok(pairs) = pending.await {
                router.do_send(WakeDestinations(pairs));
            }
        });
    }
}

impl Handler<DrainAll> for Router {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: DrainAll, _ctx: &mut Context<Self>) -> Self::Result {
        let drains: Vec<_> = self.actors.values().map(|addr| addr.send(Drain)).collect();
        Box::pin(async move {
            let _ = actix_rt::time::timeout(msg.limit, join_all(drains)).await;
        })
    }
}

impl Handler<ActorIdle> for Router {
    type Result = ();

    fn handle(&mut self, msg: ActorIdle, _ctx: &mut Context<Self>) {
        let key = (msg.source, msg.destination);
        // Signalled after the query that found it idle began: there is work after all.
        if self
            .last_woken
            .get(&key)
            .is_some_and(|woken| *woken >= msg.idle_since)
        {
            return;
        }
        if let Some(addr) = self.actors.remove(&key) {
            // With its address dropped too, the supervisor lets the actor go.
            addr.do_send(Retire);
            self.last_woken.remove(&key);
            self.metrics.delivery_actors.set(self.actors.len() as i64);
            log::debug!(
                "router: idle delivery actor for {}/{} stopped",
                key.0,
                key.1
            );
        }
    }
}

impl Handler<FailDestination> for Router {
    type Result = bool;

    fn handle(&mut self, msg: FailDestination, _ctx: &mut Context<Self>) -> bool {
        match self.actors.get(&(msg.source, msg.destination)) {
            Some(addr) => {
                addr.do_send(Fail);
                true
            }
            None => false,
        }
    }
}
