//! WebSocket (and Server-Sent Events) frames between the notifier and browsers.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A frame pushed to a client. Each channel's offsets are consecutive from 1, so a client
/// detects a gap itself and resumes with `since`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Frame {
    /// `job:<id>` or `user:<sub>`.
    pub channel: String,
    pub offset: u64,
    /// The event's detail-type, or `discontinuity`, `subscribed`, `pong`, `error`.
    #[serde(rename = "type")]
    pub kind: String,
    pub data: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

/// What a client sends; API Gateway selects the route on `$.action`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum ClientMessage {
    /// Subscribe to a channel, replaying every frame after `since` (0 = the whole history).
    Subscribe {
        channel: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
    },
    Unsubscribe {
        channel: String,
    },
    Ping,
}
