//! WebSocket (and Server-Sent Events) frames between the notifier and browsers.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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

/// Frame types that are not events of a channel's stream (their `offset` is 0).
pub mod kinds {
    /// The history no longer reaches back to the requested `since`; the frame's `offset`
    /// is the last one lost, so the stream goes on from `offset + 1`. `data`:
    /// [`super::Discontinuity`].
    pub const DISCONTINUITY: &str = "discontinuity";
    /// A subscription is in place; `data` ([`super::Subscribed`]): `head`, the channel's
    /// latest offset, and how many frames were replayed.
    pub const SUBSCRIBED: &str = "subscribed";
    /// A subscription is gone; `data` is `{}`.
    pub const UNSUBSCRIBED: &str = "unsubscribed";
    /// The answer to a `ping` (outside every channel: `channel` is `""`); `data` is `{}`.
    pub const PONG: &str = "pong";
    /// A request was refused: `data` ([`super::ErrorData`]): `code` (`forbidden`,
    /// `bad_request`, `unknown_action`, `internal`) and `message`.
    pub const ERROR: &str = "error";
}

impl Frame {
    /// A control frame (acknowledgement, pong, error): outside every channel's offsets.
    pub fn control(channel: impl Into<String>, kind: &str, data: Value) -> Frame {
        Frame {
            channel: channel.into(),
            offset: 0,
            kind: kind.to_owned(),
            data,
            correlation_id: None,
        }
    }

    /// An `error` control frame with a stable `code` and a message saying what to fix.
    pub fn error(channel: impl Into<String>, code: &str, message: impl Into<String>) -> Frame {
        let data = ErrorData {
            code: code.to_owned(),
            message: message.into(),
        };
        Frame::control(channel, kinds::ERROR, to_data(&data))
    }

    /// The `subscribed` answer to a `subscribe`.
    pub fn subscribed(channel: impl Into<String>, data: Subscribed) -> Frame {
        Frame::control(channel, kinds::SUBSCRIBED, to_data(&data))
    }

    /// The `unsubscribed` answer to an `unsubscribe`.
    pub fn unsubscribed(channel: impl Into<String>) -> Frame {
        Frame::control(channel, kinds::UNSUBSCRIBED, Value::Object(Map::new()))
    }

    /// The `pong` answer to a `ping`.
    pub fn pong() -> Frame {
        Frame::control("", kinds::PONG, Value::Object(Map::new()))
    }

    /// A `discontinuity` in the channel's stream: its offset is `data.resume_after`.
    pub fn discontinuity(channel: impl Into<String>, data: Discontinuity) -> Frame {
        Frame {
            channel: channel.into(),
            offset: data.resume_after,
            kind: kinds::DISCONTINUITY.to_owned(),
            data: to_data(&data),
            correlation_id: None,
        }
    }

    /// Whether the frame belongs to the channel's numbered stream (events and
    /// discontinuities) rather than being a control frame.
    pub fn is_stream(&self) -> bool {
        self.offset > 0 || self.kind == kinds::DISCONTINUITY
    }
}

/// `data` of a `subscribed` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subscribed {
    /// The channel's latest offset when the subscription took effect.
    pub head: u64,
    /// How many frames of the history were sent before this answer (a `discontinuity`
    /// counts as one).
    pub replayed: u64,
}

/// `data` of a `discontinuity` frame: what was lost between `since` and `resume_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Discontinuity {
    /// The `since` the client asked for.
    pub since: u64,
    /// The last offset lost: the stream goes on from `resume_after + 1`.
    pub resume_after: u64,
    pub reason: DiscontinuityReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DiscontinuityReason {
    /// The frames after `since` have left the bounded history.
    Expired,
    /// `since` is beyond the channel's head: the client's position is void.
    Ahead,
}

/// `data` of an `error` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorData {
    /// `forbidden`, `bad_request`, `unknown_action` or `internal`.
    pub code: String,
    /// What to fix.
    pub message: String,
}

/// A frame's `data` from one of the types above (plain structs: serializing cannot fail).
fn to_data(data: &impl Serialize) -> Value {
    serde_json::to_value(data).unwrap_or_default()
}

/// A client's position in one channel: turns frames as they arrive (replayed and live,
/// possibly duplicated or out of order) into the channel's stream exactly once, in order.
///
/// Frames below the cursor are duplicates and dropped; frames above it wait until the gap
/// fills (a resubscription with [`Cursor::since`] fills it); a `discontinuity` moves the
/// cursor past what was lost.
#[derive(Debug, Clone, Default)]
pub struct Cursor {
    /// The last offset delivered.
    since: u64,
    waiting: std::collections::BTreeMap<u64, Frame>,
}

impl Cursor {
    /// A cursor that has delivered everything up to `since` (0: nothing yet).
    pub fn new(since: u64) -> Cursor {
        Cursor {
            since,
            waiting: std::collections::BTreeMap::new(),
        }
    }

    /// The last offset delivered: what to resubscribe with.
    pub fn since(&self) -> u64 {
        self.since
    }

    /// Whether frames are waiting for a missing offset.
    pub fn has_gap(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Takes one arriving frame; returns what is now deliverable, in order. Control
    /// frames pass straight through.
    pub fn accept(&mut self, frame: Frame) -> Vec<Frame> {
        if !frame.is_stream() {
            return vec![frame];
        }
        if frame.kind == kinds::DISCONTINUITY {
            // The stream goes on after `offset`: what was lost before it, or (when the
            // client was ahead of a reset channel) the channel's real head.
            self.since = frame.offset;
            self.waiting = self.waiting.split_off(&(frame.offset + 1));
            let mut out = vec![frame];
            out.extend(self.drain());
            return out;
        }
        if frame.offset <= self.since {
            return Vec::new();
        }
        self.waiting.entry(frame.offset).or_insert(frame);
        self.drain()
    }

    fn drain(&mut self) -> Vec<Frame> {
        let mut out = Vec::new();
        while let Some(frame) = self.waiting.remove(&(self.since + 1)) {
            self.since = frame.offset;
            out.push(frame);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn frame(offset: u64) -> Frame {
        Frame {
            channel: "job:1".into(),
            offset,
            kind: "JobProgress".into(),
            data: json!({ "n": offset }),
            correlation_id: None,
        }
    }

    fn offsets(frames: &[Frame]) -> Vec<u64> {
        frames.iter().map(|f| f.offset).collect()
    }

    #[test]
    fn replayed_and_live_frames_come_out_once_in_order() {
        let mut cursor = Cursor::new(2);
        let mut out = Vec::new();
        // Live 5 arrives before the replay of 3 and 4; 4 comes twice; 1 is old.
        for offset in [5, 3, 4, 4, 1, 6, 5] {
            out.extend(cursor.accept(frame(offset)));
        }
        assert_eq!(offsets(&out), [3, 4, 5, 6]);
        assert_eq!(cursor.since(), 6);
        assert!(!cursor.has_gap());
    }

    #[test]
    fn a_gap_waits_and_a_discontinuity_skips_it() {
        let mut cursor = Cursor::new(0);
        assert_eq!(offsets(&cursor.accept(frame(1))), [1]);
        assert!(cursor.accept(frame(4)).is_empty());
        assert!(cursor.has_gap());
        let mut lost = frame(3);
        lost.kind = kinds::DISCONTINUITY.into();
        assert_eq!(offsets(&cursor.accept(lost)), [3, 4]);
        assert_eq!(cursor.since(), 4);
    }

    #[test]
    fn control_frames_pass_through() {
        let mut cursor = Cursor::new(7);
        let pong = Frame::pong();
        assert_eq!(cursor.accept(pong.clone()), [pong]);
        assert_eq!(cursor.since(), 7);
    }
}
