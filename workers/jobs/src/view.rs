//! The job view: job events from the workers and the state machine update the job's row.

use contracts::{BusEvent, JobEvent};
use serde::Serialize;

use crate::Jobs;
use crate::error::HandlerError;
use crate::store::Applied;

/// What the handler did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ViewOutcome {
    Applied,
    /// Late, duplicated or out of order: the row already says as much or more.
    Ignored,
}

/// Handles one `JobStarted`, `JobProgress`, `JobSucceeded` or `JobFailed`.
pub async fn handle_job_event(event: BusEvent, jobs: &Jobs) -> Result<ViewOutcome, HandlerError> {
    let envelope = JobEvent::decode(&event.detail_type, &event.detail, &event.received())?;
    if let JobEvent::Requested(_) = envelope.event {
        // The JobRequested handler writes the row; the view has nothing to add.
        return Ok(ViewOutcome::Ignored);
    }
    let job_id = envelope
        .event
        .job_id()
        .map(ToString::to_string)
        .unwrap_or_default();
    match jobs.store().apply(&envelope).await? {
        Applied::Updated => {
            tracing::info!(job_id = %job_id, detail_type = %event.detail_type, event_id = %envelope.meta.event_id, "job updated");
            Ok(ViewOutcome::Applied)
        }
        Applied::Stale => {
            tracing::info!(job_id = %job_id, detail_type = %event.detail_type, event_id = %envelope.meta.event_id, "stale event ignored");
            Ok(ViewOutcome::Ignored)
        }
        // The row is written before the execution starts, so this is a race with an
        // upstream request or a row that never will exist; retrying settles which.
        Applied::UnknownJob => Err(HandlerError::UnknownJob { job_id }),
    }
}
