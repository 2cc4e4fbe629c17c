//! One delivery actor per (source, destination): it sends that destination's pending
//! deliveries, at most `max_in_flight` at a time, and schedules their retries.
//!
//! The store is the actor's work list; memory holds only the deliveries in flight. The
//! actor claims due deliveries from the store (under its instance's lease on the
//! destination, for longer than an attempt can take) when told new work is there
//! ([`WorkAvailable`]), when an attempt finishes, and on a timer set for the next
//! scheduled retry. One request carries one delivery, or a batch of them when the
//! destination batches (claimed deliveries wait in a small buffer until `batch_size` are
//! there or the oldest has waited `batch_wait_ms`); what it carries and how it is signed
//! is [`crate::delivery::request`]'s to build. One attempt sends to every URL still worth
//! trying, concurrently; its requests and each delivery's new state are committed
//! together, under the claim, before the delivery leaves the actor. Anything the actor loses by stopping (a
//! supervisor restart, a crash) is therefore still pending in the store and is attempted
//! again: delivery is at least once. What to make of an attempt's results is
//! [`crate::delivery::decision`]'s to say.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::future::join_all;

use super::notifier::{DeadLetters, Notify, Operational, DEAD_LETTER_PERIOD};
use crate::clock::now_ms;
use crate::config::DeliveryConfig;
use crate::delivery::client::{build_client, send, UrlResult};
use crate::delivery::decision::{decide, History, RetryPolicy, UrlVerdict};
use crate::delivery::outcome::UrlOutcome;
use crate::delivery::pace::Pace;
use crate::delivery::receiver::{AttemptSummary, HealthChange, ReceiverHealth};
use crate::delivery::request::build;
pub use crate::delivery::request::{Target, UrlTarget};
use crate::metrics::{DestinationSeries, Metrics};
use crate::store::{
    AttemptOutcome, AttemptRecord, Claim, ControlChange, DeliveryUpdate, DueDelivery, DuePage,
    Lease, Store, StoreError,
};

/// After a supervisor restart, the actor waits this long before sending again.
const RESTART_PAUSE: Duration = Duration::from_secs(1);
/// With nothing due, look at the store about this often anyway: new work is signalled,
/// this only catches a signal lost (a full mailbox, a dropped notification). Jittered,
/// so that thousands of idle destinations do not look all at once.
const IDLE_POLL: Duration = Duration::from_secs(30);
/// Claimed deliveries waiting for a request, at most, in batches of the destination.
const BUFFERED_BATCHES: usize = 4;
/// Outcomes being committed, per request slot, before the actor waits for the store.
const RECORDING_PER_SLOT: usize = 4;
/// Rounds of requests claimed ahead of free slots. Claims run one at a time, each a
/// commit away, so with one round a slot that frees often waits for the next claim: a
/// backlog drained 15 % faster with three (16.5k against 14.3k a second, alternating runs)
/// and about as fast with two.
const AHEAD_ROUNDS: usize = 3;
/// Deliveries claimed at once while the receiver is probed.
const PROBE_CLAIM: usize = 32;
/// While the store cannot be written, look again this often.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// Numbers each actor's life, so that each restart claims under a name of its own.
static INCARNATIONS: AtomicU64 = AtomicU64::new(0);

/// New deliveries for this destination were committed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WorkAvailable;

/// These deliveries were purged from the store: stop attempting them.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Cancel {
    pub delivery_ids: Vec<i64>,
}

/// Signals may have been missed (the instance's listener was cut off): the actor drops
/// what it holds that a purge removed meanwhile. Answers once the store has said; at once
/// when a claim or another check is running, and the check follows it (sending waits).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Recheck;

/// A delivery actor has had nothing pending since `idle_since` (the start of the store
/// query that found nothing); the router may retire it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ActorIdle {
    pub source: String,
    pub destination: String,
    pub idle_since: Instant,
}

/// Stops the actor as an internal failure does; its supervisor restarts it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Fail;

/// Sends one destination's deliveries.
pub struct DeliveryActor {
    target: Arc<Target>,
    /// This instance's lease on the destination: claims are made under it.
    lease: Lease,
    /// The name this actor's claims carry; a new one after each restart.
    claimer: String,
    settings: DeliveryConfig,
    store: Arc<dyn Store>,
    tls: Arc<rustls::ClientConfig>,
    metrics: Arc<Metrics>,
    /// This destination's attempt and delivery counters.
    series: DestinationSeries,
    /// Built on the actor's own thread: `awc::Client` is not `Send`.
    client: Option<awc::Client>,
    /// Requests on the wire, by their first delivery's id, with the future sending them
    /// (to cancel a purged one): at most `max_in_flight`.
    in_flight: HashMap<i64, SpawnHandle>,
    /// The request each delivery on the wire travels in.
    members: HashMap<i64, i64>,
    /// Claimed deliveries waiting for a request (a batch to fill, or a free slot).
    buffer: Vec<DueDelivery>,
    /// When the next buffered request may go: a partial batch's wait, the next probe,
    /// the rate limit's next free place.
    send_timer: Option<SpawnHandle>,
    /// Deliveries whose outcome is being committed: they stay claimed, so no one sends
    /// them again meanwhile, but they hold no request slot (a slow commit does not slow
    /// the receiver's traffic). Bounded by [`RECORDING_PER_SLOT`] × `max_in_flight`.
    recording: HashMap<i64, SpawnHandle>,
    /// Deliveries a claim returned while their outcome's commit had not been heard of
    /// yet (the commit ended the claim, the next claim took them): they are ours, and
    /// are sent once that commit is heard of, rather than left claimed with nothing to
    /// wake for them.
    claimed_while_recording: HashMap<i64, DueDelivery>,
    /// A claim of due work is running.
    fetching: bool,
    /// Deliveries cancelled while a claim was running: the claim may have taken them just
    /// before their purge committed, and its answer may come after the cancellation.
    cancelled_while_claiming: HashSet<i64>,
    /// A recheck came while a claim was running: its answer is checked too.
    recheck_after_claim: bool,
    /// What is held is being checked against purges: nothing is sent meanwhile.
    rechecking: bool,
    /// A check of what is held is on its way to the store.
    recheck_running: bool,
    /// A recheck came while a check was running: that check may have read the store
    /// before the signals now missed, so another follows it before sending resumes.
    recheck_again: bool,
    /// Held (shared) by every running claim until its statement has finished, even one
    /// whose actor life has ended; a restart takes it whole before it releases the old
    /// life's claims, so that no claim of that life commits after the release and holds
    /// its deliveries until it runs out.
    claims_running: Arc<tokio::sync::RwLock<()>>,
    /// More work was signalled while fetching: fetch again when done.
    fetch_again: bool,
    /// The timer for the next scheduled retry or idle poll.
    wake: Option<SpawnHandle>,
    /// Paused by an operator: nothing new is sent.
    paused: bool,
    /// Shutting down: nothing new is sent, and these hear when the last attempt ends.
    draining: Option<Vec<tokio::sync::oneshot::Sender<()>>>,
    /// Restarted by the supervisor: wait a little before working again, so that a lasting
    /// fault (a full store) does not become a busy loop of restarts.
    restarted: bool,
    /// Attempts made whose record the store could not take (it was full or unreachable):
    /// held, and recorded when it can write again, never sent again meanwhile. Their
    /// deliveries stay in `recording`, so nothing else starts while they wait.
    unrecorded: Vec<(DueDelivery, AttemptOutcome)>,
    /// Told when the actor has been idle long enough to be retired.
    on_idle: Recipient<ActorIdle>,
    /// When the running store query started.
    fetch_started: Instant,
    /// Since when nothing has been pending, and whether the router was told.
    idle_since: Option<Instant>,
    idle_reported: bool,
    /// What the receiver's answers have taught: URLs gone, probing, disabled.
    health: ReceiverHealth,
    /// `health` was read from the store: nothing is sent before.
    health_loaded: bool,
    /// `rate_limit_per_s`, when set.
    pace: Option<Pace>,
    /// Where operational notifications go.
    notifier: Option<Recipient<Notify>>,
    /// Deliveries dead-lettered in the current period, reported when it ends.
    dead: DeadLetters,
}

/// What every delivery actor shares with the rest of webhookd.
#[derive(Clone)]
pub struct Surroundings {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// Told when the actor has been idle long enough to be retired.
    pub on_idle: Recipient<ActorIdle>,
    /// Where operational notifications go.
    pub notifier: Option<Recipient<Notify>>,
}

impl DeliveryActor {
    pub fn new(
        target: Arc<Target>,
        lease: Lease,
        settings: DeliveryConfig,
        tls: Arc<rustls::ClientConfig>,
        surroundings: Surroundings,
    ) -> DeliveryActor {
        let Surroundings {
            store,
            metrics,
            on_idle,
            notifier,
        } = surroundings;
        let claimer = claimer_name(&lease);
        let pace = Pace::new(target.rate_limit_per_s);
        let series =
            DestinationSeries::new(Arc::clone(&metrics), &target.source, &target.destination);
        DeliveryActor {
            target,
            lease,
            claimer,
            settings,
            store,
            tls,
            metrics,
            series,
            client: None,
            in_flight: HashMap::new(),
            members: HashMap::new(),
            buffer: Vec::new(),
            send_timer: None,
            recording: HashMap::new(),
            claimed_while_recording: HashMap::new(),
            cancelled_while_claiming: HashSet::new(),
            recheck_after_claim: false,
            rechecking: false,
            recheck_running: false,
            recheck_again: false,
            fetching: false,
            claims_running: Arc::default(),
            fetch_again: false,
            wake: None,
            paused: false,
            draining: None,
            restarted: false,
            unrecorded: Vec::new(),
            on_idle,
            fetch_started: Instant::now(),
            idle_since: None,
            idle_reported: false,
            health: ReceiverHealth::default(),
            health_loaded: false,
            pace,
            notifier,
            dead: DeadLetters::default(),
        }
    }

    /// Starts paused (the operator's choice outlives restarts).
    pub fn paused(mut self, paused: bool) -> DeliveryActor {
        self.paused = paused;
        self
    }

    fn name(&self) -> String {
        format!("{}/{}", self.target.source, self.target.destination)
    }

    /// Fills free in-flight slots with due deliveries from the store.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.paused || self.draining.is_some() || !self.health_loaded {
            return;
        }
        // Disabled: nothing is sent until resumed; probed: one request at a time.
        let slots = self.health.slots(self.settings.max_in_flight);
        if slots == 0 {
            return;
        }
        if !self.unrecorded.is_empty() {
            return; // Recording them again is scheduled; it pumps when it succeeds.
        }
        if !self.store.health().is_writable() {
            // An attempt now could not be recorded and would be sent again: wait.
            self.schedule_wake(Some(now_ms() + STORE_RETRY.as_millis() as i64), ctx);
            return;
        }
        if self.fetching {
            self.fetch_again = true;
            return;
        }
        let free = slots.saturating_sub(self.in_flight.len());
        let ahead = self.claim_ahead(slots);
        // Claims are taken a few slots at a time, not one per finished attempt: a claim
        // is a store round trip. A finishing attempt pumps again.
        if free + ahead == 0 || (!self.in_flight.is_empty() && free + ahead < self.claim_batch()) {
            return;
        }
        if self.recording.len() >= RECORDING_PER_SLOT * self.settings.max_in_flight {
            return; // A finished commit pumps again.
        }
        let batch = self.target.batch_size;
        // Enough for the free slots; for batches, a few batches' worth at most.
        let mut room = (free * batch).min((BUFFERED_BATCHES * batch).max(free)) + ahead;
        if self.health.probing() {
            // A few, so that those whose window has ended are dead-lettered without
            // waiting for the probe.
            room = PROBE_CLAIM;
        }
        if self.target.rate_limit_per_s > 0 {
            // No more than a second's worth waits for its turn under a claim.
            room = room.min(self.target.rate_limit_per_s as usize * batch);
        }
        let room = room.saturating_sub(self.buffer.len());
        if room == 0 || (ahead > 0 && !self.in_flight.is_empty() && room < self.claim_batch()) {
            return; // Sending what is buffered pumps again.
        }
        let Ok(running) = Arc::clone(&self.claims_running).try_read_owned() else {
            // The last life's claims are being released: claim once that is done.
            self.schedule_wake(Some(now_ms() + STORE_RETRY.as_millis() as i64), ctx);
            return;
        };
        self.fetching = true;
        self.fetch_started = Instant::now();
        let now = now_ms();
        let claim = Claim {
            source: self.target.source.clone(),
            destination: self.target.destination.clone(),
            claimer: self.claimer.clone(),
            lease: self.lease.clone(),
            now_ms: now,
            claim_until_ms: now + claim_duration(&self.settings, &self.target).as_millis() as i64,
            limit: room,
        };
        // Run apart from this life's context, so that a restart does not lose sight of a
        // claim whose statement is already on its way to the store.
        let claiming = self.store.claim_due(claim);
        let claimed = actix_rt::spawn(async move {
            let page = claiming.await;
            drop(running);
            page
        });
        ctx.spawn(claimed.into_actor(self).map(|joined, actor, ctx| {
            actor.fetching = false;
            let cancelled = std::mem::take(&mut actor.cancelled_while_claiming);
            let page = joined.unwrap_or(Err(StoreError::Closed));
            match page {
                Ok(mut page) => {
                    page.due.retain(|d| !cancelled.contains(&d.delivery_id));
                    actor.start_due(page, ctx);
                    if std::mem::take(&mut actor.recheck_after_claim) {
                        actor.recheck_when_free(ctx);
                    }
                }
                // The store is down or full: look again soon (the store's health
                // says why, once, in the log).
                Err(StoreError::Unavailable(_) | StoreError::Full) => {
                    let again = now_ms() + STORE_RETRY.as_millis() as i64;
                    actor.schedule_wake(Some(again), ctx);
                }
                Err(e) => {
                    log::error!("delivery {}: cannot claim due work: {e}", actor.name());
                    ctx.stop();
                }
            }
        }));
    }

    /// Notes whether anything is pending, and reports a long idleness to the router.
    fn track_idleness(&mut self, page: &DuePage) {
        let idle = page.due.is_empty()
            && page.next_due_at_ms.is_none()
            && self.in_flight.is_empty()
            && self.recording.is_empty()
            && self.buffer.is_empty();
        if !idle {
            self.idle_since = None;
            self.idle_reported = false;
            return;
        }
        let since = *self.idle_since.get_or_insert(self.fetch_started);
        if !self.idle_reported && since.elapsed() >= self.idle_limit() {
            self.idle_reported = true;
            self.on_idle.do_send(ActorIdle {
                source: self.target.source.clone(),
                destination: self.target.destination.clone(),
                idle_since: since,
            });
        }
    }

    /// Deliveries claimed ahead of free slots, to wait in the buffer: a claim is a
    /// commit away (an fsync), so without them each slot that frees waits for one.
    /// [`rounds_ahead`] times the slots; none while probing.
    fn claim_ahead(&self, slots: usize) -> usize {
        if self.health.probing() {
            return 0;
        }
        slots * rounds_ahead(&self.target)
    }

    /// Free slots worth a claim while attempts are in flight: a quarter of them.
    fn claim_batch(&self) -> usize {
        (self.health.slots(self.settings.max_in_flight) / 4).max(1)
    }

    fn idle_limit(&self) -> Duration {
        Duration::from_secs(self.settings.idle_actor_stop_s)
    }

    fn start_due(&mut self, page: DuePage, ctx: &mut Context<Self>) {
        self.track_idleness(&page);
        for delivery in page.due {
            // A held outcome's claim may have run out: it is not attempted again.
            let id = delivery.delivery_id;
            if self.recording.contains_key(&id) {
                self.claimed_while_recording.insert(id, delivery);
                continue;
            }
            let held =
                self.members.contains_key(&id) || self.buffer.iter().any(|d| d.delivery_id == id);
            if !held {
                self.buffer.push(delivery);
            }
        }
        self.send_buffered(ctx);
        self.schedule_wake(page.next_due_at_ms, ctx);
        if std::mem::take(&mut self.fetch_again) {
            self.pump(ctx);
        }
    }

    /// Sends what is buffered while request slots are free: deliveries one by one, or
    /// full batches, or a partial batch whose oldest delivery has waited `batch_wait`;
    /// each request only when a probe or the rate limit lets it go. A timer is set for
    /// the next one that waits.
    fn send_buffered(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.send_timer.take() {
            ctx.cancel_future(timer);
        }
        let slots = self.health.slots(self.settings.max_in_flight);
        if self.paused || self.draining.is_some() || self.rechecking {
            return;
        }
        if self.health.probing() {
            self.expire_waiting(ctx);
        }
        while self.in_flight.len() < slots && !self.buffer.is_empty() {
            let now = now_ms();
            let picked = match self.next_request(now) {
                Ok(picked) => picked,
                Err(at_ms) => {
                    self.send_later(at_ms, ctx);
                    break;
                }
            };
            if let Err(at_ms) = self.health.may_start(now) {
                self.send_later(at_ms, ctx);
                break;
            }
            if let Some(pace) = self.pace.as_mut() {
                if let Err(at) = pace.take(Instant::now()) {
                    let wait = at.saturating_duration_since(Instant::now());
                    self.send_later(now + wait.as_millis() as i64 + 1, ctx);
                    break;
                }
            }
            let mut request = Vec::with_capacity(picked.len());
            for i in picked.into_iter().rev() {
                request.push(self.buffer.remove(i));
            }
            request.reverse();
            self.start_request(request, ctx);
        }
    }

    /// While the receiver is probed, deliveries wait for it without requests of their
    /// own; those whose retry window has ended meanwhile are dead-lettered. (The window
    /// of one never attempted counts from when it became due: it was held back.)
    fn expire_waiting(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        let window = i64::try_from(self.retry_window().as_millis()).unwrap_or(i64::MAX);
        let (expired, waiting): (Vec<DueDelivery>, Vec<DueDelivery>) =
            std::mem::take(&mut self.buffer).into_iter().partition(|d| {
                let start = d.first_attempt_at_ms.unwrap_or(d.due_at_ms);
                start.saturating_add(window) <= now
            });
        self.buffer = waiting;
        for delivery in expired {
            let reason = format!(
                "retry window of {} s over after {} attempts, while the destination was failing; last error: {}",
                self.settings.retry_window_s,
                delivery.attempts,
                self.health.last_error().unwrap_or("none")
            );
            let outcome = self.unsent(&delivery, reason);
            self.finish_attempt(delivery, outcome, ctx);
        }
    }

    /// The buffered deliveries the next request carries (their places in the buffer), or
    /// when a partial batch is to go.
    fn next_request(&self, now: i64) -> Result<Vec<usize>, i64> {
        if !self.target.batches(&self.buffer[0]) {
            return Ok(vec![0]);
        }
        let batchable: Vec<usize> = (0..self.buffer.len())
            .filter(|i| self.target.batches(&self.buffer[*i]))
            .take(self.target.batch_size)
            .collect();
        let oldest = self.buffer[batchable[0]].due_at_ms;
        let due = oldest.saturating_add(self.target.batch_wait.as_millis() as i64);
        if batchable.len() < self.target.batch_size && now < due {
            return Err(due);
        }
        Ok(batchable)
    }

    fn send_later(&mut self, at_ms: i64, ctx: &mut Context<Self>) {
        let delay = Duration::from_millis(at_ms.saturating_sub(now_ms()).max(0) as u64);
        self.send_timer = Some(ctx.run_later(delay, |actor, ctx| {
            actor.send_timer = None;
            actor.send_buffered(ctx);
        }));
    }

    /// Sets the timer for the next delivery not yet due (or the idle poll).
    fn schedule_wake(&mut self, next_due_at_ms: Option<i64>, ctx: &mut Context<Self>) {
        if let Some(handle) = self.wake.take() {
            ctx.cancel_future(handle);
        }
        let delay = next_due_at_ms
            .map(|at| Duration::from_millis(at.saturating_sub(now_ms()).max(0) as u64))
            .map_or_else(idle_poll, |d| d.min(idle_poll()))
            .min(self.idle_limit());
        self.wake = Some(ctx.run_later(delay, |actor, ctx| {
            actor.wake = None;
            actor.pump(ctx);
        }));
    }

    /// Sends one request carrying `deliveries` to every URL still worth trying for one
    /// of them; each delivery's outcome is then decided and recorded on its own.
    fn start_request(&mut self, deliveries: Vec<DueDelivery>, ctx: &mut Context<Self>) {
        let built = build(&self.target, &deliveries, now_ms() / 1000);
        let mut carried = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match built
                .failed
                .iter()
                .find(|(id, _)| *id == delivery.delivery_id)
            {
                // Its body cannot be made: no retry makes it (until a reload changes the
                // mapping and the dead letter is replayed).
                Some((_, why)) => {
                    let outcome = self.unsent(&delivery, why.clone());
                    self.finish_attempt(delivery, outcome, ctx);
                }
                None => carried.push(delivery),
            }
        }
        let Some(request) = built.request else {
            return;
        };
        let client = self
            .client
            .get_or_insert_with(|| {
                let timeout = Duration::from_millis(self.settings.timeout_ms);
                let connections = self.settings.max_in_flight * self.target.urls.len().max(1);
                build_client(Arc::clone(&self.tls), timeout, connections)
            })
            .clone();
        let requests = self
            .target
            .urls
            .iter()
            .filter(|url| !self.health.gone.contains(&url.url))
            .filter(|url| carried.iter().any(|d| !d.given_up_urls.contains(&url.url)))
            .map(|url| {
                send(
                    client.clone(),
                    url.clone(),
                    request.clone(),
                    self.settings.timeout_ms,
                )
            })
            .collect::<Vec<_>>();
        let key = carried[0].delivery_id;
        for d in &carried {
            self.members.insert(d.delivery_id, key);
        }
        let attempt = ctx.spawn(join_all(requests).into_actor(self).map(
            move |results, actor, ctx| {
                actor.in_flight.remove(&key);
                actor.count_requests(&results);
                actor.learn_from(&results, ctx);
                for delivery in carried {
                    actor.members.remove(&delivery.delivery_id);
                    let outcome = actor.conclude(&delivery, &results);
                    actor.finish_attempt(delivery, outcome, ctx);
                }
                actor.send_buffered(ctx);
                actor.pump(ctx);
            },
        ));
        self.in_flight.insert(key, attempt);
    }

    /// Reads what is stored about the receiver (disabled, URLs gone, failing since);
    /// sending starts only then.
    fn load_health(&mut self, ctx: &mut Context<Self>) {
        let controls = self.store.destination_controls();
        ctx.spawn(
            controls
                .into_actor(self)
                .map(|controls, actor, ctx| match controls {
                    Ok(list) => {
                        let mine = list.iter().find(|c| {
                            c.source == actor.target.source
                                && c.destination == actor.target.destination
                        });
                        actor.health = ReceiverHealth::from_control(mine);
                        actor.health_loaded = true;
                        if let Some((reason, _)) = &actor.health.disabled {
                            log::warn!(
                                "delivery {}: disabled ({reason}); resume it to send again",
                                actor.name()
                            );
                        }
                        actor.show_health();
                        actor.pump(ctx);
                    }
                    Err(e) => {
                        log::warn!("delivery {}: cannot read its state yet: {e}", actor.name());
                        ctx.run_later(STORE_RETRY, |actor, ctx| actor.load_health(ctx));
                    }
                }),
        );
    }

    /// Feeds an attempt's answers to the receiver's health and carries out what it says.
    fn learn_from(&mut self, results: &[UrlResult], ctx: &mut Context<Self>) {
        if results.is_empty() {
            return;
        }
        let summary = AttemptSummary {
            at_ms: results
                .iter()
                .map(|r| r.record.attempted_at_ms)
                .min()
                .unwrap_or_else(now_ms),
            ended_at_ms: now_ms(),
            succeeded: results.iter().any(|r| r.outcome == UrlOutcome::Success),
            gone: results
                .iter()
                .filter(|r| r.outcome == UrlOutcome::Gone)
                .map(|r| r.record.url.clone())
                .collect(),
            retry_after: results.iter().filter_map(|r| r.retry_after).max(),
            error: results.iter().rev().find_map(|r| r.record.error.clone()),
        };
        let urls: Vec<String> = self.target.urls.iter().map(|u| u.url.clone()).collect();
        let was_probing = self.health.probing();
        let backoff = (
            Duration::from_millis(self.settings.backoff_initial_ms),
            Duration::from_millis(self.settings.backoff_max_ms),
        );
        let changes = self.health.observe(
            &summary,
            &urls,
            self.target.disable_after,
            backoff,
            &mut rand::rng(),
        );
        if self.health.probing() && !was_probing {
            log::warn!(
                "delivery {}: failing since {} ({}); probing with one request at a time",
                self.name(),
                self.health
                    .failing_since_ms()
                    .map_or_else(String::new, crate::clock::iso),
                summary.error.as_deref().unwrap_or("unknown")
            );
        }
        for change in changes {
            match change {
                HealthChange::Store(change) => self.store_change(change, ctx),
                HealthChange::Notify(notice) => {
                    if matches!(notice, crate::delivery::receiver::Notice::Recovered { .. }) {
                        log::info!(
                            "delivery {}: recovered; full concurrency again",
                            self.name()
                        );
                    }
                    self.notify(Operational::Health(notice));
                }
            }
        }
        self.show_health();
    }

    /// Keeps a change of the receiver's health in the store (and says so in the log).
    fn store_change(&mut self, change: ControlChange, ctx: &mut Context<Self>) {
        let name = self.name();
        match &change {
            ControlChange::UrlGone { url } => {
                log::warn!(
                    "delivery {name}: {} answered 410 Gone; it is not tried again until the destination is resumed or the configuration reloaded",
                    crate::redact::url(url)
                );
                self.metrics
                    .urls_gone
                    .with_label_values(&[&self.target.source, &self.target.destination])
                    .inc();
            }
            ControlChange::Disabled { reason, .. } => {
                log::warn!(
                    "delivery {name}: disabled: {reason}; its deliveries wait until it is resumed"
                );
            }
            _ => {}
        }
        let stored = self.store.change_control(
            &self.target.source,
            &self.target.destination,
            change,
            now_ms(),
        );
        ctx.spawn(stored.into_actor(self).map(|result, actor, _ctx| {
            if let Err(e) = result {
                log::warn!("delivery {}: its state was not stored: {e}", actor.name());
            }
        }));
    }

    fn notify(&self, what: Operational) {
        if let Some(notifier) = &self.notifier {
            let notice = Notify {
                source: self.target.source.clone(),
                destination: self.target.destination.clone(),
                what,
            };
            if notifier.try_send(notice).is_err() {
                log::warn!(
                    "delivery {}: notifier busy; a notification is lost",
                    self.name()
                );
            }
        }
    }

    /// Counts a dead letter; the period's count is reported when it ends.
    fn note_dead(&mut self, message_id: &str, reason: &str, ctx: &mut Context<Self>) {
        if self.dead.count == 0 {
            ctx.run_later(DEAD_LETTER_PERIOD, |actor, _ctx| actor.report_dead());
        }
        self.dead.add(message_id, reason, now_ms());
    }

    fn report_dead(&mut self) {
        let dead = std::mem::take(&mut self.dead);
        if dead.count > 0 {
            self.notify(Operational::Dead(dead));
        }
    }

    /// The receiver's health in the metrics.
    fn show_health(&self) {
        let labels = [
            self.target.source.as_str(),
            self.target.destination.as_str(),
        ];
        self.metrics
            .destination_disabled
            .with_label_values(&labels)
            .set(i64::from(self.health.disabled.is_some()));
        self.metrics
            .destination_probing
            .with_label_values(&labels)
            .set(i64::from(self.health.probing()));
    }

    fn retry_window(&self) -> Duration {
        Duration::from_secs(self.settings.retry_window_s)
    }

    /// The outcome of a delivery that could not be sent at all.
    fn unsent(&self, delivery: &DueDelivery, reason: String) -> AttemptOutcome {
        let now = now_ms();
        AttemptOutcome {
            delivery_id: delivery.delivery_id,
            claimer: self.claimer.clone(),
            now_ms: now,
            first_attempt_at_ms: delivery.first_attempt_at_ms.unwrap_or(now),
            attempts: Vec::new(),
            update: DeliveryUpdate::Dead { reason },
        }
    }

    /// Counts one attempt's requests in the metrics.
    fn count_requests(&self, results: &[UrlResult]) {
        for result in results {
            self.series.attempt(
                result.record.status,
                result.record.latency_ms as f64 / 1000.0,
            );
        }
    }

    /// One delivery's outcome of an attempt: the decision, and the requests to record.
    fn conclude(&self, delivery: &DueDelivery, results: &[UrlResult]) -> AttemptOutcome {
        let verdicts: Vec<UrlVerdict> = results
            .iter()
            .map(|r| UrlVerdict {
                url: r.record.url.clone(),
                outcome: r.outcome.clone(),
                retry_after: r.retry_after,
                error: r.record.error.clone(),
            })
            .collect();
        let policy = RetryPolicy {
            backoff_initial: Duration::from_millis(self.settings.backoff_initial_ms),
            backoff_max: Duration::from_millis(self.settings.backoff_max_ms),
            window: self.retry_window(),
        };
        let now = now_ms();
        let first_attempt_at_ms = delivery
            .first_attempt_at_ms
            .or_else(|| results.iter().map(|r| r.record.attempted_at_ms).min())
            .unwrap_or(now);
        let history = History {
            attempts: delivery.attempts,
            first_attempt_at_ms,
            given_up_urls: &delivery.given_up_urls,
        };
        let urls = self
            .health
            .live_urls(self.target.urls.iter().map(|u| u.url.as_str()));
        let update = decide(&policy, &history, &urls, &verdicts, now, &mut rand::rng());
        AttemptOutcome {
            delivery_id: delivery.delivery_id,
            claimer: self.claimer.clone(),
            now_ms: now,
            first_attempt_at_ms,
            // Attempt records are history for people: URLs kept with their credentials and
            // query values redacted (the decision above used them whole).
            attempts: results
                .iter()
                .map(|r| AttemptRecord {
                    url: crate::redact::url(&r.record.url),
                    ..r.record.clone()
                })
                .collect(),
            update,
        }
    }

    /// Commits the attempt; only then does the delivery leave the in-flight set.
    fn finish_attempt(
        &mut self,
        delivery: DueDelivery,
        outcome: AttemptOutcome,
        ctx: &mut Context<Self>,
    ) {
        // Called in the log macros' arguments, which are evaluated only for a line that is
        // logged (most deliveries end delivered, at debug level).
        let name = || self.name();
        // Chosen by the client: escaped so that it cannot forge log lines.
        let message_id = || crate::redact::log_text(&delivery.message_id, 200);
        match &outcome.update {
            DeliveryUpdate::Delivered => {
                log::debug!("delivery {}: {} delivered", name(), message_id());
            }
            DeliveryUpdate::RetryAt { at_ms, .. } => log::info!(
                "delivery {}: {} attempt {} failed ({}), retry in {} ms",
                name(),
                message_id(),
                delivery.attempts + 1,
                outcome
                    .attempts
                    .iter()
                    .filter_map(|a| a.error.as_deref())
                    .collect::<Vec<_>>()
                    .join("; "),
                at_ms - now_ms()
            ),
            DeliveryUpdate::Dead { reason } => {
                log::warn!(
                    "delivery {}: {} dead-lettered: {reason}",
                    name(),
                    message_id()
                );
            }
        }
        // The request is done; the delivery stays claimed until recorded.
        self.record(delivery, outcome, ctx);
    }

    /// Commits an attempt's outcome; only then does its delivery leave the actor.
    /// An outcome the store cannot take is held and recorded later: the delivery is not
    /// sent again meanwhile.
    fn record(&mut self, delivery: DueDelivery, outcome: AttemptOutcome, ctx: &mut Context<Self>) {
        // Counted once recorded: delivered or dead; a retry is not an end.
        let finished = match &outcome.update {
            DeliveryUpdate::Delivered => Some(true),
            DeliveryUpdate::Dead { .. } => Some(false),
            DeliveryUpdate::RetryAt { .. } => None,
        };
        let dead_reason = match &outcome.update {
            DeliveryUpdate::Dead { reason } => Some(reason.clone()),
            _ => None,
        };
        let record = self.store.record_attempt(outcome.clone());
        let id = delivery.delivery_id;
        let attempts_after = delivery.attempts + 1;
        let recording = ctx.spawn(record.into_actor(self).map(move |result, actor, ctx| {
            match result {
                Ok(()) => {
                    actor.recording.remove(&id);
                    // Claimed again after this commit (it counts the attempt just
                    // recorded): due now. Claimed before it (the claim had run out):
                    // stale, left to lapse.
                    if let Some(again) = actor.claimed_while_recording.remove(&id) {
                        if again.attempts == attempts_after {
                            actor.buffer.push(again);
                            actor.send_buffered(ctx);
                        }
                    }
                    actor.tell_drained();
                    if let Some(reason) = &dead_reason {
                        actor.note_dead(&delivery.message_id, reason, ctx);
                    }
                    if let Some(delivered) = finished {
                        actor.series.finished(delivered);
                    }
                    if actor.unrecorded.is_empty() {
                        actor.pump(ctx);
                    }
                }
                Err(e) if !matches!(e, StoreError::Full | StoreError::Unavailable(_)) => {
                    // Not a lack of space or access: fail, and let the supervisor start
                    // over from the store (the attempt may be made again).
                    log::error!("delivery {}: cannot record an attempt: {e}", actor.name());
                    ctx.stop();
                }
                Err(e) => {
                    if actor.unrecorded.is_empty() {
                        log::error!(
                            "delivery {}: cannot record attempts ({e}); sending stops until the store can write again",
                            actor.name()
                        );
                        ctx.run_later(STORE_RETRY, |actor, ctx| actor.record_held(ctx));
                    }
                    actor.unrecorded.push((delivery, outcome));
                }
            }
        }));
        self.recording.insert(id, recording);
    }

    /// Tries again to record the outcomes the store could not take.
    fn record_held(&mut self, ctx: &mut Context<Self>) {
        let held = std::mem::take(&mut self.unrecorded);
        if held.is_empty() {
            return;
        }
        if !self.store.health().is_writable() {
            self.unrecorded = held;
            ctx.run_later(STORE_RETRY, |actor, ctx| actor.record_held(ctx));
            return;
        }
        log::info!(
            "delivery {}: recording {} held attempt(s)",
            self.name(),
            held.len()
        );
        for (delivery, outcome) in held {
            self.record(delivery, outcome, ctx);
        }
    }
}

impl DeliveryActor {
    /// When draining and nothing is in flight any more, says so to whoever waits.
    fn tell_drained(&mut self) {
        if self.in_flight.is_empty() && self.recording.is_empty() {
            if let Some(waiters) = self.draining.as_mut() {
                for waiter in waiters.drain(..) {
                    let _ = waiter.send(());
                }
            }
        }
    }
}

/// Pauses or resumes sending. In-flight attempts finish either way.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetPaused(pub bool);

/// Shutting down: start nothing new; answers once no attempt is in flight.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Drain;

/// The destination's configuration or the delivery settings changed (a reload).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Reconfigure {
    pub target: Arc<Target>,
    pub settings: DeliveryConfig,
    pub tls: Arc<rustls::ClientConfig>,
}

/// This instance's lease on the destination changed epoch (it was lost and taken back).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetLease(pub Lease);

/// The destination was removed or disabled: stop for good (its supervisor lets it go
/// once the router has dropped its address). Its pending deliveries stay in the store.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Retire;

impl Handler<SetPaused> for DeliveryActor {
    type Result = ();

    fn handle(&mut self, msg: SetPaused, ctx: &mut Context<Self>) {
        self.paused = msg.0;
        if !msg.0 {
            // A resume also enables a destination disabled for its failures (the store
            // was changed first), with every URL tried again.
            self.health.resume();
            self.show_health();
        }
        log::info!(
            "delivery {}: {}",
            self.name(),
            if msg.0 { "paused" } else { "resumed" }
        );
        self.pump(ctx);
    }
}

impl Handler<Drain> for DeliveryActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Drain, _ctx: &mut Context<Self>) -> Self::Result {
        let (done, drained) = tokio::sync::oneshot::channel();
        self.draining.get_or_insert_with(Vec::new).push(done);
        self.tell_drained();
        Box::pin(async move {
            let _ = drained.await;
        })
    }
}

impl Handler<Reconfigure> for DeliveryActor {
    type Result = ();

    fn handle(&mut self, msg: Reconfigure, ctx: &mut Context<Self>) {
        if msg.target.rate_limit_per_s != self.target.rate_limit_per_s {
            self.pace = Pace::new(msg.target.rate_limit_per_s);
        }
        self.target = msg.target;
        self.settings = msg.settings;
        // URLs gone are tried again after a reload (the store was changed by the reload).
        self.health.reset_gone();
        self.show_health();
        self.tls = msg.tls;
        // In-flight requests keep the old client; new ones use the new settings.
        self.client = None;
        log::info!("delivery {}: reconfigured", self.name());
        self.pump(ctx);
    }
}

impl Handler<SetLease> for DeliveryActor {
    type Result = ();

    fn handle(&mut self, msg: SetLease, ctx: &mut Context<Self>) {
        self.lease = msg.0;
        self.pump(ctx);
    }
}

impl Handler<Retire> for DeliveryActor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        log::info!(
            "delivery {}: retired; its pending deliveries wait in the store",
            self.name()
        );
        ctx.stop();
    }
}

impl Actor for DeliveryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        log::debug!("delivery {}: started", self.name());
        if !self.health_loaded {
            self.load_health(ctx);
        }
        if self.dead.count > 0 {
            // The period's timer died with the life before.
            ctx.run_later(DEAD_LETTER_PERIOD, |actor, _ctx| actor.report_dead());
        }
        if std::mem::take(&mut self.restarted) {
            // The attempts of the life before died with it: its claims end, and this
            // life claims under a new name.
            let claims_running = Arc::clone(&self.claims_running);
            let (store, last_claimer) = (Arc::clone(&self.store), self.claimer.clone());
            let release = async move {
                // Every claim of the last life has finished before its claims end (a
                // store may start a statement as soon as it is asked for it).
                drop(claims_running.write().await);
                store.release_claims(&last_claimer).await
            };
            self.claimer = claimer_name(&self.lease);
            ctx.spawn(release.into_actor(self).map(|released, actor, ctx| {
                if let Err(e) = released {
                    log::warn!(
                        "delivery {}: earlier claims not released ({e}); they run out",
                        actor.name()
                    );
                }
                ctx.run_later(RESTART_PAUSE, |actor, ctx| actor.pump(ctx));
            }));
        } else {
            self.pump(ctx);
        }
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        // Retired or shut down: what was counted is told now.
        self.report_dead();
    }
}

impl Supervised for DeliveryActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        log::warn!(
            "delivery {}: restarting; pending work reloads from the store",
            self.name()
        );
        self.metrics
            .actor_restarts
            .with_label_values(&["delivery"])
            .inc();
        // The old context's futures are gone: whatever was in flight is still pending in
        // the store and will be attempted again.
        self.in_flight.clear();
        self.members.clear();
        self.buffer.clear();
        self.send_timer = None;
        self.recording.clear();
        self.restarted = true;
        self.fetching = false;
        self.cancelled_while_claiming.clear();
        self.recheck_after_claim = false;
        self.rechecking = false;
        self.recheck_running = false;
        self.recheck_again = false;
        self.fetch_again = false;
        self.wake = None;
        self.client = None;
        // Held outcomes are lost with the restart; their deliveries are pending and are
        // attempted again (at least once).
        self.unrecorded.clear();
    }
}

impl Handler<WorkAvailable> for DeliveryActor {
    type Result = ();

    fn handle(&mut self, _: WorkAvailable, ctx: &mut Context<Self>) {
        // A signal starts the idle clock over (the router retires only actors idle since).
        self.idle_since = None;
        self.idle_reported = false;
        self.pump(ctx);
    }
}

impl Handler<Cancel> for DeliveryActor {
    type Result = ();

    fn handle(&mut self, msg: Cancel, ctx: &mut Context<Self>) {
        self.drop_purged(msg.delivery_ids, ctx);
    }
}

impl Handler<Recheck> for DeliveryActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Recheck, ctx: &mut Context<Self>) -> Self::Result {
        if self.fetching || self.recheck_running {
            self.recheck_when_free(ctx);
            return Box::pin(fut::ready(()));
        }
        self.recheck_held()
    }
}

impl DeliveryActor {
    /// Stops sending, and checks what is held once no claim or check is running: a
    /// claim's answer may hold purged deliveries too, and a check running may have read
    /// the store before the signals now missed.
    fn recheck_when_free(&mut self, ctx: &mut Context<Self>) {
        self.rechecking = true;
        if self.fetching {
            self.recheck_after_claim = true;
        } else if self.recheck_running {
            self.recheck_again = true;
        } else {
            let recheck = self.recheck_held();
            ctx.spawn(recheck);
        }
    }

    /// After a check has answered: another if one was asked for meanwhile, else sending
    /// resumes.
    fn recheck_done(&mut self, ctx: &mut Context<Self>) {
        self.recheck_running = false;
        if std::mem::take(&mut self.recheck_again) {
            self.recheck_when_free(ctx);
        } else {
            self.rechecking = false;
            self.send_buffered(ctx);
        }
    }

    /// Checks what is held (buffered or on the wire) against the store, sending nothing
    /// until the store has said, and drops what was purged.
    fn recheck_held(&mut self) -> ResponseActFuture<Self, ()> {
        self.rechecking = true;
        self.recheck_running = true;
        // Not those being recorded: finished by this actor, no longer pending.
        let held: Vec<i64> = self
            .buffer
            .iter()
            .map(|d| d.delivery_id)
            .chain(self.members.keys().copied())
            .collect();
        let checked = self.store.still_pending(held.clone());
        Box::pin(checked.into_actor(self).map(move |answer, actor, ctx| {
            let still: HashSet<i64> = match answer {
                Ok(still) => still.into_iter().collect(),
                Err(e) => {
                    log::warn!(
                        "delivery {}: cannot check its deliveries against purges ({e})",
                        actor.name()
                    );
                    actor.recheck_done(ctx);
                    return;
                }
            };
            // Gone from the store and still held: an attempt that ended meanwhile was
            // recorded, not purged.
            let purged: Vec<i64> = held
                .into_iter()
                .filter(|id| !still.contains(id))
                .filter(|id| {
                    actor.members.contains_key(id)
                        || actor.buffer.iter().any(|d| d.delivery_id == *id)
                })
                .collect();
            if !purged.is_empty() {
                log::info!(
                    "delivery {}: {} delivery(ies) purged while signals were missed; dropped",
                    actor.name(),
                    purged.len()
                );
                actor.drop_purged(purged, ctx);
            }
            actor.recheck_done(ctx);
        }))
    }

    /// Stops attempting these deliveries: a regulation purged them from the store.
    fn drop_purged(&mut self, delivery_ids: Vec<i64>, ctx: &mut Context<Self>) {
        for id in delivery_ids {
            // A request carrying it is cut whole; its other deliveries stay claimed and
            // are sent again once their claim runs out.
            if let Some(key) = self.members.remove(&id) {
                self.members.retain(|_, k| *k != key);
                if let Some(attempt) = self.in_flight.remove(&key) {
                    ctx.cancel_future(attempt);
                }
            }
            if let Some(recording) = self.recording.remove(&id) {
                ctx.cancel_future(recording);
            }
            self.claimed_while_recording.remove(&id);
            self.buffer.retain(|d| d.delivery_id != id);
            if self.fetching {
                self.cancelled_while_claiming.insert(id);
            }
            log::debug!("delivery {id} cancelled");
        }
        self.pump(ctx);
    }
}

impl Handler<Fail> for DeliveryActor {
    type Result = ();

    fn handle(&mut self, _: Fail, ctx: &mut Context<Self>) {
        log::warn!("delivery {}: failing on request", self.name());
        ctx.stop();
    }
}

/// [`IDLE_POLL`], give or take a fifth.
fn idle_poll() -> Duration {
    use rand::Rng;
    IDLE_POLL.mul_f64(rand::rng().random_range(0.8..1.2))
}

/// Rounds of requests claimed ahead of free slots: [`AHEAD_ROUNDS`] for one delivery per
/// request at full speed; none when batching or rate limited (those buffer on their own
/// terms).
fn rounds_ahead(target: &Target) -> usize {
    if target.batch_size > 1 || target.rate_limit_per_s > 0 {
        return 0;
    }
    AHEAD_ROUNDS
}

/// How long a claim holds: longer than any attempt can take (a wait in the buffer behind
/// [`rounds_ahead`] requests, or for its batch, then every URL's request and its response
/// body, each bounded by the timeout, then the record), so that a claim never runs out
/// under a live attempt. The rounds ahead lengthen it at little cost: normal work never
/// waits for a claim to end (a restarted actor releases its claims, a lease taken over
/// voids them), and a batch cut by a purge, whose other deliveries do wait, has none.
pub fn claim_duration(settings: &DeliveryConfig, target: &Target) -> Duration {
    let timeout = Duration::from_millis(settings.timeout_ms);
    let waiting = timeout * 2 * rounds_ahead(target) as u32 + target.batch_wait;
    waiting + timeout * 3 + Duration::from_secs(5)
}

fn claimer_name(lease: &Lease) -> String {
    format!(
        "{}/{}/{}#{}",
        lease.instance,
        lease.source,
        lease.destination,
        INCARNATIONS.fetch_add(1, Ordering::Relaxed)
    )
}
