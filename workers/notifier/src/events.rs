//! `notifier-events`: job events become frames on `job:<id>` and `user:<owner>`.

use contracts::{BusEvent, JobEvent};
use serde::Serialize;
use serde_json::Value;

use crate::Deps;
use crate::channel::Channel;
use crate::error::HandlerError;
use crate::push::{PushReport, push_all};
use crate::store::Appended;

/// What the handler did with an event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventOutcome {
    /// Channels the frame was appended to (or found on, for a repeated event).
    pub channels: Vec<String>,
    pub pushed: PushReport,
}

/// Handles one job event: records the owner of a requested job, appends the frame to
/// the job's and the owner's channels, and pushes it to their subscribers.
pub async fn handle_event(event: BusEvent, deps: &Deps) -> Result<EventOutcome, HandlerError> {
    let envelope = JobEvent::decode(&event.detail_type, &event.detail, &event.received())?;
    let Some(job_id) = envelope.event.job_id().map(ToString::to_string) else {
        tracing::info!(event_id = %event.id, "JobRequested without a job id: the jobs service assigns it; nothing to push");
        return Ok(EventOutcome::default());
    };
    let owner = match &envelope.event {
        JobEvent::Requested(requested) => {
            if let Some(sub) = &requested.requested_by {
                deps.store.set_owner(&job_id, sub).await?;
            }
            requested.requested_by.clone()
        }
        _ => deps.store.wait_owner(&job_id).await?,
    };
    if owner.is_none() {
        tracing::info!(job_id = %job_id, "the job's owner is unknown; pushing to job:{job_id} only");
    }
    let mut channels = vec![Channel::job(&job_id)];
    channels.extend(owner.map(Channel::user));
    let data = payload(&event.detail);
    let event_id = envelope.meta.event_id.clone();
    let correlation_id = Some(envelope.meta.correlation_id.clone());
    // The channels are independent streams: serve them at once.
    let served = channels.iter().map(|channel| {
        let name = channel.to_string();
        let data = data.clone();
        let correlation_id = correlation_id.clone();
        let event_id = &event_id;
        let detail_type = &event.detail_type;
        let job_id = &job_id;
        async move {
            let appended = deps
                .store
                .append(&name, event_id, detail_type, data, correlation_id)
                .await?;
            let frame = appended.frame();
            let subscribers = deps.store.subscribers(&name).await?;
            let payload = serde_json::to_vec(frame).unwrap_or_default();
            let pushed = push_all(deps, &subscribers, &payload).await;
            tracing::info!(
                job_id = %job_id,
                channel = %name,
                offset = frame.offset,
                repeated = matches!(appended, Appended::Duplicate(_)),
                delivered = pushed.delivered,
                gone = pushed.gone,
                failed = pushed.failed,
                "frame pushed"
            );
            Ok::<_, HandlerError>((name, pushed))
        }
    });
    let mut outcome = EventOutcome::default();
    for (name, pushed) in futures::future::try_join_all(served).await? {
        outcome.pushed += pushed;
        outcome.channels.push(name);
    }
    Ok(outcome)
}

/// The event's fields without its `meta`: what clients see as a frame's `data`.
fn payload(detail: &Value) -> Value {
    let mut data = detail.clone();
    if let Value::Object(map) = &mut data {
        map.remove("meta");
    }
    data
}
