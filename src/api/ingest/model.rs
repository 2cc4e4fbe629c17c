//! The ingest API's bodies as `/openapi.json` describes them. Events are read as JSON
//! objects, not into these types: their keys and numbers are kept exactly as the client
//! wrote them, for bodies whose signatures verify (see `segment::canonical`). These
//! types say which fields Segment's Tracking API defines; any other field is kept too.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Fields every event may carry.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub struct Common {
    /// The user's id in your database (a string or a number); this or `anonymousId` is
    /// required.
    user_id: Option<Value>,
    /// An id for a user not yet known (a string or a number); this or `userId` is
    /// required.
    anonymous_id: Option<Value>,
    /// Dictionary of extra information: `ip`, `library`, `page`, …
    context: Option<Map<String, Value>>,
    /// Which destinations get it: `{"All": false, "Webhooks": true}`.
    integrations: Option<Map<String, Value>>,
    /// ISO 8601: when it happened (default: when it arrived).
    #[schema(format = DateTime)]
    timestamp: Option<String>,
    /// ISO 8601: when the client sent it, to correct the client's clock.
    #[schema(format = DateTime)]
    sent_at: Option<String>,
    /// Unique per event: repeats within `server.dedupe_window_s` are not stored again.
    #[schema(min_length = 1)]
    message_id: Option<String>,
    /// The source's write key, when not given by Basic auth.
    write_key: Option<String>,
}

macro_rules! event_body {
    ($name:ident, $doc:literal, { $($(#[$attr:meta])* $field:ident : $ty:ty = $fdoc:literal),* $(,)? }) => {
        #[doc = $doc]
        #[derive(Deserialize, ToSchema)]
        #[allow(dead_code)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            #[serde(flatten)]
            common: Common,
            $(#[doc = $fdoc] $(#[$attr])* $field: $ty,)*
        }
    };
}

event_body!(TrackEvent, "`POST /v1/track`: an action the user took.",
    { #[schema(min_length = 1)] event: String = "The action's name: `Order Completed`.",
      properties: Option<Map<String, Value>> = "Details of the action." });
event_body!(IdentifyEvent, "`POST /v1/identify`: who the user is.",
    { traits: Option<Map<String, Value>> = "What is known of the user." });
event_body!(PageEvent, "`POST /v1/page`: a web page seen.",
    { name: Option<String> = "The page's name.",
      properties: Option<Map<String, Value>> = "`url`, `title`, `referrer`, …" });
event_body!(ScreenEvent, "`POST /v1/screen`: an app screen seen.",
    { name: Option<String> = "The screen's name.",
      properties: Option<Map<String, Value>> = "Details of the screen." });
event_body!(GroupEvent, "`POST /v1/group`: the user joined a group (a company, an account).",
    { #[schema(min_length = 1)] group_id: String = "The group's id.",
      traits: Option<Map<String, Value>> = "What is known of the group." });
event_body!(AliasEvent, "`POST /v1/alias`: two ids of one user.",
    { #[schema(min_length = 1)] previous_id: String = "The id the user had." });

/// `POST /v1/batch`: up to 2,500 events, each with its `type`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub struct BatchBody {
    /// Events, each an object with `type` (`track`, `identify`, `page`, `screen`,
    /// `group`, `alias`) and that type's fields.
    #[schema(max_items = 2500)]
    batch: Vec<Map<String, Value>>,
    /// Merged into every event's `context`.
    context: Option<Map<String, Value>>,
    /// Merged into every event's `integrations`.
    integrations: Option<Map<String, Value>>,
    /// ISO 8601: when the client sent the batch.
    sent_at: Option<String>,
    /// The source's write key, when not given by Basic auth.
    write_key: Option<String>,
}

/// What a successful ingest request answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// Always true: every valid event is stored.
    pub success: bool,
    /// Batch items refused, each with why (absent when none was).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<RejectedItem>,
}

/// A batch item refused for what it holds; the others are stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct RejectedItem {
    /// Its place in `batch`, from 0.
    pub index: usize,
    pub error: String,
}
