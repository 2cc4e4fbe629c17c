//! The retention actor: prunes finished work in small steps, for ever.
//!
//! Each step looks at a page of the oldest events after a cursor and removes those whose
//! deliveries are all delivered longer than `retention.delivered_s` ago, or dead-lettered
//! longer than `retention.dead_letter_s` ago (with their deliveries and attempts), and
//! dedupe entries out of the window. Nothing pending is touched, nor regulations and their
//! notifications. A step on SQLite runs in the writer's transaction, so its size adapts
//! to stay under [`STEP_BUDGET`]: ingest never waits much longer than that. Freed space
//! is reused by later writes (SQLite's free pages; PostgreSQL's autovacuum), so under
//! steady load the store stops growing.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::clock::now_ms;
use crate::config::SharedConfig;
use crate::metrics::Metrics;
use crate::store::{Prune, Store};

/// How long one step's removals may hold the store. On SQLite they share a commit with
/// ingest's writes, so this bounds what pruning adds to an ingest request's latency (well
/// under 50 ms); the scan for candidates runs on a reader beforehand.
pub const STEP_BUDGET: Duration = Duration::from_millis(8);
/// Between steps while a pass finds work: ingest gets the writer to itself meanwhile.
const STEP_PAUSE: Duration = Duration::from_millis(10);
/// Between passes, at most (a quarter of `delivered_s` when that is shorter).
const PASS_PAUSE: Duration = Duration::from_secs(10);
const MIN_PAGE: usize = 50;
const MAX_PAGE: usize = 2_000;

pub struct Retention {
    config: SharedConfig,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// Where the pass goes on from.
    after_id: i64,
    /// Events looked at per step, adapted to the budget.
    page: usize,
}

impl Retention {
    pub fn new(config: SharedConfig, store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Retention {
        Retention {
            config,
            store,
            metrics,
            after_id: 0,
            page: 500,
        }
    }

    fn step(&mut self, ctx: &mut Context<Self>) {
        let config = self.config.current();
        let now = now_ms();
        let ms = |s: u64| i64::try_from(s).unwrap_or(i64::MAX).saturating_mul(1000);
        let prune = Prune {
            after_id: self.after_id,
            delivered_before_ms: now.saturating_sub(ms(config.retention.delivered_s)),
            dead_before_ms: now.saturating_sub(ms(config.retention.dead_letter_s)),
            dedupe_before_ms: now.saturating_sub(ms(config.server.dedupe_window_s)),
            limit: self.page,
        };
        ctx.spawn(
            self.store
                .prune(prune)
                .into_actor(self)
                .map(move |result, actor, ctx| {
                    let pause = match result {
                        Ok(pruned) => {
                            actor
                                .metrics
                                .pruned
                                .with_label_values(&["events"])
                                .inc_by(pruned.events);
                            actor
                                .metrics
                                .pruned
                                .with_label_values(&["dedupe"])
                                .inc_by(pruned.dedupe_entries);
                            // Keep each step within the budget.
                            let took = pruned.held;
                            actor.page = if took > STEP_BUDGET {
                                (actor.page / 2).max(MIN_PAGE)
                            } else if took < STEP_BUDGET / 2 {
                                (actor.page * 2).min(MAX_PAGE)
                            } else {
                                actor.page
                            };
                            match pruned.next_after {
                                Some(id) => {
                                    actor.after_id = id;
                                    STEP_PAUSE
                                }
                                None => {
                                    actor.after_id = 0;
                                    actor.pass_pause()
                                }
                            }
                        }
                        Err(e) => {
                            log::warn!("retention: a pruning step failed: {e}");
                            actor.pass_pause()
                        }
                    };
                    ctx.run_later(pause, |actor, ctx| actor.step(ctx));
                }),
        );
    }
}

impl Retention {
    fn pass_pause(&self) -> Duration {
        let quarter = Duration::from_secs(self.config.current().retention.delivered_s) / 4;
        quarter.clamp(Duration::from_secs(1), PASS_PAUSE)
    }
}

impl Actor for Retention {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let pause = self.pass_pause();
        ctx.run_later(pause, |actor, ctx| actor.step(ctx));
    }
}

impl Supervised for Retention {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        log::warn!("retention restarting");
        self.metrics
            .actor_restarts
            .with_label_values(&["retention"])
            .inc();
    }
}
