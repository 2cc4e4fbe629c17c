//! The deletion actor: applies user deletion requests (regulations) one at a time.
//!
//! A regulation is stored before the API answers 202. The actor then resolves which
//! sources and enabled destinations it covers from the configuration and has the store
//! apply it in one transaction: the users' undelivered events in those sources are
//! removed, suppressions recorded, and one `delete` notification per subject queued for
//! each destination. A regulation is thus applied whole or not at all; one not yet
//! applied when the process stops is applied on the next start. The router then cancels
//! the removed deliveries in their actors and wakes the destinations that have
//! notifications to send: those go out through the delivery actors like any event
//! (signed, retried, recorded, dead-lettered).

use std::sync::Arc;

use actix::prelude::*;

use super::router::{RegulationApplied, Router};
use crate::config::{Config, SharedConfig};
use crate::store::{Regulation, RegulationPlan, RegulationType, Store, StoreError};

/// A regulation was stored and waits to be applied.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RegulationAdded;

pub struct DeletionActor {
    config: SharedConfig,
    store: Arc<dyn Store>,
    router: Addr<Router>,
    /// Regulations are being applied.
    working: bool,
    /// More were added meanwhile: look again when done.
    look_again: bool,
}

impl DeletionActor {
    pub fn new(config: SharedConfig, store: Arc<dyn Store>, router: Addr<Router>) -> DeletionActor {
        DeletionActor {
            config,
            store,
            router,
            working: false,
            look_again: false,
        }
    }

    /// Applies every regulation not applied yet, oldest first.
    fn work(&mut self, ctx: &mut Context<Self>) {
        if self.working {
            self.look_again = true;
            return;
        }
        self.working = true;
        let (config, store, router) = (
            self.config.clone(),
            Arc::clone(&self.store),
            self.router.clone(),
        );
        let applying = async move {
            for regulation in store.unapplied_regulations().await? {
                let plan = plan(&config.current(), &regulation);
                let purged = store.apply_regulation(plan.clone()).await?;
                log::info!(
                    "regulation {} applied: {} subject(s), {} undelivered deliveries purged",
                    plan.regulation_id,
                    plan.subject_ids.len(),
                    purged.len()
                );
                router.do_send(RegulationApplied { plan, purged });
            }
            Ok::<_, StoreError>(())
        };
        ctx.spawn(applying.into_actor(self).map(|result, actor, ctx| {
            actor.working = false;
            if let Err(e) = result {
                log::error!("deletion: cannot apply regulations: {e}");
                // The supervisor restarts the actor, which tries again from the store.
                ctx.stop();
                return;
            }
            if std::mem::take(&mut actor.look_again) {
                actor.work(ctx);
            }
        }));
    }
}

/// The sources a regulation covers, each with its enabled destinations.
fn plan(config: &Config, regulation: &Regulation) -> RegulationPlan {
    let covered = |name: &str| {
        regulation
            .sources
            .as_ref()
            .is_none_or(|listed| listed.iter().any(|s| s == name))
    };
    let sources = config
        .sources
        .iter()
        .filter(|s| covered(&s.name))
        .map(|s| {
            let destinations = s
                .destinations
                .iter()
                .filter(|d| d.enabled)
                .map(|d| d.name.clone())
                .collect();
            (s.name.clone(), destinations)
        })
        .collect();
    RegulationPlan {
        regulation_id: regulation.id.clone(),
        suppress: regulation.regulation_type == RegulationType::SuppressWithDelete,
        subject_ids: regulation.subject_ids.clone(),
        sources,
    }
}

impl Actor for DeletionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Regulations left unapplied by an earlier run are applied now.
        self.work(ctx);
    }
}

impl Supervised for DeletionActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        log::warn!("deletion actor restarting");
        self.working = false;
        self.look_again = false;
    }
}

impl Handler<RegulationAdded> for DeletionActor {
    type Result = ();

    fn handle(&mut self, _: RegulationAdded, ctx: &mut Context<Self>) {
        self.work(ctx);
    }
}
