//! Pushing frames to connections through the API Gateway Management API.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use contracts::frames::Frame;
use futures::StreamExt as _;

use crate::Deps;

/// What a broadcast achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PushReport {
    pub delivered: usize,
    /// Connections that were gone (410) and have been removed.
    pub gone: usize,
    /// Pushes that failed otherwise; the frame stays in the history for a resume.
    pub failed: usize,
}

impl std::ops::AddAssign for PushReport {
    fn add_assign(&mut self, other: PushReport) {
        self.delivered += other.delivered;
        self.gone += other.gone;
        self.failed += other.failed;
    }
}

enum Outcome {
    Delivered,
    Gone,
    Failed,
}

/// Fewer subscribers than this per pushing task are not worth a task of their own.
const MIN_PER_TASK: usize = 256;

/// The `@connections` clients: one per pushing task.
///
/// Each is built on its own. Calls made at the same time from several threads through
/// one SDK client contend for the state every call of that client touches: measured
/// with `fleet dev`'s in-process client on two cores
/// (`cargo bench -p local-host --bench in_process_post`), two threads posting through
/// one client took 18–32 µs per post each, through a client each 16–20 µs, where one
/// thread alone takes 16–17 µs.
#[derive(Debug, Clone)]
pub struct Connections(Arc<[Client]>);

impl Connections {
    /// `count` clients (at least one), each made by `build`.
    pub fn new(count: usize, build: impl Fn() -> Client) -> Connections {
        Connections((0..count.max(1)).map(|_| build()).collect())
    }

    /// The client of pushing task `task`.
    pub fn client(&self, task: usize) -> &Client {
        &self.0[task % self.0.len()]
    }
}

/// Posts `payload` to each connection, at most [`crate::NotifierConfig::push_concurrency`]
/// at a time per pushing task. A gone connection is removed with its subscriptions.
///
/// A post is mostly CPU (building the request and reading its answer), so a broadcast to
/// many connections is split over [`crate::NotifierConfig::push_tasks`] tasks, which the
/// runtime runs on its worker threads; a small one stays in the caller's task.
pub async fn push_all(deps: &Deps, connections: Vec<String>, payload: &[u8]) -> PushReport {
    let tasks = deps
        .config
        .push_tasks
        .min(connections.len() / MIN_PER_TASK)
        .max(1);
    if tasks == 1 {
        return push_some(deps, 0, connections, payload).await;
    }
    let payload: Arc<[u8]> = payload.into();
    let per_task = connections.len().div_ceil(tasks);
    let mut rest = connections;
    let mut spawned = tokio::task::JoinSet::new();
    let mut sizes = HashMap::new();
    for task in 1.. {
        if rest.len() <= per_task {
            break;
        }
        let part = rest.split_off(rest.len() - per_task);
        let (deps, payload) = (deps.clone(), Arc::clone(&payload));
        let len = part.len();
        let handle = spawned.spawn(async move { push_some(&deps, task, part, &payload).await });
        sizes.insert(handle.id(), len);
    }
    let mut report = push_some(deps, 0, rest, &payload).await;
    while let Some(joined) = spawned.join_next_with_id().await {
        match joined {
            Ok((_, part)) => report += part,
            Err(e) => {
                // Its posts' outcomes are unknown; the frame stays in the history.
                tracing::error!(error = %e, "a pushing task failed");
                report.failed += sizes.get(&e.id()).copied().unwrap_or_default();
            }
        }
    }
    report
}

/// Posts `payload` to each of `connections` from this task, pushing task `task`.
async fn push_some(
    deps: &Deps,
    task: usize,
    connections: Vec<String>,
    payload: &[u8],
) -> PushReport {
    let client = deps.connections.client(task);
    // Owned ids: a closure over borrowed ones is not general enough for `Send` futures.
    let outcomes: Vec<Outcome> = futures::stream::iter(connections)
        .map(|id| async move { push_one(deps, client, &id, payload).await })
        .buffer_unordered(deps.config.push_concurrency.max(1))
        .collect()
        .await;
    let mut report = PushReport::default();
    for outcome in outcomes {
        match outcome {
            Outcome::Delivered => report.delivered += 1,
            Outcome::Gone => report.gone += 1,
            Outcome::Failed => report.failed += 1,
        }
    }
    report
}

async fn push_one(deps: &Deps, client: &Client, id: &str, payload: &[u8]) -> Outcome {
    let sent = client
        .post_to_connection()
        .connection_id(id)
        .data(Blob::new(payload.to_vec()))
        .send()
        .await;
    match sent {
        Ok(_) => Outcome::Delivered,
        Err(e) => {
            let e = e.into_service_error();
            if e.is_gone_exception() {
                tracing::info!(connection_id = %id, "connection gone; removing it");
                if let Err(e) = deps.store.remove_connection(id).await {
                    tracing::warn!(connection_id = %id, error = %e, "could not remove a gone connection; its rows expire");
                }
                Outcome::Gone
            } else {
                tracing::warn!(connection_id = %id, error = %e, "push failed");
                Outcome::Failed
            }
        }
    }
}

/// Why [`push_frame`] could not deliver a frame.
#[derive(Debug)]
pub(crate) enum PushError {
    /// The connection is gone (410).
    Gone,
    /// The gateway refused the frame as too large (413): sending it again never works.
    TooLarge,
    /// Anything else (throttled, unavailable): another try may work.
    Other(String),
}

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushError::Gone => f.write_str("the connection is gone"),
            PushError::TooLarge => f.write_str("the gateway refused the frame as too large"),
            PushError::Other(e) => f.write_str(e),
        }
    }
}

/// Posts one frame to one connection, in order with the caller's other posts.
///
/// The frame is bounded first ([`Frame::bounded`]: frames written by an older deployment
/// may be larger than [`contracts::frames::MAX_FRAME_BYTES`]), and one the gateway still
/// refuses as too large is sent by reference: a frame is never undeliverable for its
/// size, so it never holds up the frames after it.
pub(crate) async fn push_frame(deps: &Deps, id: &str, frame: &Frame) -> Result<(), PushError> {
    let href = crate::data_href(frame);
    let frame = frame.clone().bounded(href.clone());
    match post(deps, id, &frame).await {
        Err(PushError::TooLarge) if frame.data_ref.is_none() => {
            tracing::warn!(
                connection_id = %id,
                channel = %frame.channel,
                offset = frame.offset,
                bytes = frame.encoded_len(),
                "the gateway refused a frame as too large; sending its reference"
            );
            post(deps, id, &frame.by_reference(href)).await
        }
        other => other,
    }
}

async fn post(deps: &Deps, id: &str, frame: &Frame) -> Result<(), PushError> {
    let payload = serde_json::to_vec(frame).map_err(|e| PushError::Other(e.to_string()))?;
    let sent = deps
        .connections
        .client(0)
        .post_to_connection()
        .connection_id(id)
        .data(Blob::new(payload))
        .send()
        .await;
    let Err(e) = sent else {
        return Ok(());
    };
    let status = e.raw_response().map(|r| r.status().as_u16());
    let e = e.into_service_error();
    if e.is_gone_exception() || status == Some(410) {
        Err(PushError::Gone)
    } else if e.is_payload_too_large_exception() || status == Some(413) {
        Err(PushError::TooLarge)
    } else {
        Err(PushError::Other(e.to_string()))
    }
}
