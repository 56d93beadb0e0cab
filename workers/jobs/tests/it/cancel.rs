//! `POST /jobs/{id}/cancel`: the owner stops a job, once, and a job cancelled before it
//! started never starts.

use aws_sdk_sfn::types::ExecutionStatus;
use axum::http::StatusCode;
use contracts::{BusEvent, JobEvent, JobId};
use jobs::RequestedDeps;

use crate::api::{Answer, call, post_job, published};
use crate::support::{self, Api, token};

/// `POST /jobs/{job}/cancel` as `sub`.
async fn cancel(api: &Api, job: &str, sub: &str) -> Answer {
    call(
        api,
        "POST",
        &format!("/jobs/{job}/cancel"),
        Some(&token(sub)),
        None,
    )
    .await
}

/// `GET /jobs/{job}` as `sub`.
async fn show(api: &Api, job: &str, sub: &str) -> Answer {
    call(api, "GET", &format!("/jobs/{job}"), Some(&token(sub)), None).await
}

fn requested_deps(api: &Api) -> RequestedDeps {
    RequestedDeps {
        jobs: api.deps.jobs.clone(),
        executions: api.deps.executions.clone(),
    }
}

/// The JobRequested of `job_id` the API published.
fn requested_of(events: &[(BusEvent, JobEvent)], job_id: &str) -> BusEvent {
    events
        .iter()
        .find(|(_, e)| matches!(e, JobEvent::Requested(r) if r.job_id.as_ref().map(JobId::as_str) == Some(job_id)))
        .map(|(bus, _)| bus.clone())
        .expect("the job's JobRequested")
}

fn cancels(events: &[(BusEvent, JobEvent)]) -> Vec<&BusEvent> {
    events
        .iter()
        .filter(|(_, e)| matches!(e, JobEvent::Cancelled(_)))
        .map(|(bus, _)| bus)
        .collect()
}

async fn execution_status(api: &Api, job_id: &str) -> Option<ExecutionStatus> {
    let job_id = JobId::parse(job_id).expect("a job id");
    api.deps
        .executions
        .status(&job_id)
        .await
        .expect("DescribeExecution")
}

#[tokio::test]
async fn the_owner_cancels_a_running_job_once_and_its_execution_stops() {
    let api = support::api().await;
    let job = post_job(&api, "alice").await;
    let requested = requested_of(&published(&api).await, &job);
    let started = jobs::handle_job_requested(requested, &requested_deps(&api))
        .await
        .expect("the job starts");
    assert!(started.execution_arn.is_some() && !started.cancelled);
    assert_eq!(
        execution_status(&api, &job).await,
        Some(ExecutionStatus::Running)
    );

    let by_bob = cancel(&api, &job, "bob").await;
    assert_eq!(by_bob.status, StatusCode::NOT_FOUND, "{}", by_bob.body);
    assert_eq!(
        execution_status(&api, &job).await,
        Some(ExecutionStatus::Running),
        "someone else's cancel stops nothing"
    );

    let cancelled = cancel(&api, &job, "alice").await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "CANCELLED");
    assert_eq!(cancelled.body["error"]["error"], "Job.Cancelled");
    assert_eq!(
        execution_status(&api, &job).await,
        Some(ExecutionStatus::Aborted)
    );

    let again = cancel(&api, &job, "alice").await;
    assert_eq!(again.status, StatusCode::OK, "idempotent: {}", again.body);
    assert_eq!(again.body["status"], "CANCELLED");
    let shown = show(&api, &job, "alice").await;
    assert_eq!(shown.body["status"], "CANCELLED", "{}", shown.body);

    let events = published(&api).await;
    let cancels = cancels(&events);
    assert_eq!(cancels.len(), 1, "one JobCancelled: {events:?}");
    assert_eq!(cancels[0].source, "fleet.jobs");
    assert_eq!(cancels[0].detail["jobId"], job);
    assert_eq!(cancels[0].detail["cancelledBy"], "alice");
}

#[tokio::test]
async fn a_job_cancelled_before_its_execution_starts_never_starts() {
    let api = support::api().await;
    let job = post_job(&api, "alice").await;
    let cancelled = cancel(&api, &job, "alice").await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "CANCELLED");

    // The JobRequested is delivered after the cancel (EventBridge is asynchronous).
    let requested = requested_of(&published(&api).await, &job);
    let started = jobs::handle_job_requested(requested, &requested_deps(&api))
        .await
        .expect("handled");
    assert!(started.cancelled, "{started:?}");
    assert_eq!(started.execution_arn, None);
    assert_eq!(execution_status(&api, &job).await, None, "never started");
}

#[tokio::test]
async fn an_ended_job_cannot_be_cancelled() {
    let api = support::api().await;
    let job = post_job(&api, "alice").await;
    let job_id = JobId::parse(&job).expect("a job id");
    let failed = contracts::Envelope::new(
        JobEvent::Failed(contracts::jobs::JobFailed {
            job_id: job_id.clone(),
            error: "Model.Failed".into(),
            cause: "it diverged".into(),
        }),
        "test",
    );
    api.deps.jobs.store().apply(&failed).await.expect("applied");

    let answer = cancel(&api, &job, "alice").await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);
    let message = answer.body["error"].as_str().unwrap_or_default();
    assert!(message.contains("has ended (FAILED)"), "{message}");
    let shown = show(&api, &job, "alice").await;
    assert_eq!(shown.body["status"], "FAILED", "the outcome stays");
    assert!(
        cancels(&published(&api).await).is_empty(),
        "nothing published"
    );
}
