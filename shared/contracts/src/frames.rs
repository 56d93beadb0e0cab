//! WebSocket (and Server-Sent Events) frames between the notifier and browsers.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The largest message an API Gateway WebSocket API carries, in either direction
/// (128 KiB): a larger `@connections` post is refused with 413 and never reaches the
/// client.
pub const GATEWAY_MESSAGE_BYTES: usize = 128 * 1024;

/// The most bytes a frame's JSON ever has: the gateway's limit less 8 KiB, a margin for
/// whatever a transport adds around the frame (the Server-Sent Events framing, a
/// gateway's own envelope). A frame whose `data` would take it past this carries a
/// [`DataRef`] instead ([`Frame::bounded`]).
pub const MAX_FRAME_BYTES: usize = GATEWAY_MESSAGE_BYTES - 8 * 1024;
const _: () = assert!(MAX_FRAME_BYTES < GATEWAY_MESSAGE_BYTES);

/// The most bytes one client message (`subscribe`, `unsubscribe`, `ping`) may have; a
/// longer one is refused before it is parsed.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 4 * 1024;

/// The longest channel name a client may send: `user:` and a 256-byte `sub` (the longest
/// `requestedBy` a job event carries; OpenID Connect subjects have at most 255 bytes);
/// `job:<id>` names are far shorter.
pub const MAX_CHANNEL_NAME_BYTES: usize = 5 + 256;

/// The largest `since` a client may send: 2^53 - 1, the largest integer a JavaScript
/// client holds exactly (a channel's offsets never come near it).
pub const MAX_SINCE: u64 = (1 << 53) - 1;

/// The most channels one connection may be subscribed to at once; a `subscribe` past it
/// is refused (`too_many_channels`) until the client unsubscribes from one.
pub const MAX_CHANNELS_PER_CONNECTION: usize = 32;

/// A frame pushed to a client. Each channel's offsets are consecutive from 1, so a client
/// detects a gap itself and resumes with `since`.
///
/// No frame's JSON is longer than [`MAX_FRAME_BYTES`]: when an event's `data` would make
/// it longer, the frame carries `"data": null` and a `dataRef` saying where to fetch what
/// was left out (`GET <jobs API><href>`, e.g. `GET /jobs/<id>`) and how large it was.
/// A frame without `dataRef` carries its data itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Frame {
    /// `job:<id>` or `user:<sub>`.
    pub channel: String,
    pub offset: u64,
    /// The event's detail-type, or `discontinuity`, `subscribed`, `pong`, `error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The event's fields (without `meta`); `null` when `dataRef` is present.
    pub data: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Present when `data` was too large for a frame and has been left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_ref: Option<DataRef>,
}

/// Where to fetch the `data` a frame left out because it was too large.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataRef {
    /// A path of the jobs HTTP API (`/jobs/<id>`), relative to its base URL, that answers
    /// the job the frame is about.
    pub href: String,
    /// The size of the left-out `data`'s JSON, in bytes.
    pub bytes: u64,
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
    /// `bad_request`, `too_large`, `too_many_channels`, `unknown_action`, `internal`) and
    /// `message`.
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
            data_ref: None,
        }
    }

    /// The length of the frame's JSON, as it is sent.
    pub fn encoded_len(&self) -> usize {
        serde_json::to_vec(self).map_or(usize::MAX, |json| json.len())
    }

    /// The frame as it may be sent: itself when its JSON fits in [`MAX_FRAME_BYTES`],
    /// otherwise [`Frame::by_reference`] with `href`.
    pub fn bounded(self, href: impl Into<String>) -> Frame {
        if self.encoded_len() <= MAX_FRAME_BYTES {
            return self;
        }
        self.by_reference(href)
    }

    /// The frame with its `data` left out: `data` is `null` and `data_ref` points to
    /// `href`. A correlation id that would still keep the frame over [`MAX_FRAME_BYTES`]
    /// is dropped too (channel names and types are short by construction).
    pub fn by_reference(mut self, href: impl Into<String>) -> Frame {
        if self.data_ref.is_none() {
            let bytes = serde_json::to_vec(&self.data).map_or(0, |json| json.len());
            self.data_ref = Some(DataRef {
                href: href.into(),
                bytes: u64::try_from(bytes).unwrap_or(u64::MAX),
            });
        }
        self.data = Value::Null;
        if self.encoded_len() > MAX_FRAME_BYTES {
            self.correlation_id = None;
        }
        self
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
            data_ref: None,
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
    /// `forbidden`, `bad_request`, `too_large`, `too_many_channels`, `unknown_action` or
    /// `internal`.
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
            data_ref: None,
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
    fn a_frame_too_large_for_the_gateway_carries_a_reference_instead_of_its_data() {
        let mut large = frame(1);
        large.data = json!({ "params": { "blob": "x".repeat(140 * 1024) } });
        large.correlation_id = Some("c-1".into());
        let bytes = serde_json::to_vec(&large.data)
            .map(|j| j.len())
            .unwrap_or(0);
        let sent = large.bounded("/jobs/1");
        assert!(
            sent.encoded_len() <= MAX_FRAME_BYTES,
            "{}",
            sent.encoded_len()
        );
        assert_eq!(sent.data, Value::Null);
        assert_eq!(
            sent.data_ref,
            Some(DataRef {
                href: "/jobs/1".into(),
                bytes: bytes as u64
            })
        );
        assert_eq!(
            (sent.offset, sent.correlation_id.as_deref()),
            (1, Some("c-1"))
        );
        let json = serde_json::to_value(&sent).unwrap_or_default();
        assert_eq!(json["dataRef"]["href"], "/jobs/1");
        // A frame that fits is left alone, and says nothing of a reference.
        let small = frame(2).bounded("/jobs/1");
        assert_eq!(small, frame(2));
        let json = serde_json::to_value(&small).unwrap_or_default();
        assert!(json.get("dataRef").is_none(), "{json}");
    }

    #[test]
    fn control_frames_pass_through() {
        let mut cursor = Cursor::new(7);
        let pong = Frame::pong();
        assert_eq!(cursor.accept(pong.clone()), [pong]);
        assert_eq!(cursor.since(), 7);
    }
}
