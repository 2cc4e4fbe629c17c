//! The data that crosses the store interface.

/// One destination: its source's name and its own.
pub type DestinationKey = (String, String);

/// An accepted event to store, with the destinations it must be delivered to.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub source: String,
    pub message_id: String,
    /// Dedupe: the event is a duplicate if `(source, message_id)` was stored at or after
    /// this time (the start of the dedupe window). `None`: no lookup (webhookd made the
    /// `messageId`, so it cannot repeat).
    pub dedupe_since_ms: Option<i64>,
    pub user_id: Option<String>,
    pub event_type: &'static str,
    /// `receivedAt` in milliseconds since the Unix epoch.
    pub received_at_ms: i64,
    /// The canonical JSON body webhooks receive.
    pub body: String,
    /// Names of the source's enabled destinations: one pending delivery each.
    pub destinations: Vec<String>,
}

impl NewEvent {
    /// Every destination some of `events` go to, each named once.
    pub fn destinations_of(events: &[NewEvent]) -> Vec<String> {
        let mut destinations: Vec<String> = Vec::new();
        for destination in events.iter().flat_map(|e| &e.destinations) {
            if !destinations.contains(destination) {
                destinations.push(destination.clone());
            }
        }
        destinations
    }
}

/// The fate of one appended event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Committed, with this id.
    Stored { event_id: i64 },
    /// The same `(source, messageId)` was stored within the dedupe window: nothing written.
    Duplicate,
    /// The event's user is suppressed in its source: nothing written.
    Suppressed,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub event_id: i64,
    pub source: String,
    pub message_id: String,
    pub user_id: Option<String>,
    pub event_type: String,
    pub received_at_ms: i64,
    pub body: String,
}

/// A pending delivery whose time has come, with what is needed to attempt it.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub delivery_id: i64,
    pub event_id: i64,
    pub message_id: String,
    /// The event's type (`track`, ..., `delete` for a deletion notification).
    pub event_type: String,
    /// The canonical JSON body to send.
    pub body: String,
    /// When it became due (its event arrived, or its retry time came).
    pub due_at_ms: i64,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the first attempt was made; the retry window counts from here.
    pub first_attempt_at_ms: Option<i64>,
    /// URLs given up on for this delivery (they failed for good), by value: a URL added
    /// or moved by a reload is tried, one given up on stays so.
    pub given_up_urls: Vec<String>,
}

/// A delivery actor's request for due work of its destination: the deliveries are
/// claimed for it until `claim_until_ms`, and no one else may attempt them meanwhile
/// (unless the destination's lease passes on: claims under an older epoch are void).
#[derive(Debug, Clone)]
pub struct Claim {
    pub source: String,
    pub destination: String,
    /// Who claims: one delivery actor of one instance (a new one after each restart).
    pub claimer: String,
    /// The claimer's instance must hold this lease on the destination, still live.
    pub lease: Lease,
    pub now_ms: i64,
    /// Longer than any attempt can take, so that a claim never ends under a live one.
    pub claim_until_ms: i64,
    pub limit: usize,
}

/// The due deliveries of one destination, and when the next one not yet due will be.
#[derive(Debug, Clone, Default)]
pub struct DuePage {
    pub due: Vec<DueDelivery>,
    pub next_due_at_ms: Option<i64>,
}

/// One request to one URL, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub attempted_at_ms: i64,
    pub url: String,
    /// The HTTP status, when a response came.
    pub status: Option<u16>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    pub latency_ms: u64,
    /// The first 1 KB of the response body.
    pub response_body: Option<String>,
}

/// What becomes of a delivery after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryUpdate {
    /// A URL answered 2xx: done.
    Delivered,
    /// Try again at `at_ms`, on every URL not in `given_up_urls`.
    RetryAt {
        at_ms: i64,
        given_up_urls: Vec<String>,
    },
    /// No more tries: the retry window is over or no URL is worth retrying.
    Dead { reason: String },
}

/// One attempt of one delivery: the requests made and what follows.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    pub delivery_id: i64,
    /// The claim it was attempted under: a delivery claimed by someone else since (its
    /// claim ran out) or purged is left as it is, and the outcome dropped.
    pub claimer: String,
    /// When the outcome is recorded.
    pub now_ms: i64,
    pub first_attempt_at_ms: i64,
    pub attempts: Vec<AttemptRecord>,
    pub update: DeliveryUpdate,
}

/// A delivery's state and its attempts, for operators and tests.
#[derive(Debug, Clone)]
pub struct DeliveryStatus {
    pub delivery_id: i64,
    pub destination: String,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    pub attempt_count: u32,
    pub next_attempt_at_ms: i64,
    pub last_error: Option<String>,
    pub attempts: Vec<AttemptRecord>,
}

/// What a deletion request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegulationType {
    /// Purge the users' undelivered events and notify the webhooks.
    DeleteOnly,
    /// As `DeleteOnly`, and drop the users' later events at ingest.
    SuppressWithDelete,
}

impl RegulationType {
    pub fn as_str(self) -> &'static str {
        match self {
            RegulationType::DeleteOnly => "DELETE_ONLY",
            RegulationType::SuppressWithDelete => "SUPPRESS_WITH_DELETE",
        }
    }

    pub fn from_name(name: &str) -> Option<RegulationType> {
        match name {
            "DELETE_ONLY" => Some(RegulationType::DeleteOnly),
            "SUPPRESS_WITH_DELETE" => Some(RegulationType::SuppressWithDelete),
            _ => None,
        }
    }
}

/// A user deletion request, as accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regulation {
    pub id: String,
    pub regulation_type: RegulationType,
    /// The `userId`s to delete.
    pub subject_ids: Vec<String>,
    /// The sources it covers; `None`: all of them.
    pub sources: Option<Vec<String>>,
    pub created_at_ms: i64,
    /// When it was applied (purge, suppression, notifications); `None` until then.
    pub applied_at_ms: Option<i64>,
}

/// How to apply a regulation, resolved against the configuration by the caller.
#[derive(Debug, Clone)]
pub struct RegulationPlan {
    pub regulation_id: String,
    /// The sources whose later events of the subjects are dropped at ingest (empty: none).
    pub suppress_in: Vec<String>,
    /// The `userId`s, each once.
    pub subject_ids: Vec<String>,
    /// The sources whose stored data of the subjects is removed; `None`: every source
    /// in the store, configured or not.
    pub sources: Option<Vec<String>>,
    /// The `delete` notifications to queue, stored as events of type `delete`.
    pub notifications: Vec<Notification>,
    pub now_ms: i64,
}

/// A `delete` notification of one subject in one source, for these destinations.
#[derive(Debug, Clone)]
pub struct Notification {
    pub source: String,
    pub user_id: String,
    pub message_id: String,
    /// The canonical JSON body.
    pub body: String,
    pub destinations: Vec<String>,
}

/// What applying a regulation did.
#[derive(Debug, Clone, Default)]
pub struct RegulationApplied {
    /// Pending deliveries removed: their actors must drop them.
    pub purged: Vec<PurgedDelivery>,
    /// Every delivery removed that had not been delivered (pending or dead-lettered).
    pub undelivered_removed: u64,
    /// Events removed, delivered or not.
    pub events_removed: u64,
}

/// A pending delivery removed by a regulation, for its actor to drop.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PurgedDelivery {
    pub source: String,
    pub destination: String,
    pub delivery_id: i64,
}

/// How far a regulation's notifications have got at one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationProgress {
    pub source: String,
    pub destination: String,
    pub total: u64,
    pub delivered: u64,
    pub pending: u64,
    pub dead: u64,
}

/// A regulation and its progress.
#[derive(Debug, Clone)]
pub struct RegulationProgress {
    pub regulation: Regulation,
    /// Undelivered deliveries (pending or dead-lettered) removed when it was applied.
    pub purged_deliveries: u64,
    pub notifications: Vec<NotificationProgress>,
}

/// A user whose events a source drops at ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    pub source: String,
    pub user_id: String,
    pub regulation_id: String,
    pub created_at_ms: i64,
}

/// One destination's backlog and health, as the store knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationStats {
    pub source: String,
    pub destination: String,
    /// Deliveries waiting (queue depth).
    pub pending: u64,
    pub dead: u64,
    /// `receivedAt` of the oldest pending delivery's event.
    pub oldest_pending_received_at_ms: Option<i64>,
    /// Requests made in the last hour, counted by whole minutes (the last 59 to 60).
    pub attempts_last_hour: u64,
    /// Those answered 2xx.
    pub successes_last_hour: u64,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<i64>,
    pub paused: bool,
}

/// Which dead letters to list: all filters optional, `after_id` pages on.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterQuery {
    pub source: Option<String>,
    pub destination: Option<String>,
    /// Dead-lettered at or after this time.
    pub since_ms: Option<i64>,
    /// Dead-lettered before this time.
    pub until_ms: Option<i64>,
    /// Only deliveries with a larger id (the previous page's last).
    pub after_id: Option<i64>,
    pub limit: usize,
}

/// A dead-lettered delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub delivery_id: i64,
    pub source: String,
    pub destination: String,
    pub message_id: String,
    pub event_type: String,
    pub attempt_count: u32,
    pub last_error: Option<String>,
    pub dead_at_ms: i64,
    pub first_attempt_at_ms: Option<i64>,
}

/// Which dead letters to replay.
#[derive(Debug, Clone)]
pub enum ReplaySelection {
    /// These deliveries, where they are dead letters of one of the `within` destinations
    /// (the configured ones: a replay must not send work where nothing drains it); the
    /// others are left alone.
    Ids {
        ids: Vec<i64>,
        within: Vec<DestinationKey>,
    },
    /// One destination's dead letters, dead-lettered within the optional time range.
    Destination {
        source: String,
        destination: String,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
    },
}

/// What an instance says of itself in the cluster registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    /// New at every start.
    pub id: String,
    /// Where its HTTP API listens.
    pub address: String,
    pub version: String,
    pub started_at_ms: i64,
    /// Sources, destinations and delivery settings, hashed: instances should agree.
    pub config_fingerprint: String,
}

/// An instance as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRecord {
    pub info: InstanceInfo,
    pub heartbeat_at_ms: i64,
    /// Its heartbeat is within the lease: its leases hold.
    pub live: bool,
    pub destinations_owned: u64,
}

/// The right of one instance to drive one destination. It holds while its instance's
/// heartbeat is fresh; `epoch` grows at every change of owner, so that claims made under
/// an older lease are refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease {
    pub source: String,
    pub destination: String,
    pub instance: String,
    pub epoch: i64,
}

/// One instance's heartbeat: it is alive, and wants its fair share of `wanted`.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub instance: InstanceInfo,
    /// The enabled destinations of this instance's configuration.
    pub wanted: Vec<DestinationKey>,
    pub now_ms: i64,
    /// How long a lease holds after its owner's last heartbeat.
    pub lease_ms: i64,
}

/// What a heartbeat found.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatAnswer {
    /// The leases this instance holds now (renewed, or taken because they were free).
    pub owned: Vec<Lease>,
    /// Leases beyond this instance's fair share: drain their actors, then release them
    /// ([`crate::store::Store::release_leases`]), so that other instances take them.
    pub shed: Vec<Lease>,
    /// Every instance the registry knows.
    pub instances: Vec<InstanceRecord>,
}

/// What one instance tells the others through the store (on a shared database).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ClusterSignal {
    /// These destinations have new due work.
    Work(Vec<DestinationKey>),
    /// These deliveries were purged: their owners drop them.
    Cancel(Vec<PurgedDelivery>),
    /// An operator paused or resumed a destination.
    Paused {
        destination: DestinationKey,
        paused: bool,
    },
    /// Never sent by an instance: this instance's listener was cut off and listens again,
    /// so signals of that time may have been missed (cancellations and pauses among them).
    Missed,
}

/// What webhookd decided about a destination from its receiver's answers, kept across
/// restarts and instances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationControl {
    pub source: String,
    pub destination: String,
    /// Disabled (by `disable_after_s`, or every URL gone): nothing is sent until resumed.
    pub disabled_at_ms: Option<i64>,
    pub disabled_reason: Option<String>,
    /// URLs that answered `410 Gone`: not tried again until resumed or reloaded.
    pub gone_urls: Vec<String>,
    /// Since when attempts have failed with no success.
    pub failing_since_ms: Option<i64>,
}

/// A change to a destination's [`DestinationControl`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlChange {
    /// A URL answered `410 Gone`.
    UrlGone {
        url: String,
    },
    /// Attempts have been failing since then (`None`: an attempt succeeded).
    Failing {
        since_ms: Option<i64>,
    },
    Disabled {
        reason: String,
        at_ms: i64,
    },
    /// Resumed by an operator: enabled, no URL gone, no failure remembered.
    Enabled,
    /// A reload: the URLs gone are tried again.
    UrlsReset,
}

/// What to prune: finished work older than these times, looking at `limit` events
/// after `after_id` in one step (so that a step stays short, however much is pending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prune {
    /// Events with a larger id are looked at (the previous step's `next_after`; 0 first).
    pub after_id: i64,
    /// Events received, and deliveries delivered, before this.
    pub delivered_before_ms: i64,
    /// Deliveries dead-lettered before this.
    pub dead_before_ms: i64,
    /// Dedupe entries older than this (the dedupe window's start).
    pub dedupe_before_ms: i64,
    pub limit: usize,
}

/// What one pruning step removed, and where the next one starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub events: u64,
    pub dedupe_entries: u64,
    /// The last event id looked at; `None`: the pass reached events too recent to prune
    /// (start again from 0 later).
    pub next_after: Option<i64>,
    /// How long the removals held what ingest also needs (SQLite's writer; on
    /// PostgreSQL, the step's transaction).
    pub held: std::time::Duration,
}
