//! The notifier service: pushes job progress and results to WebSocket clients.
//!
//! Two Lambda handlers, each a library function driven by a thin binary in `src/bin/`:
//!
//! - [`handle_ws`] (`notifier-ws`): every route of the service's API Gateway WebSocket
//!   API. `$connect` verifies the JWT from the `token` query parameter (browsers cannot
//!   set headers on a WebSocket) and refuses the handshake without a valid one;
//!   `$disconnect` forgets the connection; `subscribe`, `unsubscribe` and `ping` are
//!   selected on `$.action`, and `$default` answers anything else with an error frame.
//! - [`handle_event`] (`notifier-events`): keeps the job → owner projection from
//!   `JobRequested` and appends every job event to the channels `job:<id>` and
//!   `user:<owner>`, pushing the frame to their subscribers through the API Gateway
//!   Management API (`@connections`), with bounded concurrency. A `GoneException`
//!   removes the connection and its subscriptions.
//!
//! ## Channels and resume
//!
//! Each channel is a numbered stream: offsets are consecutive from 1 and never go back.
//! A frame, the event's marker and the channel's head are written in one transaction,
//! the frame only if its offset is free and the marker only if the event has none, so no
//! offset is ever skipped or used twice and an event delivered twice (EventBridge and
//! Lambda retry, a crash or timeout after the write, two instances at once) keeps its
//! first offset. Each channel keeps a bounded history (length and TTL in
//! [`NotifierConfig`]); its head never expires, so a channel quiet for longer than the
//! history's TTL goes on from its last offset.
//!
//! ## Trust and limits
//!
//! Only events whose EventBridge `source` is the jobs service's (`fleet.jobs`) are taken;
//! any other is logged and dropped. A job's owner is the first `JobRequested` names: a
//! later one naming someone else is refused (logged, its frame not appended), so no
//! publisher can take over a job's channel. No frame is larger than
//! [`contracts::frames::MAX_FRAME_BYTES`]: an event whose data would make it larger is
//! sent by reference (`dataRef`, the jobs API's `/jobs/<id>`), and a replay that meets a
//! frame the gateway refuses as too large sends its reference instead and goes on. Client
//! messages are bounded (`contracts::frames::MAX_*`), a connection holds at most
//! [`contracts::frames::MAX_CHANNELS_PER_CONNECTION`] channels, and `subscribe` to a job
//! not (yet) known waits at most [`NotifierConfig::subscribe_owner_wait`].
//! `subscribe` with `since: n` records the subscription first and reads the history
//! second, while the event handler writes the history first and reads the subscribers
//! second: every frame reaches a subscriber by replay, live push or both, never neither.
//! Clients drop duplicates by offset ([`contracts::frames::Cursor`]). When the history
//! no longer reaches back to `n`, a `discontinuity` frame comes first.
//!
//! ## Data
//!
//! One table (`pk`, `sk`, TTL on `expiresAt`), owned by this service alone:
//!
//! | pk | sk | what |
//! |---|---|---|
//! | `conn#<id>` | `conn` | a connection: `sub`, `channels` (string set) |
//! | `chan#<channel>` | `head` | the last offset written, with the frame; no TTL |
//! | `chan#<channel>` | `frame#<offset, 20 digits>` | one frame of the history |
//! | `chan#<channel>` | `event#<event id>` | the offset an event got (idempotency) |
//! | `chan#<channel>` | `subs#<shard>` | subscribed connection ids (string set) and `rev`, a fresh random token on every change |
//! | `job#<id>` | `owner` | who requested the job |
//!
//! Subscribers are string sets spread over [`NotifierConfig::subscription_shards`]
//! items, so a broadcast reads a handful of items (one consistent `BatchGetItem`)
//! instead of querying one row per subscriber. A warm process remembers each shard it
//! read with its `rev`, which the same `UpdateItem` that changes the set replaces; a
//! broadcast reads only the revisions and re-reads just the shards that changed.

use std::sync::Arc;
use std::time::Duration;

mod channel;
mod error;
mod events;
mod push;
pub mod service;
pub mod store;
mod ws;

pub use channel::Channel;
pub use error::{HandlerError, StoreError};
pub use events::{EventOutcome, handle_event};
pub use push::{Connections, PushReport, push_all};
pub use store::{Ownership, Store, Subscription};
pub use ws::handle_ws;

/// The producer name of this service.
pub const PRODUCER: &str = "notifier";

/// Tunables; the defaults suit production.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// How many frames each channel keeps for resuming clients.
    pub history_len: u64,
    /// How long a frame stays resumable.
    pub history_ttl: Duration,
    /// How long a connection's rows outlive its last activity when `$disconnect` never
    /// comes (API Gateway closes connections after 2 h at most).
    pub connection_ttl: Duration,
    /// How long the job → owner projection is kept.
    pub owner_ttl: Duration,
    /// Items each channel's subscriber set is spread over.
    pub subscription_shards: u32,
    /// Pushes in flight at once per pushing task.
    pub push_concurrency: usize,
    /// How many tasks share a broadcast to many subscribers (at least 256 each): posts
    /// are mostly CPU, so by default one per core the runtime can use.
    pub push_tasks: usize,
    /// How long a job event waits for the job's `JobRequested` to be projected (it
    /// travels the bus concurrently) before it goes to `job:<id>` only. Short: the
    /// owner's channel catches up once the owner is known, so the wait only keeps the
    /// common case in order, and each wait holds a function instance (a `JobRequested`
    /// delivered minutes late, after a lost receive, made every later event of its job
    /// wait in full).
    pub owner_wait: Duration,
    /// How long `subscribe` to a `job:<id>` not known yet waits for its `JobRequested`
    /// (a client that subscribes right after `POST /jobs` may be ahead of it); at most
    /// [`MAX_SUBSCRIBE_OWNER_WAIT`]. Short: every such wait holds a function instance,
    /// and anyone can subscribe to made-up job ids.
    pub subscribe_owner_wait: Duration,
}

/// The longest `subscribe` ever waits for an unknown job's owner, whatever
/// [`NotifierConfig::subscribe_owner_wait`] says.
pub const MAX_SUBSCRIBE_OWNER_WAIT: Duration = Duration::from_secs(2);

impl Default for NotifierConfig {
    fn default() -> Self {
        NotifierConfig {
            history_len: 100,
            history_ttl: Duration::from_secs(24 * 3600),
            connection_ttl: Duration::from_secs(3 * 3600),
            owner_ttl: Duration::from_secs(30 * 24 * 3600),
            subscription_shards: 8,
            push_concurrency: 64,
            push_tasks: std::thread::available_parallelism().map_or(1, usize::from),
            owner_wait: Duration::from_millis(500),
            subscribe_owner_wait: Duration::from_secs(1),
        }
    }
}

/// Where a client fetches the data a frame of a job event left out (see
/// [`contracts::frames::DataRef`]): the jobs API's `/jobs/<id>`, the job taken from
/// `job:<id>` or from the event's `jobId`.
pub(crate) fn data_href(frame: &contracts::frames::Frame) -> String {
    if let Some(reference) = &frame.data_ref {
        return reference.href.clone();
    }
    let job = frame
        .channel
        .strip_prefix("job:")
        .or_else(|| frame.data.get("jobId").and_then(|id| id.as_str()));
    match job.and_then(|id| contracts::JobId::parse(id).ok()) {
        Some(id) => format!("/jobs/{id}"),
        None => "/jobs".to_owned(),
    }
}

/// What `notifier-ws` needs: the notifier's [`Deps`] and a verifier of `$connect` tokens.
#[derive(Debug, Clone)]
pub struct WsDeps {
    pub notifier: Deps,
    pub verifier: Arc<auth::Verifier>,
}

/// What `notifier-events` needs (and, with a verifier, `notifier-ws`: [`WsDeps`]).
#[derive(Debug, Clone)]
pub struct Deps {
    pub store: Store,
    /// The `@connections` API of the WebSocket API's stage: a client per pushing task.
    pub connections: Connections,
    pub config: NotifierConfig,
}

impl Deps {
    /// Clients for `sdk`, the notifier table and the management `endpoint`
    /// (`https://<api>.execute-api.<region>.amazonaws.com/<stage>` on AWS, the local
    /// host's address locally).
    pub fn new(
        sdk: &aws_config::SdkConfig,
        table: impl Into<String>,
        endpoint: &str,
        config: NotifierConfig,
    ) -> Deps {
        let management = || {
            let config = aws_sdk_apigatewaymanagement::config::Builder::from(sdk)
                .endpoint_url(endpoint)
                .build();
            aws_sdk_apigatewaymanagement::Client::from_conf(config)
        };
        Deps {
            store: Store::new(aws_sdk_dynamodb::Client::new(sdk), table, config.clone()),
            connections: Connections::new(config.push_tasks, management),
            config,
        }
    }

    /// What `notifier-ws` needs: these and a verifier of `$connect` tokens.
    pub fn with_verifier(self, verifier: impl Into<Arc<auth::Verifier>>) -> WsDeps {
        WsDeps {
            notifier: self,
            verifier: verifier.into(),
        }
    }

    /// Pushes through clients made by `build` (one per pushing task) instead.
    pub fn with_connections(
        mut self,
        build: impl Fn() -> aws_sdk_apigatewaymanagement::Client,
    ) -> Deps {
        self.connections = Connections::new(self.config.push_tasks, build);
        self
    }
}
