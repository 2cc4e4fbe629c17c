//! The router: the web layer tells it which events were just committed, and it wakes the
//! delivery actor of each enabled destination of their source, spawning the actor (under
//! a supervisor, on one of the delivery arbiters) the first time it is needed.
//!
//! The router only signals; it never waits on a destination, so a slow one cannot hold
//! up the others. A signal that cannot be queued is not lost work: the deliveries are in
//! the store, and the actor looks there on its next pump or idle poll.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

use super::delivery::{Cancel, DeliveryActor, Fail, Target, WorkAvailable};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{PurgedDelivery, RegulationPlan, Store};

/// Messages the router can hold before senders are told it is full.
const MAILBOX_CAPACITY: usize = 4096;

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

/// Routes stored events to delivery actors.
pub struct Router {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    tls: Arc<rustls::ClientConfig>,
    metrics: Arc<Metrics>,
    /// Threads the delivery actors run on, shared round-robin.
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    actors: HashMap<(String, String), Addr<DeliveryActor>>,
}

impl Router {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        tls: Arc<rustls::ClientConfig>,
        metrics: Arc<Metrics>,
        arbiters: Vec<ArbiterHandle>,
    ) -> Router {
        Router {
            config,
            store,
            tls,
            metrics,
            arbiters,
            next_arbiter: 0,
            actors: HashMap::new(),
        }
    }

    /// The delivery actor of `source`/`destination`, spawned if it is not running yet.
    /// `None` when the destination is not configured or is disabled.
    fn actor(&mut self, source: &str, destination: &str) -> Option<Addr<DeliveryActor>> {
        let key = (source.to_string(), destination.to_string());
        if let Some(addr) = self.actors.get(&key) {
            return Some(addr.clone());
        }
        let source_config = self.config.sources.iter().find(|s| s.name == source)?;
        let destination_config = source_config
            .destinations
            .iter()
            .find(|d| d.name == destination && d.enabled)?;
        let target = Arc::new(Target::new(source, destination_config));
        let settings = self.config.delivery.clone();
        let store = Arc::clone(&self.store);
        let tls = Arc::clone(&self.tls);
        let metrics = Arc::clone(&self.metrics);
        let arbiter = &self.arbiters[self.next_arbiter % self.arbiters.len()];
        self.next_arbiter += 1;
        let addr = Supervisor::start_in_arbiter(arbiter, move |_| {
            DeliveryActor::new(target, settings, store, tls, metrics)
        });
        log::debug!("router: delivery actor for {source}/{destination} started");
        self.actors.insert(key, addr.clone());
        Some(addr)
    }

    fn wake(&mut self, source: &str, destination: &str) {
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
        let Some(source) = self.config.sources.iter().find(|s| s.name == msg.source) else {
            return;
        };
        let destinations: Vec<String> = source
            .destinations
            .iter()
            .filter(|d| d.enabled)
            .map(|d| d.name.clone())
            .collect();
        for destination in destinations {
            self.wake(&msg.source, &destination);
        }
    }
}

impl Handler<RegulationApplied> for Router {
    type Result = ();

    fn handle(&mut self, msg: RegulationApplied, _ctx: &mut Context<Self>) {
        let mut purged: HashMap<(String, String), Vec<i64>> = HashMap::new();
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
