//! The lease keeper: this instance's heartbeat in the store's registry, and the leases on
//! the destinations it drives.
//!
//! Every [`heartbeat_interval`] it tells the store it is alive and which destinations
//! its configuration has; the store renews the leases it holds, gives it free ones up to
//! its fair share (destinations ÷ live instances, rounded up), and names those beyond
//! it. The keeper passes what it owns to the router, which runs a delivery actor only
//! under a live lease. Leases beyond the fair share are handed over: their actors drain
//! first, then the leases are released for another instance to take.
//!
//! A lease holds for `lease_s` after the last heartbeat. An instance that cannot reach
//! the store for most of that time stops trusting its leases and stops every actor
//! before the lease can pass to another instance; when the store is back, the next
//! heartbeat gives it its share again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::router::{HandOver, Owned, Router};
use crate::clock::now_ms;
use crate::config::SharedConfig;
use crate::store::{DestinationKey, Heartbeat, HeartbeatAnswer, InstanceInfo, Store, StoreError};

/// How often an instance beats: a tenth of the lease, within 250 ms and 1 s, so that a
/// dead instance's destinations are taken over soon after its lease ends.
pub fn heartbeat_interval(lease: Duration) -> Duration {
    (lease / 10).clamp(Duration::from_millis(250), Duration::from_secs(1))
}

/// Asks for a heartbeat now (after a reload changed the destinations).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct BeatNow;

pub struct LeaseKeeper {
    instance: InstanceInfo,
    config: SharedConfig,
    store: Arc<dyn Store>,
    router: Addr<Router>,
    /// When the last heartbeat succeeded; leases are trusted until `lease - margin` after.
    last_beat: Option<Instant>,
    /// A heartbeat (or a hand-over) is running.
    beating: bool,
    /// Fingerprints of other live instances already warned about.
    warned_fingerprints: Vec<String>,
    /// The router was told this instance owns nothing because the store was unreachable.
    distrusting: bool,
}

impl LeaseKeeper {
    pub fn new(
        instance: InstanceInfo,
        config: SharedConfig,
        store: Arc<dyn Store>,
        router: Addr<Router>,
    ) -> LeaseKeeper {
        LeaseKeeper {
            instance,
            config,
            store,
            router,
            last_beat: None,
            beating: false,
            warned_fingerprints: Vec::new(),
            distrusting: false,
        }
    }

    fn lease(&self) -> Duration {
        Duration::from_secs(self.config.current().storage.lease_s)
    }

    fn wanted(&self) -> Vec<DestinationKey> {
        self.config
            .current()
            .sources
            .iter()
            .flat_map(|s| {
                s.enabled_destinations()
                    .map(|d| (s.name.clone(), d.name.clone()))
            })
            .collect()
    }

    fn beat(&mut self, ctx: &mut Context<Self>) {
        if self.beating {
            return;
        }
        self.beating = true;
        let lease = self.lease();
        let heartbeat = Heartbeat {
            instance: self.instance.clone(),
            wanted: self.wanted(),
            now_ms: now_ms(),
            lease_ms: lease.as_millis() as i64,
        };
        let started = Instant::now();
        ctx.spawn(
            self.store
                .heartbeat(heartbeat)
                .into_actor(self)
                .then(move |answer, keeper, _ctx| {
                    let handover = keeper.heard(answer, started);
                    let limit = lease / 2;
                    let (router, store) = (keeper.router.clone(), Arc::clone(&keeper.store));
                    async move {
                        if let Some(leases) = handover {
                            // Drained first: no two actors ever send for one destination.
                            let handed = router.send(HandOver {
                                leases: leases.clone(),
                                limit,
                            });
                            if handed.await.is_ok() {
                                if let Err(e) = store.release_leases(leases).await {
                                    log::warn!("leases: cannot release handed-over leases: {e}");
                                }
                            }
                        }
                    }
                    .into_actor(keeper)
                })
                .map(|_, keeper, _| keeper.beating = false),
        );
    }

    /// Acts on a heartbeat's answer; returns leases to hand over.
    fn heard(
        &mut self,
        answer: Result<HeartbeatAnswer, StoreError>,
        started: Instant,
    ) -> Option<Vec<crate::store::Lease>> {
        let lease = self.lease();
        match answer {
            Ok(answer) => {
                self.last_beat = Some(started);
                if self.distrusting {
                    log::info!("leases: the store answers again; taking destinations back");
                    self.distrusting = false;
                }
                self.check_fingerprints(&answer);
                let shed: Vec<_> = answer.shed.clone();
                let kept = answer
                    .owned
                    .into_iter()
                    .filter(|l| !shed.contains(l))
                    .collect();
                self.router.do_send(Owned { leases: kept });
                (!shed.is_empty()).then(|| {
                    log::info!(
                        "leases: handing {} destination(s) over to other instances",
                        shed.len()
                    );
                    shed
                })
            }
            Err(e) => {
                // Stop before another instance may take over: a margin of two beats.
                let margin = heartbeat_interval(lease) * 2;
                let trusted = self
                    .last_beat
                    .is_some_and(|at| at.elapsed() + margin < lease);
                if !trusted && !self.distrusting {
                    log::error!(
                        "leases: no heartbeat for most of lease_s ({e}); stopping every delivery until the store answers"
                    );
                    self.distrusting = true;
                    self.router.do_send(Owned { leases: Vec::new() });
                } else {
                    log::warn!("leases: heartbeat failed: {e}");
                }
                None
            }
        }
    }

    fn check_fingerprints(&mut self, answer: &HeartbeatAnswer) {
        for other in answer.instances.iter().filter(|i| i.live) {
            let fingerprint = &other.info.config_fingerprint;
            if *fingerprint != self.instance.config_fingerprint
                && !self.warned_fingerprints.contains(fingerprint)
            {
                log::warn!(
                    "leases: instance {} at {} runs another configuration (fingerprint {} here {}); all instances should run the same sources and destinations",
                    other.info.id,
                    other.info.address,
                    fingerprint,
                    self.instance.config_fingerprint
                );
                self.warned_fingerprints.push(fingerprint.clone());
            }
        }
    }
}

impl Actor for LeaseKeeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.beat(ctx);
        ctx.run_interval(heartbeat_interval(self.lease()), |keeper, ctx| {
            keeper.beat(ctx)
        });
    }
}

impl Supervised for LeaseKeeper {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        log::warn!("lease keeper restarting");
        self.beating = false;
    }
}

impl Handler<BeatNow> for LeaseKeeper {
    type Result = ();

    fn handle(&mut self, _: BeatNow, ctx: &mut Context<Self>) {
        self.beat(ctx);
    }
}
