//! The router: the web layer tells it which events were just committed, and it wakes the
//! delivery actor of each destination of their source that this instance owns, spawning
//! the actor (under a supervisor, on one of the delivery arbiters) the first time it is
//! needed.
//!
//! Which destinations this instance owns comes from the lease keeper
//! ([`super::leases`]): an actor runs only under a live lease, with that lease's epoch,
//! so that one destination is driven by one actor in the whole cluster. What other
//! instances publish through the store (new work, purges, pauses) arrives here too.
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
    ActorIdle, Cancel, DeliveryActor, Drain, Fail, Recheck, Reconfigure, Retire, SetLease,
    SetPaused, Surroundings, Target, WorkAvailable,
};
use super::notifier::Notify;
use crate::config::SharedConfig;
use crate::metrics::Metrics;
use crate::store::{ClusterSignal, DestinationKey, Lease, PurgedDelivery, RegulationPlan, Store};

/// Messages the router can hold before senders are told it is full.
const MAILBOX_CAPACITY: usize = 4096;

/// Events of `source` were committed to the store with pending deliveries to some of
/// these destinations (each named once).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct EventsStored {
    pub source: String,
    pub destinations: Vec<String>,
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
pub struct PurgeApplied {
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

/// These destinations have work pending (replayed dead letters, a reload, another
/// instance's ingest).
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

/// The leases this instance holds now, from the lease keeper's latest heartbeat.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Owned {
    pub leases: Vec<Lease>,
}

/// Hand these destinations over: drain their actors, then answer, so that the lease
/// keeper releases the leases for other instances to take.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct HandOver {
    pub leases: Vec<Lease>,
    pub limit: Duration,
}

/// Where the delivery actors started from now on send operational notifications.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UseNotifier(pub Recipient<Notify>);

/// Something another instance (or this one) published through the store.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Signalled(pub ClusterSignal);

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
    /// The destinations this instance may drive, with their leases.
    owned: HashMap<DestinationKey, Lease>,
    /// When each destination's actor was last signalled, to retire only those idle since.
    last_woken: HashMap<DestinationKey, Instant>,
    /// The router's own address, for the delivery actors to report idleness.
    own: Option<Addr<Router>>,
    /// Destinations an operator paused; loaded from the store at start.
    paused: HashSet<DestinationKey>,
    notifier: Option<Recipient<Notify>>,
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
            owned: HashMap::new(),
            last_woken: HashMap::new(),
            own: None,
            paused: paused.into_iter().collect(),
            notifier: None,
        }
    }

    /// The target of `source`/`destination` in the configuration in force, if enabled.
    fn target(&self, source: &str, destination: &str) -> Option<Arc<Target>> {
        let config = self.config.current();
        let source_config = config.sources.iter().find(|s| s.name == source)?;
        let destination_config = source_config
            .enabled_destinations()
            .find(|d| d.name == destination)?;
        Some(Arc::new(Target::new(source, destination_config)))
    }

    /// The delivery actor of `source`/`destination`, spawned if it is not running yet.
    /// `None` when this instance does not own the destination, or it is not configured
    /// or disabled.
    fn actor(&mut self, source: &str, destination: &str) -> Option<Addr<DeliveryActor>> {
        let key = (source.to_string(), destination.to_string());
        if let Some(addr) = self.actors.get(&key) {
            return Some(addr.clone());
        }
        let lease = self.owned.get(&key)?.clone();
        let target = self.target(source, destination)?;
        let settings = self.config.current().delivery.clone();
        let tls = Arc::clone(&self.tls);
        let surroundings = Surroundings {
            store: Arc::clone(&self.store),
            metrics: Arc::clone(&self.metrics),
            on_idle: self.own.clone()?.recipient(),
            notifier: self.notifier.clone(),
        };
        let paused = self.paused.contains(&key);
        let arbiter = &self.arbiters[self.next_arbiter % self.arbiters.len()];
        self.next_arbiter += 1;
        let addr = Supervisor::start_in_arbiter(arbiter, move |_| {
            DeliveryActor::new(target, lease, settings, tls, surroundings).paused(paused)
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

    /// Stops the actor of `key` at once (its lease is gone): attempts in flight are cut;
    /// their claims run out and whoever owns the destination sends them again.
    fn stop_actor(&mut self, key: &DestinationKey) {
        if let Some(addr) = self.actors.remove(key) {
            // With its address dropped too, the supervisor lets the actor go.
            addr.do_send(Retire);
            self.metrics.delivery_actors.set(self.actors.len() as i64);
        }
    }

    fn cancel(&mut self, purged: Vec<PurgedDelivery>) {
        let mut by_destination: HashMap<DestinationKey, Vec<i64>> = HashMap::new();
        for p in purged {
            by_destination
                .entry((p.source, p.destination))
                .or_default()
                .push(p.delivery_id);
        }
        for (key, delivery_ids) in by_destination {
            if let Some(addr) = self.actors.get(&key) {
                // Not try_send: a purged delivery must not be attempted again.
                addr.do_send(Cancel { delivery_ids });
            }
        }
    }

    /// Signals may have been missed: every actor checks what it holds against purges,
    /// and the pauses are read again.
    fn catch_up(&mut self, ctx: &mut Context<Self>) {
        for addr in self.actors.values() {
            addr.do_send(Recheck);
        }
        let pauses = self.store.paused_destinations();
        ctx.spawn(pauses.into_actor(self).map(|answer, router, _ctx| {
            let now: HashSet<DestinationKey> = match answer {
                Ok(keys) => keys.into_iter().collect(),
                Err(e) => {
                    log::warn!("router: cannot read pauses again ({e}); the last heard hold");
                    return;
                }
            };
            let paused: Vec<DestinationKey> = now.difference(&router.paused).cloned().collect();
            let resumed: Vec<DestinationKey> = router.paused.difference(&now).cloned().collect();
            for key in paused {
                router.set_paused(key, true);
            }
            for key in resumed {
                router.set_paused(key, false);
            }
        }));
    }

    fn set_paused(&mut self, key: DestinationKey, paused: bool) {
        if paused {
            self.paused.insert(key.clone());
        } else {
            self.paused.remove(&key);
        }
        if let Some(addr) = self.actors.get(&key) {
            addr.do_send(SetPaused(paused));
        } else if !paused {
            self.wake(&key.0, &key.1);
        }
    }
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.own = Some(ctx.address());
        // What other instances publish through the store (nothing with one instance).
        if let Some(mut signals) = self.store.take_signals() {
            let router = ctx.address();
            actix::spawn(async move {
                while let Some(signal) = signals.recv().await {
                    if let ClusterSignal::Work(_) = signal {
                        if router.try_send(Signalled(signal)).is_err() {
                            // Work is in the store; a full mailbox only delays it to a poll.
                            log::debug!("router: busy; a signal waits for the next poll");
                        }
                    } else if router.send(Signalled(signal)).await.is_err() {
                        // Not to be lost (a purged delivery held would be sent): wait.
                        break; // The router is gone.
                    }
                }
            });
        }
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

impl Handler<Owned> for Router {
    type Result = ();

    fn handle(&mut self, msg: Owned, ctx: &mut Context<Self>) {
        let now_owned: HashMap<DestinationKey, Lease> = msg
            .leases
            .into_iter()
            .map(|l| ((l.source.clone(), l.destination.clone()), l))
            .collect();
        let lost: Vec<DestinationKey> = self
            .owned
            .keys()
            .filter(|k| !now_owned.contains_key(*k))
            .cloned()
            .collect();
        for key in lost {
            log::info!("router: {}/{} is no longer driven here", key.0, key.1);
            self.owned.remove(&key);
            self.stop_actor(&key);
        }
        let mut gained = Vec::new();
        for (key, lease) in now_owned {
            match self.owned.get(&key) {
                Some(held) if held.epoch == lease.epoch => continue,
                Some(_) => {
                    if let Some(addr) = self.actors.get(&key) {
                        addr.do_send(SetLease(lease.clone()));
                    }
                }
                None => gained.push(key.clone()),
            }
            self.owned.insert(key, lease);
        }
        if !gained.is_empty() {
            log::info!(
                "router: driving {} more destination(s) ({} in all)",
                gained.len(),
                self.owned.len()
            );
        }
        // Gained destinations with work waiting get their actor; the others wait for work.
        if !gained.is_empty() {
            let pending = self.store.pending_destinations();
            let router = ctx.address();
            actix::spawn(async move {
                let waiting = match pending.await {
                    Ok(pairs) => {
                        let gained: HashSet<DestinationKey> = gained.into_iter().collect();
                        pairs.into_iter().filter(|k| gained.contains(k)).collect()
                    }
                    Err(e) => {
                        // Every one of them, then: idle actors stop by themselves.
                        log::warn!("router: cannot list pending deliveries: {e}");
                        gained
                    }
                };
                router.do_send(WakeDestinations(waiting));
            });
        }
    }
}

impl Handler<HandOver> for Router {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: HandOver, _ctx: &mut Context<Self>) -> Self::Result {
        let mut drains = Vec::new();
        for lease in msg.leases {
            let key = (lease.source, lease.destination);
            self.owned.remove(&key);
            if let Some(addr) = self.actors.remove(&key) {
                drains.push(async move {
                    let _ = addr.send(Drain).await;
                    addr.do_send(Retire);
                });
            }
        }
        self.metrics.delivery_actors.set(self.actors.len() as i64);
        Box::pin(async move {
            let _ = actix_rt::time::timeout(msg.limit, join_all(drains)).await;
        })
    }
}

impl Handler<UseNotifier> for Router {
    type Result = ();

    fn handle(&mut self, msg: UseNotifier, _ctx: &mut Context<Self>) {
        self.notifier = Some(msg.0);
    }
}

impl Handler<Signalled> for Router {
    type Result = ();

    fn handle(&mut self, msg: Signalled, ctx: &mut Context<Self>) {
        match msg.0 {
            ClusterSignal::Work(keys) => {
                for (source, destination) in keys {
                    self.wake(&source, &destination);
                }
            }
            ClusterSignal::Cancel(purged) => self.cancel(purged),
            ClusterSignal::Paused {
                destination,
                paused,
            } => self.set_paused(destination, paused),
            ClusterSignal::Missed => self.catch_up(ctx),
        }
    }
}

impl Handler<EventsStored> for Router {
    type Result = ();

    fn handle(&mut self, msg: EventsStored, _ctx: &mut Context<Self>) {
        for destination in &msg.destinations {
            self.wake(&msg.source, destination);
        }
    }
}

impl Handler<PurgeApplied> for Router {
    type Result = ();

    fn handle(&mut self, msg: PurgeApplied, _ctx: &mut Context<Self>) {
        self.cancel(msg.purged);
        for notification in &msg.plan.notifications {
            for destination in &notification.destinations {
                self.wake(&notification.source, destination);
            }
        }
    }
}

impl Handler<PauseDestination> for Router {
    type Result = ();

    fn handle(&mut self, msg: PauseDestination, _ctx: &mut Context<Self>) {
        self.set_paused((msg.source, msg.destination), msg.paused);
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
                None => self.stop_actor(&key),
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
        // The signal tells the actor to look again, and its idle clock to start over
        // (it reports again if it stays idle).
        if self
            .last_woken
            .get(&key)
            .is_some_and(|woken| *woken >= msg.idle_since)
        {
            if let Some(addr) = self.actors.get(&key) {
                let _ = addr.try_send(WorkAvailable);
            }
            return;
        }
        if self.actors.contains_key(&key) {
            self.stop_actor(&key);
            self.last_woken.remove(&key);
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
