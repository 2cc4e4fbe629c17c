//! The admin API's request and response bodies. These types are the API: handlers and
//! the console build them, and `/openapi.json` describes them.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::clock::iso;
use crate::store::{
    DeadLetter, DeliveryStatus, DestinationStats, InstanceRecord, NotificationProgress,
    RegulationType, Suppression,
};

/// `POST /admin/v1/regulations`, as Segment's Public API takes it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegulationRequest {
    pub regulation_type: RegulationTypeName,
    pub subject_type: SubjectType,
    /// The `userId`s whose data goes (1 to 5,000).
    #[schema(schema_with = subject_ids_schema)]
    pub subject_ids: Vec<String>,
    /// The sources it covers (configured ones; another is 404); absent or null: every
    /// source.
    #[serde(default)]
    #[schema(min_items = 1)]
    pub sources: Option<Vec<String>>,
}

fn subject_ids_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1)),
        )
        .min_items(Some(1))
        .max_items(Some(super::MAX_SUBJECTS))
        .description(Some("The `userId`s whose data goes (1 to 5,000)."))
        .build()
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RegulationTypeName {
    /// Purge the users' data and notify the webhooks.
    DeleteOnly,
    /// As `DELETE_ONLY`, and drop the users' later events at ingest.
    SuppressWithDelete,
}

impl From<RegulationTypeName> for RegulationType {
    fn from(name: RegulationTypeName) -> RegulationType {
        match name {
            RegulationTypeName::DeleteOnly => RegulationType::DeleteOnly,
            RegulationTypeName::SuppressWithDelete => RegulationType::SuppressWithDelete,
        }
    }
}

impl From<RegulationType> for RegulationTypeName {
    fn from(kind: RegulationType) -> RegulationTypeName {
        match kind {
            RegulationType::DeleteOnly => RegulationTypeName::DeleteOnly,
            RegulationType::SuppressWithDelete => RegulationTypeName::SuppressWithDelete,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
pub enum SubjectType {
    #[serde(rename = "USER_ID")]
    UserId,
}

/// The answer to a regulation request: it is stored (and applied, unless that took long).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegulationCreated {
    pub regulation_id: String,
}

/// `GET /admin/v1/regulations`: the latest regulations, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegulationList {
    pub regulations: Vec<RegulationStatus>,
}

/// A regulation and how far its `delete` notifications have got.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegulationStatus {
    pub regulation_id: String,
    pub regulation_type: RegulationTypeName,
    pub subject_type: SubjectType,
    pub subject_count: usize,
    /// The sources it covers; null: every source.
    pub sources: Option<Vec<String>>,
    pub status: RegulationState,
    pub created_at: String,
    pub applied_at: Option<String>,
    /// Undelivered deliveries (pending or dead-lettered) it removed.
    pub purged_deliveries: u64,
    pub notifications: Vec<NotificationStatus>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RegulationState {
    /// Stored, not applied yet.
    Pending,
    /// Applied; some notifications are still being delivered.
    Notifying,
    /// Applied and every notification delivered.
    Done,
    /// Applied; some notifications were dead-lettered.
    DoneWithFailures,
}

/// One destination's share of a regulation's notifications.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationStatus {
    pub source: String,
    pub destination: String,
    pub total: u64,
    pub delivered: u64,
    pub pending: u64,
    pub dead: u64,
}

impl From<&NotificationProgress> for NotificationStatus {
    fn from(n: &NotificationProgress) -> NotificationStatus {
        NotificationStatus {
            source: n.source.clone(),
            destination: n.destination.clone(),
            total: n.total,
            delivered: n.delivered,
            pending: n.pending,
            dead: n.dead,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SuppressionList {
    pub suppressions: Vec<SuppressionView>,
}

/// A user whose events a source drops at ingest.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SuppressionView {
    pub source: String,
    pub user_id: String,
    pub regulation_id: String,
    pub created_at: String,
}

impl From<&Suppression> for SuppressionView {
    fn from(s: &Suppression) -> SuppressionView {
        SuppressionView {
            source: s.source.clone(),
            user_id: s.user_id.clone(),
            regulation_id: s.regulation_id.clone(),
            created_at: iso(s.created_at_ms),
        }
    }
}

/// `{"success": true}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Success {
    pub success: bool,
}

/// Every stored event with one `messageId` (one per source that has it).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    pub message_id: String,
    pub events: Vec<MessageEvent>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageEvent {
    pub source: String,
    /// The event's type: `track`, `identify`, …, or `delete`.
    #[serde(rename = "type")]
    pub event_type: String,
    pub received_at: String,
    pub deliveries: Vec<DeliveryView>,
}

/// One delivery of an event to one destination, with every attempt.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    pub delivery_id: i64,
    pub destination: String,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    pub attempt_count: u32,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub attempts: Vec<AttemptView>,
}

/// One request of a delivery to one URL.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    pub at: String,
    /// The URL, its credentials and query redacted.
    pub url: String,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// Why no answer came, or why the answer failed.
    pub error: Option<String>,
    pub latency_ms: u64,
    /// The first 1 KB of the answer's body.
    pub response_body: Option<String>,
}

impl From<&DeliveryStatus> for DeliveryView {
    fn from(d: &DeliveryStatus) -> DeliveryView {
        DeliveryView {
            delivery_id: d.delivery_id,
            destination: d.destination.clone(),
            state: d.state.clone(),
            attempt_count: d.attempt_count,
            next_attempt_at: (d.state == "pending").then(|| iso(d.next_attempt_at_ms)),
            last_error: d.last_error.clone(),
            attempts: d
                .attempts
                .iter()
                .map(|a| AttemptView {
                    at: iso(a.attempted_at_ms),
                    url: crate::redact::url(&a.url),
                    status: a.status,
                    error: a.error.clone(),
                    latency_ms: a.latency_ms,
                    response_body: a.response_body.clone(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DestinationList {
    pub destinations: Vec<DestinationView>,
}

/// A configured destination: its queue, health and state.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DestinationView {
    pub source: String,
    pub destination: String,
    pub state: DestinationState,
    /// Pending deliveries.
    pub queue_depth: u64,
    /// Age of the oldest pending event, in seconds.
    pub oldest_pending_age_seconds: Option<f64>,
    pub dead_letters: u64,
    pub attempts_last_hour: u64,
    /// Share of the last hour's attempts that succeeded; null without attempts.
    pub success_rate_last_hour: Option<f64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// Why nothing can be sent, while `blocked`.
    pub blocked_reason: Option<String>,
    /// Why it is `disabled`.
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<String>,
    /// URLs that answered `410 Gone`, redacted: none is tried until a resume or reload.
    pub gone_urls: Vec<String>,
    /// Since when every attempt failed, while it is probed or disabled.
    pub failing_since: Option<String>,
}

impl DestinationView {
    /// What the store's figures say of a destination in `state` at `now_ms`; the
    /// reasons, gone URLs and failure times are left empty.
    pub fn of_stats(s: &DestinationStats, state: DestinationState, now_ms: i64) -> Self {
        DestinationView {
            source: s.source.clone(),
            destination: s.destination.clone(),
            state,
            queue_depth: s.pending,
            oldest_pending_age_seconds: s
                .oldest_pending_received_at_ms
                .map(|t| (now_ms - t).max(0) as f64 / 1000.0),
            dead_letters: s.dead,
            attempts_last_hour: s.attempts_last_hour,
            success_rate_last_hour: (s.attempts_last_hour > 0)
                .then(|| s.successes_last_hour as f64 / s.attempts_last_hour as f64),
            last_error: s.last_error.clone(),
            last_error_at: s.last_error_at_ms.map(iso),
            blocked_reason: None,
            disabled_reason: None,
            disabled_at: None,
            gone_urls: Vec::new(),
            failing_since: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DestinationState {
    /// Delivering.
    Active,
    /// Paused by an operator: events are stored, nothing is sent.
    Paused,
    /// Disabled by the configuration, by failing for `disable_after_s`, or because every
    /// URL is gone.
    Disabled,
    /// Nothing can be sent while the store cannot record it.
    Blocked,
    /// Not in the configuration (removed or renamed) but with deliveries in the store:
    /// they wait until a destination of that name is configured again.
    Orphaned,
}

/// The answer to a pause or a resume.
#[derive(Debug, Serialize, ToSchema)]
pub struct PauseState {
    pub source: String,
    pub destination: String,
    pub state: DestinationState,
}

/// Query of `GET /admin/v1/dead-letters`, read by hand so that each bad filter gets a
/// 400 naming it.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterParams {
    pub source: Option<String>,
    pub destination: Option<String>,
    /// ISO 8601: dead-lettered at or after.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// ISO 8601: dead-lettered before.
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<i64>,
    /// Dead letters a page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterPage {
    pub dead_letters: Vec<DeadLetterView>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterView {
    pub delivery_id: i64,
    pub source: String,
    pub destination: String,
    pub message_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub attempt_count: u32,
    pub last_error: Option<String>,
    pub dead_at: String,
    pub first_attempt_at: Option<String>,
}

impl From<&DeadLetter> for DeadLetterView {
    fn from(l: &DeadLetter) -> DeadLetterView {
        DeadLetterView {
            delivery_id: l.delivery_id,
            source: l.source.clone(),
            destination: l.destination.clone(),
            message_id: l.message_id.clone(),
            event_type: l.event_type.clone(),
            attempt_count: l.attempt_count,
            last_error: l.last_error.clone(),
            dead_at: iso(l.dead_at_ms),
            first_attempt_at: l.first_attempt_at_ms.map(iso),
        }
    }
}

/// `POST /admin/v1/dead-letters/replay`: by ids, or one destination's within a time
/// range.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ReplayRequest {
    Ids(ReplayIds),
    Destination(ReplayDestination),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplayIds {
    /// Deliveries to replay; those not dead-lettered are left alone.
    #[schema(min_items = 1)]
    #[serde(deserialize_with = "integers")]
    pub delivery_ids: Vec<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayDestination {
    pub source: String,
    pub destination: String,
    /// ISO 8601: dead-lettered at or after.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub since: Option<String>,
    /// ISO 8601: dead-lettered before.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub until: Option<String>,
}

/// Integers as JSON Schema counts them: `7` and `7.0` alike.
fn integers<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<i64>, D::Error> {
    let numbers = Vec::<serde_json::Number>::deserialize(deserializer)?;
    numbers
        .iter()
        .map(|n| {
            // Any integer the schema's int64 allows, written as `7` or as `7.0` (one just
            // past the range arrives as a float rounded onto its edge: edges are left out).
            const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
            n.as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < TWO_POW_63)
                        .map(|f| f as i64)
                })
                .ok_or_else(|| serde::de::Error::custom(format!("{n} is not an integer id")))
        })
        .collect()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    /// Dead letters made pending again.
    pub replayed: u64,
    /// With `deliveryIds`: how many of the ids given were not dead letters of a
    /// configured destination (unknown, pending, delivered, or of a destination removed
    /// or renamed) and were left alone.
    #[serde(rename = "notDeadLetters", skip_serializing_if = "Option::is_none")]
    pub not_dead_letters: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceList {
    pub instances: Vec<InstanceView>,
}

/// A webhookd process on this store.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    pub id: String,
    pub address: String,
    pub version: String,
    pub started_at: String,
    pub last_heartbeat: String,
    /// Its heartbeat is recent: its leases hold.
    pub live: bool,
    pub destinations_owned: u64,
    pub config_fingerprint: String,
    /// It runs the same sources, destinations and delivery settings as this one.
    pub same_config: bool,
    /// It is the instance answering.
    #[serde(rename = "self")]
    pub is_self: bool,
}

impl InstanceView {
    pub fn new(i: &InstanceRecord, my_fingerprint: Option<&str>, my_id: &str) -> InstanceView {
        InstanceView {
            id: i.info.id.clone(),
            address: i.info.address.clone(),
            version: i.info.version.clone(),
            started_at: iso(i.info.started_at_ms),
            last_heartbeat: iso(i.heartbeat_at_ms),
            live: i.live,
            destinations_owned: i.destinations_owned,
            config_fingerprint: i.info.config_fingerprint.clone(),
            same_config: my_fingerprint == Some(i.info.config_fingerprint.as_str()),
            is_self: i.info.id == my_id,
        }
    }
}
