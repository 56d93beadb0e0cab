//! The event handlers: `JobRequested` → one execution; job events → the job's row.

use std::sync::Arc;

use aws_config::SdkConfig;
use contracts::jobs::{
    JobFailed, JobProgress, JobStarted, JobStatus, JobSucceeded, ResultLocation,
};
use contracts::{BusEvent, Envelope, JobEvent, JobId};
use jobs::{HandlerError, Jobs, RequestedDeps, ViewOutcome};
use serde_json::{Value, json};

use crate::support;

fn fixture(name: &str) -> BusEvent {
    let path = format!(
        "{}/../../shared/contracts/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("the fixture exists");
    BusEvent::from_json(&text).expect("the fixture is an EventBridge event")
}

/// A bus event as EventBridge delivers `event` (fresh event id).
fn delivered(event: impl Into<JobEvent>, producer: &str) -> BusEvent {
    let entry = Envelope::new(event.into(), producer).to_entry();
    BusEvent {
        version: Some("0".into()),
        id: uuid::Uuid::new_v4().to_string(),
        detail_type: entry.detail_type,
        source: entry.source,
        account: Some(emulator::ACCOUNT_ID.into()),
        time: None,
        region: Some(emulator::REGION.into()),
        resources: vec![],
        detail: serde_json::from_str(&entry.detail).expect("a detail"),
    }
}

async fn requested_deps(sdk: &SdkConfig) -> (Arc<RequestedDeps>, support::Machine) {
    let machine = support::machine(sdk, &support::simulation_job_definition()).await;
    let table = support::jobs_table(sdk).await;
    let deps = RequestedDeps::new(sdk, Jobs::new(sdk, table), machine.arn.clone());
    (Arc::new(deps), machine)
}

async fn executions(deps: &RequestedDeps) -> Vec<(String, String)> {
    let arn = deps.executions.state_machine_arn.as_str();
    let out = deps
        .executions
        .sfn
        .list_executions()
        .state_machine_arn(arn)
        .send()
        .await
        .expect("list executions");
    let mut names = Vec::new();
    for e in out.executions() {
        let described = deps
            .executions
            .sfn
            .describe_execution()
            .execution_arn(e.execution_arn())
            .send()
            .await
            .expect("describe execution");
        names.push((
            e.name().to_string(),
            described.input().unwrap_or_default().to_string(),
        ));
    }
    names
}

/// Ends the executions' waits so they do not linger in the emulator.
async fn finish_tasks(sdk: &SdkConfig, machine: &support::Machine) {
    for body in support::drain(sdk, &machine.queue_url).await {
        if let Ok(task) = contracts::tasks::SimulationTask::from_body(&body) {
            let _ = aws_sdk_sfn::Client::new(sdk)
                .send_task_failure()
                .task_token(task.task_token)
                .error(contracts::tasks::errors::MODEL_FAILED)
                .send()
                .await;
        }
    }
}

#[tokio::test]
async fn a_redelivered_job_requested_starts_one_execution() {
    let sdk = support::sdk().await;
    let (deps, machine) = requested_deps(&sdk).await;
    let mut event = fixture("job-requested.json");
    let job_id = emulator::unique_name("job");
    event.detail["jobId"] = json!(job_id);

    let first = jobs::handle_job_requested(event.clone(), &deps)
        .await
        .expect("started");
    let second = jobs::handle_job_requested(event, &deps)
        .await
        .expect("a duplicate is fine");
    assert_eq!(first.job_id.as_str(), job_id);
    assert!(!first.duplicate);
    assert_eq!(second.job_id, first.job_id);
    // moto refuses the second StartExecution (ExecutionAlreadyExists); AWS answers a
    // running execution's name and input with the same execution. One execution either way.
    assert!(
        second.duplicate || second.execution_arn == first.execution_arn,
        "{second:?}"
    );

    let runs = executions(&deps).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].0, job_id, "the execution is named after the job");
    let input: Value = serde_json::from_str(&runs[0].1).unwrap();
    assert_eq!(
        input,
        json!({"jobId": job_id, "model": "spin", "params": {"durationMs": 1500}, "requestedBy": "alice"})
    );
    let row = deps
        .jobs
        .store()
        .get(&first.job_id)
        .await
        .unwrap()
        .expect("a row");
    assert_eq!(row.status, JobStatus::Queued);
    assert_eq!(row.requested_by, "alice");
    finish_tasks(&sdk, &machine).await;
}

#[tokio::test]
async fn an_upstream_request_gets_a_stable_job_id_and_belongs_to_its_source() {
    let sdk = support::sdk().await;
    let (deps, machine) = requested_deps(&sdk).await;
    let mut event = fixture("job-requested.upstream.json");
    event.id = uuid::Uuid::new_v4().to_string();
    if let Value::Object(detail) = &mut event.detail {
        detail.remove("requestedBy");
    }

    let first = jobs::handle_job_requested(event.clone(), &deps)
        .await
        .expect("started");
    let again = jobs::handle_job_requested(event.clone(), &deps)
        .await
        .expect("a duplicate is fine");
    assert_eq!(first.job_id, jobs::job_id_for_event(&event.id));
    assert_eq!(again.job_id, first.job_id);
    assert_eq!(executions(&deps).await.len(), 1);
    let row = deps
        .jobs
        .store()
        .get(&first.job_id)
        .await
        .unwrap()
        .expect("a row");
    assert_eq!(
        row.requested_by, "acme.billing",
        "no requestedBy: the job is its source's"
    );
    assert_eq!(row.model, "sir");

    // Another event (another id) is another job.
    let mut other = event;
    other.id = uuid::Uuid::new_v4().to_string();
    let second = jobs::handle_job_requested(other, &deps)
        .await
        .expect("started");
    assert_ne!(second.job_id, first.job_id);
    assert_eq!(executions(&deps).await.len(), 2);
    finish_tasks(&sdk, &machine).await;
}

#[tokio::test]
async fn bad_job_requested_events_fail_for_good_naming_the_field() {
    let sdk = support::sdk().await;
    let (deps, _machine) = requested_deps(&sdk).await;
    for (patch, field) in [
        (json!({"model": "Bad Model"}), "model"),
        (json!({"params": "not an object"}), "params"),
        (json!({"meta": {"schemaVersion": 99}}), "meta.schemaVersion"),
    ] {
        let mut event = fixture("job-requested.upstream.json");
        for (k, v) in patch.as_object().unwrap() {
            event.detail[k] = v.clone();
        }
        let error = jobs::handle_job_requested(event, &deps)
            .await
            .expect_err("refused");
        assert!(!error.is_retryable(), "{error}");
        assert_eq!(error.error_type(), "Jobs.InvalidEvent");
        let HandlerError::InvalidEvent(contract) = &error else {
            panic!("expected InvalidEvent, got {error:?}");
        };
        assert_eq!(contract.field(), field, "{error}");
        let diagnostic: lambda_runtime::Diagnostic = error.into();
        assert_eq!(diagnostic.error_type, "Jobs.InvalidEvent");
    }
    assert!(executions(&deps).await.is_empty());
}

async fn view_deps(sdk: &SdkConfig) -> Arc<Jobs> {
    let table = support::jobs_table(sdk).await;
    Arc::new(Jobs::new(sdk, table))
}

async fn new_job(deps: &Jobs) -> JobId {
    let job_id = JobId::generate();
    deps.store()
        .create(&jobs::store::NewJob {
            job_id: job_id.clone(),
            requested_by: "alice".into(),
            model: "spin".into(),
            params: serde_json::Map::new(),
            idempotency_key: None,
            created_at: time::OffsetDateTime::now_utc(),
        })
        .await
        .expect("create");
    job_id
}

async fn apply(deps: &Jobs, event: impl Into<JobEvent>) -> ViewOutcome {
    jobs::handle_job_event(delivered(event, "simulation"), deps)
        .await
        .expect("handled")
}

fn progress(job_id: &JobId, progress: f64) -> JobProgress {
    JobProgress {
        job_id: job_id.clone(),
        progress,
        message: None,
    }
}

fn started(job_id: &JobId, attempt: u32) -> JobStarted {
    handed_out(job_id, 0, attempt)
}

fn handed_out(job_id: &JobId, handout: u32, attempt: u32) -> JobStarted {
    JobStarted {
        job_id: job_id.clone(),
        worker: format!("worker-{handout}-{attempt}"),
        handout,
        attempt,
    }
}

fn succeeded(job_id: &JobId) -> JobSucceeded {
    JobSucceeded {
        job_id: job_id.clone(),
        summary: json!({"peakInfected": 2931}),
        result: ResultLocation {
            bucket: "fleet-dev-results".into(),
            key: format!("results/{job_id}.json"),
            bytes: 48211,
        },
    }
}

/// Step Functions hands a job out again with a new message after its worker died, and
/// that message's deliveries count from 1 again: the view shows the newest hand-out's
/// worker, not the dead one's, and a late start of an older hand-out does not win.
#[tokio::test]
async fn the_view_shows_the_worker_of_the_newest_hand_out() {
    let sdk = support::sdk().await;
    let deps = view_deps(&sdk).await;
    let job_id = new_job(&deps).await;
    let worker = || async {
        let row = deps.store().get(&job_id).await.unwrap().expect("a row");
        (row.worker, row.handout, row.attempt)
    };
    let shown = |handout: u32, attempt: u32| {
        (
            Some(format!("worker-{handout}-{attempt}")),
            Some(handout),
            Some(attempt),
        )
    };

    assert_eq!(
        apply(&deps, handed_out(&job_id, 0, 2)).await,
        ViewOutcome::Applied
    );
    assert_eq!(
        apply(&deps, handed_out(&job_id, 1, 1)).await,
        ViewOutcome::Applied,
        "the job handed out again, its new message delivered for the first time"
    );
    assert_eq!(worker().await, shown(1, 1));
    assert_eq!(
        apply(&deps, handed_out(&job_id, 0, 3)).await,
        ViewOutcome::Ignored,
        "a redelivery of the first hand-out's message, late"
    );
    assert_eq!(
        apply(&deps, handed_out(&job_id, 1, 2)).await,
        ViewOutcome::Applied
    );
    assert_eq!(worker().await, shown(1, 2));
}

#[tokio::test]
async fn the_view_follows_a_job_and_never_moves_it_backwards() {
    let sdk = support::sdk().await;
    let deps = view_deps(&sdk).await;
    let job_id = new_job(&deps).await;
    let view = || async { deps.store().get(&job_id).await.unwrap().expect("a row") };

    assert_eq!(
        apply(&deps, started(&job_id, 1)).await,
        ViewOutcome::Applied
    );
    let running = view().await;
    assert_eq!(
        (running.status, running.worker.as_deref()),
        (JobStatus::Running, Some("worker-0-1"))
    );

    assert_eq!(
        apply(&deps, progress(&job_id, 0.5)).await,
        ViewOutcome::Applied
    );
    assert_eq!(
        apply(&deps, progress(&job_id, 0.3)).await,
        ViewOutcome::Ignored,
        "progress only increases"
    );
    assert_eq!(
        apply(&deps, progress(&job_id, 0.5)).await,
        ViewOutcome::Ignored,
        "a duplicate"
    );
    assert_eq!(view().await.progress, 0.5);
    assert_eq!(
        apply(&deps, started(&job_id, 2)).await,
        ViewOutcome::Applied,
        "a redelivery to another worker"
    );
    assert_eq!(
        apply(&deps, started(&job_id, 1)).await,
        ViewOutcome::Ignored,
        "an older attempt"
    );
    assert_eq!(view().await.attempt, Some(2));

    assert_eq!(apply(&deps, succeeded(&job_id)).await, ViewOutcome::Applied);
    // Late and out-of-order events after the end change nothing.
    assert_eq!(
        apply(&deps, progress(&job_id, 0.9)).await,
        ViewOutcome::Ignored
    );
    assert_eq!(
        apply(&deps, started(&job_id, 3)).await,
        ViewOutcome::Ignored
    );
    let failed = JobFailed {
        job_id: job_id.clone(),
        error: "Model.Failed".into(),
        cause: "late".into(),
    };
    assert_eq!(
        apply(&deps, failed).await,
        ViewOutcome::Ignored,
        "a final status is never overwritten"
    );
    assert_eq!(apply(&deps, succeeded(&job_id)).await, ViewOutcome::Ignored);

    let done = view().await.view();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.progress, 1.0);
    assert_eq!(done.error, None);
    let result = done.result.expect("a result");
    assert_eq!(result.summary, json!({"peakInfected": 2931}));
    assert_eq!(result.location.bytes, 48211);
    assert!(done.updated_at >= done.created_at);
}

#[tokio::test]
async fn a_failure_before_any_start_is_recorded() {
    let sdk = support::sdk().await;
    let deps = view_deps(&sdk).await;
    let job_id = new_job(&deps).await;
    let failed = JobFailed {
        job_id: job_id.clone(),
        error: "Model.UnknownModel".into(),
        cause: "no model `spin` here".into(),
    };
    assert_eq!(apply(&deps, failed).await, ViewOutcome::Applied);
    assert_eq!(
        apply(&deps, started(&job_id, 1)).await,
        ViewOutcome::Ignored,
        "a late start"
    );
    let view = deps.store().get(&job_id).await.unwrap().unwrap().view();
    assert_eq!(view.status, JobStatus::Failed);
    let error = view.error.expect("an error");
    assert_eq!(
        (error.error.as_str(), error.cause.as_str()),
        ("Model.UnknownModel", "no model `spin` here")
    );
}

#[tokio::test]
async fn the_view_decodes_the_contract_fixtures() {
    let sdk = support::sdk().await;
    let deps = view_deps(&sdk).await;
    // The fixtures' job has no row here: the view says so, retryably.
    let error = jobs::handle_job_event(fixture("job-started.json"), &deps)
        .await
        .expect_err("no row");
    assert!(
        matches!(error, HandlerError::UnknownJob { .. }),
        "{error:?}"
    );
    assert!(error.is_retryable());
    // A JobRequested reaching the view is ignored, not an error.
    let outcome = jobs::handle_job_event(fixture("job-requested.json"), &deps)
        .await
        .unwrap();
    assert_eq!(outcome, ViewOutcome::Ignored);
    // A progress outside 0..1 is refused for good, naming the field.
    let mut bad = fixture("job-progress.json");
    bad.detail["progress"] = json!(1.5);
    let error = jobs::handle_job_event(bad, &deps)
        .await
        .expect_err("refused");
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("field `progress`"), "{error}");
}

/// `9999-12-31T23:59:59-01:00` is a valid local time whose UTC instant is in year 10000,
/// which an `OffsetDateTime` cannot hold in UTC: converting it used to panic the handler.
const YEAR_10000_UTC: &str = "9999-12-31T23:59:59-01:00";

#[tokio::test]
async fn a_job_event_from_year_10000_utc_fails_for_good_naming_meta_occurred_at() {
    let sdk = support::sdk().await;
    let deps = view_deps(&sdk).await;
    let job_id = new_job(&deps).await;
    let mut event = delivered(started(&job_id, 1), "simulation");
    event.detail["meta"]["occurredAt"] = json!(YEAR_10000_UTC);
    let error = jobs::handle_job_event(event, &deps)
        .await
        .expect_err("refused");
    assert!(!error.is_retryable(), "{error}");
    assert_eq!(error.error_type(), "Jobs.InvalidEvent");
    assert!(error.to_string().contains("meta.occurredAt"), "{error}");
    let row = deps.store().get(&job_id).await.unwrap().expect("a row");
    assert_eq!(row.status, JobStatus::Queued, "the row is untouched");
}

#[tokio::test]
async fn the_store_refuses_an_unrepresentable_time_without_relying_on_the_contracts() {
    // An envelope built in code skips the contracts' bounds: the store's own arithmetic
    // must still hold.
    let sdk = support::sdk().await;
    let deps = view_deps(&sdk).await;
    let job_id = new_job(&deps).await;
    let mut envelope = Envelope::new(JobEvent::from(started(&job_id, 1)), "simulation");
    envelope.meta.occurred_at = time::macros::datetime!(9999-12-31 23:59:59 -1);
    let error = deps.store().apply(&envelope).await.expect_err("refused");
    assert!(error.to_string().contains("meta.occurredAt"), "{error}");
    let error = HandlerError::from(error);
    assert!(!error.is_retryable(), "{error}");
    assert_eq!(error.error_type(), "Jobs.InvalidEvent");
    let row = deps.store().get(&job_id).await.unwrap().expect("a row");
    assert_eq!(row.status, JobStatus::Queued, "the row is untouched");

    // So does a new job's creation time.
    let error = deps
        .store()
        .create(&jobs::store::NewJob {
            job_id: JobId::generate(),
            requested_by: "alice".into(),
            model: "spin".into(),
            params: serde_json::Map::new(),
            idempotency_key: None,
            created_at: time::macros::datetime!(9999-12-31 23:59:59 -1),
        })
        .await
        .expect_err("refused");
    assert!(error.to_string().contains("createdAt"), "{error}");
}
