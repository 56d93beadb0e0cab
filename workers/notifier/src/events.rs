//! `notifier-events`: job events become frames on `job:<id>` and `user:<owner>`.

use contracts::{BusEvent, JobEvent};
use serde::Serialize;
use serde_json::Value;

use contracts::frames::MAX_CHANNEL_NAME_BYTES;

use crate::Deps;
use crate::channel::Channel;
use crate::error::HandlerError;
use crate::push::{PushReport, push_all};
use crate::store::{Appended, Draft, Ownership};

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
///
/// Only the jobs service's events are taken (EventBridge `source` `fleet.jobs`; the rule
/// matches it too, and on AWS only the jobs service's roles may put it): any other is
/// logged and dropped. A `JobRequested` naming an owner other than the job's first one is
/// refused (logged, nothing appended): neither is an error, since delivering the same
/// event again would end the same way.
pub async fn handle_event(event: BusEvent, deps: &Deps) -> Result<EventOutcome, HandlerError> {
    if event.source != contracts::jobs::SOURCE {
        tracing::warn!(
            event_id = %event.id,
            source = %event.source,
            detail_type = %event.detail_type,
            "an event not from the jobs service ({}); dropped",
            contracts::jobs::SOURCE
        );
        return Ok(EventOutcome::default());
    }
    let envelope = JobEvent::decode(&event.detail_type, &event.detail, &event.received())?;
    let Some(job_id) = envelope.event.job_id().map(ToString::to_string) else {
        tracing::info!(event_id = %event.id, "JobRequested without a job id: the jobs service assigns it; nothing to push");
        return Ok(EventOutcome::default());
    };
    // Ownership first: a refused claim must not reach the job's channel either.
    // A job nobody owns (another service requested it on the bus) is recorded as such,
    // so that its later events need not wait for an owner.
    let requested_by = match &envelope.event {
        JobEvent::Requested(requested) => {
            let sub = requested.requested_by.as_deref();
            match deps.store.set_owner(&job_id, sub).await? {
                Ownership::Recorded => sub.map(str::to_owned),
                Ownership::Refused { owner } => {
                    tracing::warn!(
                        event_id = %event.id,
                        job_id = %job_id,
                        claimed_by = %sub.unwrap_or("(nobody)"),
                        owner = %owner,
                        "JobRequested names another owner than the job's first; refused"
                    );
                    return Ok(EventOutcome::default());
                }
            }
        }
        _ => None,
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
            JobEvent::Requested(_) => requested_by.clone(),
            _ => deps.store.wait_owner(&job_id).await?,
        };
        let Some(owner) = owner else {
            tracing::info!(job_id = %job_id, "the job's owner is unknown; pushing to job:{job_id} only");
            return Ok::<_, HandlerError>(None);
        };
        let user_channel = Channel::user(owner).to_string();
        if user_channel.len() > MAX_CHANNEL_NAME_BYTES {
            // No client could subscribe to it: its name is longer than a client may send.
            tracing::warn!(job_id = %job_id, "the owner's sub is too long for a channel; pushing to job:{job_id} only");
            return Ok(None);
        }
        let on_user = Draft {
            channel: &user_channel,
            ..on_job.clone()
        };
        Ok(Some(serve(deps, on_user, &job_id).await?))
    };
    let job = serve(deps, on_job.clone(), &job_id);
    // Boxed: the two channels' futures nested in the runtime's are deeper than the
    // compiler lays out by default.
    let (job, mut user) = futures::future::try_join(Box::pin(job), Box::pin(user)).await?;
    if user.is_none()
        && !matches!(envelope.event, JobEvent::Requested(_))
        && let Some(owner) = deps.store.owner(&job_id).await?
    {
        // The owner became known while this event went to the job's channel alone: the
        // owner's catch-up may have read that channel before this frame was on it, so
        // the event goes to the owner's channel itself (appends are idempotent per
        // event, so doing both is harmless).
        let user_channel = Channel::user(owner).to_string();
        if user_channel.len() <= MAX_CHANNEL_NAME_BYTES {
            let on_user = Draft {
                channel: &user_channel,
                ..on_job.clone()
            };
            user = Some(serve(deps, on_user, &job_id).await?);
        }
    }
    let mut outcome = EventOutcome::default();
    for (name, pushed) in std::iter::once(job).chain(user) {
        outcome.pushed += pushed;
        outcome.channels.push(name);
    }
    if let Some(owner) = requested_by.as_deref() {
        outcome.pushed += catch_up(deps, &job_id, owner).await?;
    }
    Ok(outcome)
}

/// The owner's channel catches up with the job's: events that came before the owner was
/// known (a `JobRequested` delivered late, as at-least-once delivery may, after its job's
/// other events waited [`crate::NotifierConfig::owner_wait`] for it and went to the job's
/// channel only; each such event looks for the owner again once its frame is on the
/// job's channel, so that none falls between the two) are appended to `user:<owner>` now, once each (appends are idempotent per
/// event), in the job channel's order. Returns how many pushes it made.
async fn catch_up(deps: &Deps, job_id: &str, owner: &str) -> Result<PushReport, HandlerError> {
    let user_channel = Channel::user(owner).to_string();
    if user_channel.len() > MAX_CHANNEL_NAME_BYTES {
        return Ok(PushReport::default());
    }
    let job_channel = Channel::job(job_id).to_string();
    let mut pushed = PushReport::default();
    for (event_id, frame) in deps.store.events(&job_channel).await? {
        if frame.kind == contracts::jobs::REQUESTED {
            // Each `JobRequested` reaches the owner's channel through its own delivery.
            continue;
        }
        let draft = Draft {
            channel: &user_channel,
            event_id: &event_id,
            kind: &frame.kind,
            data: frame.data.clone(),
            correlation_id: frame.correlation_id.clone(),
        };
        let name = user_channel.clone();
        let report = deps
            .store
            .append_then(draft, |appended| async move {
                let Appended::New(frame) = appended else {
                    // Already on the owner's channel (and pushed when it was appended).
                    return Ok::<_, HandlerError>(None);
                };
                let subscribers = deps.store.subscribers(&name).await?;
                let href = crate::data_href(&frame);
                let payload = serde_json::to_vec(&frame.bounded(href)).unwrap_or_default();
                Ok(Some(push_all(deps, subscribers, &payload).await))
            })
            .await??;
        if let Some(report) = report {
            tracing::info!(job_id = %job_id, channel = %user_channel, event_id = %event_id, "caught the owner's channel up with an event that came before its owner");
            pushed += report;
        }
    }
    Ok(pushed)
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
            // Bounded again: a repeated event's frame may have been written by an older
            // deployment, before frames were.
            let frame = appended.frame().clone();
            let href = crate::data_href(&frame);
            let payload = serde_json::to_vec(&frame.bounded(href)).unwrap_or_default();
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
