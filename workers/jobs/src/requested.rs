//! `JobRequested` → one simulation-job execution per job.
//!
//! Deliveries are at least once (EventBridge, and Lambda's async retries), so the handler
//! is idempotent end to end: the job id is the event's own or derived from the event id;
//! the row is written only if absent; the execution is named after the job id, so a
//! second `StartExecution` is refused as `ExecutionAlreadyExists` and counted a success.
//!
//! A job cancelled before its execution started never runs: the row is read before the
//! start (a `CANCELLED` row starts nothing) and again after it (a cancel that came in
//! between finds no execution to stop, so this handler stops the one it started).

use contracts::jobs::JobStatus;
use contracts::tasks::SimulationJobInput;
use contracts::{BusEvent, ContractError, JobEvent, JobId};
use serde::Serialize;
use time::OffsetDateTime;

use crate::RequestedDeps;
use crate::error::HandlerError;
use crate::executions::Start;
use crate::store::{Claim, ClaimState, NewJob};

/// The namespace of job ids derived from event ids (UUID v5), fixed forever: changing it
/// would give a redelivered event a second job.
const JOB_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x5b0f_3c1e_8a4d_4e0b_9c71_2f6d_a8e3_41c7);

/// The handler's answer: Lambda records it; nothing reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Started {
    pub job_id: JobId,
    pub execution_arn: Option<String>,
    /// The execution already existed: this was a redelivery.
    pub duplicate: bool,
    /// The job was cancelled before it ran: its execution was not started, or stopped
    /// at once.
    pub cancelled: bool,
}

/// The job id for a `JobRequested` without one: the same for every delivery of the
/// event, different for every other event.
pub fn job_id_for_event(event_id: &str) -> JobId {
    let id = uuid::Uuid::new_v5(&JOB_ID_NAMESPACE, event_id.as_bytes()).to_string();
    match JobId::parse(&id) {
        Ok(job_id) => job_id,
        Err(e) => panic!("a hyphenated UUID (36 characters of [0-9a-f-]) is a valid job id: {e}"),
    }
}

/// Handles one `JobRequested` delivered by EventBridge.
pub async fn handle_job_requested(
    event: BusEvent,
    deps: &RequestedDeps,
) -> Result<Started, HandlerError> {
    let envelope = JobEvent::decode(&event.detail_type, &event.detail, &event.received())?;
    let JobEvent::Requested(request) = envelope.event else {
        return Err(HandlerError::InvalidEvent(
            ContractError::UnknownDetailType {
                source_name: event.source.clone(),
                detail_type: event.detail_type.clone(),
                known: "JobRequested".to_string(),
            },
        ));
    };
    // Upstream services may leave `requestedBy` out: the job then belongs to the source.
    let requested_by = request
        .requested_by
        .clone()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| event.source.clone());
    let store = deps.jobs.store();
    let job_id = match (&request.job_id, &request.idempotency_key) {
        (Some(id), _) => id.clone(),
        (None, Some(key)) => {
            // The request is on the bus already: nothing can roll it back, so its claim
            // is committed from the start.
            let derived = job_id_for_event(&envelope.meta.event_id);
            match store
                .claim_key(&requested_by, key, &derived, ClaimState::Committed)
                .await?
            {
                Claim::Claimed => derived,
                Claim::Taken(existing) | Claim::Resumed(existing) => existing,
                Claim::InProgress => {
                    return Err(HandlerError::KeyInProgress {
                        requested_by,
                        key: key.clone(),
                    });
                }
            }
        }
        (None, None) => job_id_for_event(&envelope.meta.event_id),
    };
    store
        .create(&NewJob {
            job_id: job_id.clone(),
            requested_by: requested_by.clone(),
            model: request.model.clone(),
            params: request.params.clone(),
            idempotency_key: request.idempotency_key.clone(),
            created_at: OffsetDateTime::now_utc(),
        })
        .await?;
    if let (Some(id), Some(key)) = (&request.job_id, &request.idempotency_key) {
        // The API's claim for this job, should the API have failed to commit it after
        // publishing (a crash, a timeout): the event is here, so the job is real.
        store.commit_key(&requested_by, key, id).await?;
    }

    if cancelled(deps, &job_id).await? {
        tracing::info!(job_id = %job_id, "the job was cancelled before it started: not starting it");
        return Ok(Started {
            job_id,
            execution_arn: None,
            duplicate: false,
            cancelled: true,
        });
    }
    let input = SimulationJobInput {
        job_id: job_id.clone(),
        model: request.model.clone(),
        params: request.params.clone(),
        requested_by: requested_by.clone(),
    };
    let input = serde_json::to_string(&input).map_err(|e| HandlerError::StartExecution {
        job_id: job_id.to_string(),
        message: format!("encoding its input: {e}"),
    })?;
    let (execution_arn, duplicate) = match deps.executions.start(&job_id, input).await? {
        Start::Started { execution_arn } => {
            tracing::info!(job_id = %job_id, requested_by = %requested_by, execution = %execution_arn, "execution started");
            (Some(execution_arn), false)
        }
        Start::AlreadyExists => {
            tracing::info!(job_id = %job_id, "execution already exists: a redelivered request");
            (None, true)
        }
    };
    // A cancel between the first read and the start found nothing to stop.
    let cancelled = cancelled(deps, &job_id).await?;
    if cancelled {
        tracing::info!(job_id = %job_id, "the job was cancelled while it started: stopping it");
        deps.executions.stop(&job_id, &requested_by).await?;
    }
    Ok(Started {
        job_id,
        execution_arn,
        duplicate,
        cancelled,
    })
}

async fn cancelled(deps: &RequestedDeps, job_id: &JobId) -> Result<bool, HandlerError> {
    let row = deps.jobs.store().get(job_id).await?;
    Ok(row.is_some_and(|row| row.status == JobStatus::Cancelled))
}
