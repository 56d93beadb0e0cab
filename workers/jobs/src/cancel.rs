//! `POST /jobs/{id}/cancel`: the owner stops a job that has not ended.
//!
//! In this order, each step safe to repeat:
//!
//! 1. A job that has ended answers `409` (`CANCELLED` itself answers `200`: a cancel is
//!    idempotent). So does one whose execution has ended while the view has not caught up.
//! 2. `JobCancelled` is published, with an event id derived from the job id, so a repeat
//!    is the same event and consumers that keep event ids (the notifier) take it once.
//! 3. The row is marked `CANCELLED` (only forward: a row that ended meanwhile stays).
//! 4. The execution is stopped. A worker running the job learns it from its next
//!    heartbeat (the token is closed), stops the model and acknowledges the message; a
//!    message still queued is acknowledged unrun when a worker takes it.
//!
//! Marking the row before stopping closes the race with `jobs-requested`: it reads the
//! row after `StartExecution`, so either it sees `CANCELLED` and stops the execution it
//! started, or its start came before this stop.

use std::sync::Arc;

use auth::Claims;
use aws_sdk_sfn::types::ExecutionStatus;
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use contracts::jobs::{JobCancelled, JobStatus};
use contracts::{Envelope, JobEvent, JobId};

use crate::api::{Caller, owned_job, publish_failed, store_failed};
use crate::error::ApiError;
use crate::{ApiDeps, PRODUCER};

/// The namespace of the event ids of `JobCancelled` (UUID v5 of the job id), fixed
/// forever: every cancel of one job is one event.
const CANCEL_EVENT_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x0c4e_71d2_93a8_4f65_b1e0_6d2a_58c9_f3b4);

/// The one `JobCancelled` of `job_id`: the same event id however often it is sent.
pub fn cancelled_event(job_id: &JobId, by: &str) -> Envelope<JobEvent> {
    let mut envelope = Envelope::new(
        JobEvent::Cancelled(JobCancelled {
            job_id: job_id.clone(),
            cancelled_by: by.to_string(),
        }),
        PRODUCER,
    );
    envelope.meta.event_id =
        uuid::Uuid::new_v5(&CANCEL_EVENT_NAMESPACE, job_id.as_str().as_bytes()).to_string();
    envelope
}

pub(crate) async fn cancel_job(
    State(deps): State<Arc<ApiDeps>>,
    Caller(claims): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = owned_job(&deps, &claims, &id).await?;
    let job_id = job.job_id.clone();
    match job.status {
        // Again: stopping is idempotent, and an earlier cancel may have failed to stop.
        JobStatus::Cancelled => {
            stop(&deps, &job_id, &claims).await?;
            return Ok(Json(job.view()).into_response());
        }
        status if status.is_final() => return Err(ended(&job_id, status.as_str())),
        _ => {}
    }
    match deps.executions.status(&job_id).await {
        Ok(None | Some(ExecutionStatus::Running | ExecutionStatus::Aborted)) => {}
        Ok(Some(status)) => return Err(ended(&job_id, status.as_str())),
        Err(e) => {
            tracing::error!(job_id = %job_id, error = %e, "cannot cancel");
            return Err(ApiError::Unavailable);
        }
    }
    let envelope = cancelled_event(&job_id, &claims.sub);
    if let Err(e) = deps.publisher.publish(&envelope).await {
        tracing::error!(job_id = %job_id, error = %e, "JobCancelled not published");
        return Err(publish_failed(&e));
    }
    deps.jobs
        .store()
        .apply(&envelope)
        .await
        .map_err(store_failed)?;
    stop(&deps, &job_id, &claims).await?;
    tracing::info!(job_id = %job_id, cancelled_by = %claims.sub, "job cancelled");
    let job = owned_job(&deps, &claims, job_id.as_str()).await?;
    if job.status != JobStatus::Cancelled {
        // It ended between the check and the mark: the row keeps its outcome.
        return Err(ended(&job_id, job.status.as_str()));
    }
    Ok(Json(job.view()).into_response())
}

async fn stop(deps: &ApiDeps, job_id: &JobId, claims: &Claims) -> Result<(), ApiError> {
    deps.executions
        .stop(job_id, &claims.sub)
        .await
        .map_err(|e| {
            tracing::error!(job_id = %job_id, error = %e, "the cancelled job's execution was not stopped");
            ApiError::Unavailable
        })
}

fn ended(job_id: &JobId, status: &str) -> ApiError {
    ApiError::Ended(format!(
        "job {job_id} has ended ({status}): there is nothing to cancel"
    ))
}
