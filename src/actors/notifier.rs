//! The notifier: operational webhooks (`[notifications]`) about destinations —
//! `destination.disabled`, `destination.recovered`, and `delivery.dead` (counted by each
//! delivery actor over a minute, then sent as one).
//!
//! A notification is an event of webhookd's own source ([`NOTIFICATIONS_SOURCE`]),
//! stored like any other and sent by a delivery actor to `[notifications] url`, signed
//! with Standard Webhooks: it is retried, and outlives a crash once stored. Its body
//! follows Standard Webhooks' payload shape: `{"type", "timestamp", "data"}`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde_json::{json, Value};

use super::router::{EventsStored, Router};
use crate::clock::{iso, now_ms};
use crate::config::{SharedConfig, NOTIFICATIONS_DESTINATION, NOTIFICATIONS_SOURCE};
use crate::delivery::receiver::Notice;
use crate::metrics::Metrics;
use crate::store::{NewEvent, Store};

/// Messages the notifier holds before senders are told it is full.
const MAILBOX_CAPACITY: usize = 1024;
/// Notifications the store could not take, kept for another try, at most.
const UNSENT_KEPT: usize = 1000;
const STORE_RETRY: Duration = Duration::from_secs(2);
/// How long a delivery actor counts dead letters before it reports them.
pub const DEAD_LETTER_PERIOD: Duration = Duration::from_secs(60);
/// Message ids a `delivery.dead` notification lists, at most.
const DEAD_IDS_LISTED: usize = 20;

/// Something an operator should hear about `source`/`destination`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Notify {
    pub source: String,
    pub destination: String,
    pub what: Operational,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operational {
    Health(Notice),
    Dead(DeadLetters),
}

/// Deliveries dead-lettered over one period, counted by their delivery actor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetters {
    pub count: u64,
    /// The first few of their message ids.
    pub message_ids: Vec<String>,
    pub last_reason: String,
    pub first_at_ms: i64,
    pub last_at_ms: i64,
}

impl DeadLetters {
    /// Counts one more.
    pub fn add(&mut self, message_id: &str, reason: &str, at_ms: i64) {
        if self.count == 0 {
            self.first_at_ms = at_ms;
        }
        self.count += 1;
        if self.message_ids.len() < DEAD_IDS_LISTED {
            self.message_ids.push(message_id.to_string());
        }
        self.last_reason = reason.to_string();
        self.last_at_ms = at_ms;
    }
}

/// The `type` and body of a notification at `now_ms`.
pub fn body(
    source: &str,
    destination: &str,
    what: &Operational,
    now_ms: i64,
) -> (&'static str, Value) {
    let (kind, data) = match what {
        Operational::Health(Notice::Disabled {
            reason,
            failing_since_ms,
        }) => (
            "destination.disabled",
            json!({
                "source": source,
                "destination": destination,
                "reason": reason,
                "failingSince": failing_since_ms.map(iso),
                "disabledAt": iso(now_ms),
            }),
        ),
        Operational::Health(Notice::Recovered { failing_since_ms }) => (
            "destination.recovered",
            json!({
                "source": source,
                "destination": destination,
                "failingSince": failing_since_ms.map(iso),
                "recoveredAt": iso(now_ms),
            }),
        ),
        Operational::Dead(dead) => (
            "delivery.dead",
            json!({
                "source": source,
                "destination": destination,
                "count": dead.count,
                "messageIds": dead.message_ids,
                "lastReason": dead.last_reason,
                "firstAt": iso(dead.first_at_ms),
                "lastAt": iso(dead.last_at_ms),
            }),
        ),
    };
    (
        kind,
        json!({"type": kind, "timestamp": iso(now_ms), "data": data}),
    )
}

/// Stores operational notifications for webhookd's own delivery.
pub struct Notifier {
    config: SharedConfig,
    store: Arc<dyn Store>,
    router: Addr<Router>,
    metrics: Arc<Metrics>,
    /// Notifications the store could not take yet (it was full or unreachable).
    unsent: VecDeque<(&'static str, NewEvent)>,
    retrying: bool,
}

impl Notifier {
    pub fn new(
        config: SharedConfig,
        store: Arc<dyn Store>,
        router: Addr<Router>,
        metrics: Arc<Metrics>,
    ) -> Notifier {
        Notifier {
            config,
            store,
            router,
            metrics,
            unsent: VecDeque::new(),
            retrying: false,
        }
    }

    fn store_events(&mut self, events: Vec<(&'static str, NewEvent)>, ctx: &mut Context<Self>) {
        let kinds: Vec<&'static str> = events.iter().map(|(k, _)| *k).collect();
        let copies = events.clone();
        let events: Vec<NewEvent> = events.into_iter().map(|(_, e)| e).collect();
        let destinations = NewEvent::destinations_of(&events);
        let appended = self.store.append(events);
        ctx.spawn(
            appended
                .into_actor(self)
                .map(move |result, actor, ctx| match result {
                    Ok(_) => {
                        for kind in kinds {
                            actor.metrics.notifications.with_label_values(&[kind]).inc();
                        }
                        actor.router.do_send(EventsStored {
                            source: NOTIFICATIONS_SOURCE.to_string(),
                            destinations,
                        });
                    }
                    Err(e) => {
                        log::warn!("notifier: notifications not stored yet ({e}); trying again");
                        for copy in copies {
                            if actor.unsent.len() >= UNSENT_KEPT {
                                log::error!("notifier: too many notifications unsent; one dropped");
                                actor.unsent.pop_front();
                            }
                            actor.unsent.push_back(copy);
                        }
                        if !std::mem::replace(&mut actor.retrying, true) {
                            ctx.run_later(STORE_RETRY, |actor, ctx| {
                                actor.retrying = false;
                                let unsent: Vec<_> = actor.unsent.drain(..).collect();
                                if !unsent.is_empty() {
                                    actor.store_events(unsent, ctx);
                                }
                            });
                        }
                    }
                }),
        );
    }
}

impl Actor for Notifier {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
    }
}

impl Supervised for Notifier {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        log::warn!("notifier restarting");
        self.metrics
            .actor_restarts
            .with_label_values(&["notifier"])
            .inc();
        self.retrying = false;
    }
}

impl Handler<Notify> for Notifier {
    type Result = ();

    fn handle(&mut self, msg: Notify, ctx: &mut Context<Self>) {
        let config = self.config.current();
        // About itself: nowhere to send it but where it fails.
        if msg.source == NOTIFICATIONS_SOURCE {
            return;
        }
        let now = now_ms();
        let (kind, body) = body(&msg.source, &msg.destination, &msg.what, now);
        log::info!(
            "notification {kind} for {}/{}{}",
            msg.source,
            msg.destination,
            if config.notifications.url.is_some() {
                ""
            } else {
                " (no [notifications] url: not sent)"
            }
        );
        if config.notifications.url.is_none() {
            return;
        }
        let event = NewEvent {
            source: NOTIFICATIONS_SOURCE.to_string(),
            message_id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
            dedupe_since_ms: None,
            user_id: None,
            event_type: "notification",
            received_at_ms: now,
            body: body.to_string(),
            destinations: vec![NOTIFICATIONS_DESTINATION.to_string()],
        };
        self.store_events(vec![(kind, event)], ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letters_are_counted_with_the_first_ids() {
        let mut dead = DeadLetters::default();
        for i in 0..30 {
            dead.add(&format!("m{i}"), &format!("reason {i}"), 1_000 + i);
        }
        assert_eq!(dead.count, 30);
        assert_eq!(dead.message_ids.len(), DEAD_IDS_LISTED);
        assert_eq!(dead.message_ids[0], "m0");
        assert_eq!((dead.first_at_ms, dead.last_at_ms), (1_000, 1_029));
        assert_eq!(dead.last_reason, "reason 29");
    }

    #[test]
    fn bodies_have_the_standard_webhooks_shape() {
        let (kind, body) = body(
            "s",
            "d",
            &Operational::Health(Notice::Disabled {
                reason: "why".into(),
                failing_since_ms: Some(0),
            }),
            86_400_000,
        );
        assert_eq!(kind, "destination.disabled");
        assert_eq!(body["type"], "destination.disabled");
        assert_eq!(body["timestamp"], "1970-01-02T00:00:00.000Z");
        assert_eq!(body["data"]["failingSince"], "1970-01-01T00:00:00.000Z");
        assert_eq!(body["data"]["reason"], "why");
        assert_eq!(body["data"]["destination"], "d");
    }
}
