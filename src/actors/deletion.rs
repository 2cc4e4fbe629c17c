//! The deletion actor: applies user deletion requests (regulations) one at a time.
//!
//! A regulation is stored before the API answers 202. The actor then resolves which
//! sources and enabled destinations it covers from the configuration, writes the
//! `delete` notifications, and has the store apply it in one transaction: every stored
//! event of the users in those sources is removed (delivered or not), suppressions
//! recorded, and one `delete` notification per subject queued for each destination. A regulation is thus applied whole or not at all; one not yet
//! applied when the process stops is applied on the next start. The router then cancels
//! the removed deliveries in their actors and wakes the destinations that have
//! notifications to send: those go out through the delivery actors like any event
//! (signed, retried, recorded, dead-lettered). The API answers 202 once the regulation is
//! applied, so that nothing it purged starts being sent after the answer.

use std::sync::Arc;

use actix::prelude::*;

use super::router::{PurgeApplied, Router};
use serde_json::json;

use crate::clock::now_ms;
use crate::config::{Config, SharedConfig};
use crate::metrics::Metrics;
use crate::segment::time::format_iso8601;
use crate::segment::to_canonical_json;
use crate::store::{
    Notification, Regulation, RegulationApplied, RegulationPlan, RegulationType, Store, StoreError,
};

/// A regulation was stored and waits to be applied. Answers once every regulation
/// waiting is applied (or applying failed).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct RegulationAdded;

pub struct DeletionActor {
    config: SharedConfig,
    store: Arc<dyn Store>,
    router: Addr<Router>,
    metrics: Arc<Metrics>,
}

impl DeletionActor {
    pub fn new(
        config: SharedConfig,
        store: Arc<dyn Store>,
        router: Addr<Router>,
        metrics: Arc<Metrics>,
    ) -> DeletionActor {
        DeletionActor {
            config,
            store,
            router,
            metrics,
        }
    }

    /// Applies every regulation not applied yet and has the router act on each. Two of
    /// these may overlap: applying is idempotent, decided inside the store's transaction.
    fn apply(&self) -> impl std::future::Future<Output = Result<(), StoreError>> + 'static {
        let (config, store, router) = (
            self.config.clone(),
            Arc::clone(&self.store),
            self.router.clone(),
        );
        async move {
            // Other instances hear of the purge from the store; this one directly.
            for (plan, applied) in apply_unapplied(&config.current(), store.as_ref()).await? {
                router.do_send(PurgeApplied {
                    plan,
                    purged: applied.purged,
                });
            }
            Ok(())
        }
    }
}

/// Applies every regulation stored but not applied, oldest first; returns what each did.
/// Also run at start, before any delivery resumes, so that nothing purged by a regulation
/// acknowledged before a crash is sent after it.
pub async fn apply_unapplied(
    config: &Config,
    store: &dyn Store,
) -> Result<Vec<(RegulationPlan, RegulationApplied)>, StoreError> {
    let mut applied = Vec::new();
    for regulation in store.unapplied_regulations().await? {
        let plan = plan(config, &regulation, now_ms());
        let outcome = store.apply_regulation(plan.clone()).await?;
        log::info!(
            "regulation {} applied: {} subject(s), {} event(s) removed, {} undelivered deliveries purged",
            plan.regulation_id,
            plan.subject_ids.len(),
            outcome.events_removed,
            outcome.undelivered_removed
        );
        applied.push((plan, outcome));
    }
    Ok(applied)
}

/// What a regulation does, resolved against the configuration: the sources whose data
/// of the subjects goes (those listed, or every source in the store), where they are
/// suppressed, and one `delete` notification per subject for each covered source with
/// enabled destinations.
fn plan(config: &Config, regulation: &Regulation, now_ms: i64) -> RegulationPlan {
    let covered = |name: &str| {
        regulation
            .sources
            .as_ref()
            .is_none_or(|listed| listed.iter().any(|s| s == name))
    };
    // One notification per user, however often the request names them.
    let mut subject_ids: Vec<String> = Vec::with_capacity(regulation.subject_ids.len());
    for id in &regulation.subject_ids {
        if !subject_ids.contains(id) {
            subject_ids.push(id.clone());
        }
    }
    let timestamp =
        format_iso8601(chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default());
    let mut notifications = Vec::new();
    // webhookd's own notifications hold no user's data and hear of no deletion.
    let users_sources = || {
        config
            .sources
            .iter()
            .filter(|s| s.name != crate::config::NOTIFICATIONS_SOURCE)
    };
    for source in users_sources().filter(|s| covered(&s.name)) {
        let destinations: Vec<String> = source
            .enabled_destinations()
            .map(|d| d.name.clone())
            .collect();
        if destinations.is_empty() {
            continue;
        }
        for (index, user_id) in subject_ids.iter().enumerate() {
            notifications.push(Notification {
                source: source.name.clone(),
                user_id: user_id.clone(),
                message_id: format!("delete-{}-{index}", regulation.id),
                body: to_canonical_json(
                    &json!({"type": "delete", "userId": user_id, "timestamp": timestamp}),
                ),
                destinations: destinations.clone(),
            });
        }
    }
    let suppress_in = match regulation.regulation_type {
        RegulationType::DeleteOnly => Vec::new(),
        RegulationType::SuppressWithDelete => match &regulation.sources {
            Some(listed) => listed.clone(),
            None => users_sources().map(|s| s.name.clone()).collect(),
        },
    };
    RegulationPlan {
        regulation_id: regulation.id.clone(),
        suppress_in,
        subject_ids,
        sources: regulation.sources.clone(),
        notifications,
        now_ms,
    }
}

impl Actor for DeletionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // After a supervisor restart: whatever failed to apply is tried again.
        ctx.spawn(self.apply().into_actor(self).map(|result, _, ctx| {
            if let Err(e) = result {
                log::error!("deletion: cannot apply regulations: {e}");
                ctx.stop();
            }
        }));
    }
}

impl Supervised for DeletionActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        log::warn!("deletion actor restarting");
        self.metrics
            .actor_restarts
            .with_label_values(&["deletion"])
            .inc();
    }
}

impl Handler<RegulationAdded> for DeletionActor {
    type Result = ResponseActFuture<Self, Result<(), StoreError>>;

    fn handle(&mut self, _: RegulationAdded, _ctx: &mut Context<Self>) -> Self::Result {
        Box::pin(self.apply().into_actor(self).map(|result, _, ctx| {
            if let Err(e) = &result {
                log::error!("deletion: cannot apply regulations: {e}");
                // The supervisor restarts the actor, which tries again from the store.
                ctx.stop();
            }
            result
        }))
    }
}
