//! Pushing frames to connections through the API Gateway Management API.

use aws_sdk_apigatewaymanagement::primitives::Blob;
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

/// Posts `payload` to each connection, at most [`crate::NotifierConfig::push_concurrency`]
/// at a time. A gone connection is removed with its subscriptions.
///
/// One task drives every post. A post is mostly CPU (building the request) while the
/// answer is near; measured with `fleet bench notifier` on two cores, one pushing task
/// delivered sooner than one per core, as it leaves the other core to the writes that
/// follow each post.
pub async fn push_all(deps: &Deps, connections: Vec<String>, payload: &[u8]) -> PushReport {
    // Owned ids: a closure over borrowed ones is not general enough for `Send` futures.
    let outcomes: Vec<Outcome> = futures::stream::iter(connections)
        .map(|id| async move { push_one(deps, &id, payload).await })
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

async fn push_one(deps: &Deps, id: &str, payload: &[u8]) -> Outcome {
    let sent = deps
        .connections
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

/// Posts one frame to one connection, in order with the caller's other posts.
pub(crate) async fn push_frame(
    deps: &Deps,
    id: &str,
    frame: &contracts::frames::Frame,
) -> Result<(), String> {
    let payload = serde_json::to_vec(frame).map_err(|e| e.to_string())?;
    deps.connections
        .post_to_connection()
        .connection_id(id)
        .data(Blob::new(payload))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| e.into_service_error().to_string())
}
