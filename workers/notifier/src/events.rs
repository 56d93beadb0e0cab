//! `notifier-events`: job events become frames on `job:<id>` and `user:<owner>`.

use contracts::{BusEvent, JobEvent};
use serde::Serialize;
use serde_json::Value;

use crate::Deps;
use crate::channel::Channel;
use crate::error::HandlerError;
use crate::push::{PushReport, push_all};
use crate::store::{Appended, Draft};

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
    let job_channel = Channel::job(&job_id).to_string();
    let on_job = Draft {
        channel: &job_channel,
        event_id: &envelope.meta.event_id,
        kind: &event.detail_type,
        data: payload(&event.detail),
        correlation_id: Some(envelope.meta.correlation_id.clone()),
    };
    // The channels are independent streams: `job:<id>` is served at once, `user:<owner>`
    // as soon as the owner is known.
    let user = async {
        let owner = match &envelope.event {
            JobEvent::Requested(requested) => {
                if let Some(sub) = &requested.requested_by {
                    deps.store.set_owner(&job_id, sub).await?;
                }
                requested.requested_by.clone()
            }
            _ => deps.store.wait_owner(&job_id).await?,
        };
        let Some(owner) = owner else {
            tracing::info!(job_id = %job_id, "the job's owner is unknown; pushing to job:{job_id} only");
            return Ok::<_, HandlerError>(None);
        };
        let user_channel = Channel::user(owner).to_string();
        let on_user = Draft {
            channel: &user_channel,
            ..on_job.clone()
        };
        Ok(Some(serve(deps, on_user, &job_id).await?))
    };
    let job = serve(deps, on_job.clone(), &job_id);
    // Boxed: the two channels' futures nested in the runtime's are deeper than the
    // compiler lays out by default.
    let (job, user) = futures::future::try_join(Box::pin(job), Box::pin(user)).await?;
    let mut outcome = EventOutcome::default();
    for (name, pushed) in std::iter::once(job).chain(user) {
        outcome.pushed += pushed;
        outcome.channels.push(name);
    }
    Ok(outcome)
}

/// Appends the event's frame to one channel and pushes it to the channel's subscribers.
async fn serve(
    deps: &Deps,
    draft: Draft<'_>,
    job_id: &str,
) -> Result<(String, PushReport), HandlerError> {
    let started = std::time::Instant::now();
    let name = draft.channel.to_owned();
    // The broadcast starts as soon as the frame is in the history.
    let (appended, read, pushed) = deps
        .store
        .append_then(draft, |appended| async {
            let subscribers = deps.store.subscribers(&name).await?;
            let read = started.elapsed();
            let payload = serde_json::to_vec(appended.frame()).unwrap_or_default();
            let pushed = push_all(deps, subscribers, &payload).await;
            Ok::<_, HandlerError>((appended, read, pushed))
        })
        .await??;
    let frame = appended.frame();
    tracing::info!(
        job_id = %job_id,
        channel = %name,
        offset = frame.offset,
        repeated = matches!(appended, Appended::Duplicate(_)),
        delivered = pushed.delivered,
        gone = pushed.gone,
        failed = pushed.failed,
        store_ms = read.as_millis() as u64,
        push_ms = (started.elapsed() - read).as_millis() as u64,
        "frame pushed"
    );
    Ok((name, pushed))
}

/// The event's fields without its `meta`: what clients see as a frame's `data`.
fn payload(detail: &Value) -> Value {
    let mut data = detail.clone();
    if let Value::Object(map) = &mut data {
        map.remove("meta");
    }
    data
}
