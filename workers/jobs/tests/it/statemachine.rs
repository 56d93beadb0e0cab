//! The simulation-job state machine, run by the emulator with a fake worker: the test
//! reads the task from the queue and answers through the task token.
//!
//! Where moto 5.2.5 differs from AWS here, the emulator's launcher makes it behave as AWS
//! does (a retried task's own token, a missed heartbeat's name, a failure's cause).

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_sfn::error::ProvideErrorMetadata;
use aws_sdk_sfn::types::ExecutionStatus;
use contracts::JobEvent;
use contracts::envelope::Received;
use contracts::tasks::{SimulationTask, TaskOutput, errors};
use serde_json::{Value, json};

use crate::support::{self, Machine};

const RUN_LIMIT: Duration = Duration::from_secs(60);

async fn start(sdk: &SdkConfig, machine: &Machine, input: Value) -> String {
    aws_sdk_sfn::Client::new(sdk)
        .start_execution()
        .state_machine_arn(&machine.arn)
        .name(input["jobId"].as_str().expect("a job id"))
        .input(input.to_string())
        .send()
        .await
        .expect("start the execution")
        .execution_arn()
        .to_string()
}

fn job_input(job_id: &str) -> Value {
    json!({"jobId": job_id, "model": "spin", "params": {"durationMs": 10}, "requestedBy": "alice"})
}

/// The next task the machine hands out, as a worker parses it.
async fn next_task(sdk: &SdkConfig, machine: &Machine) -> SimulationTask {
    let body = support::wait_for("a task on the simulation queue", RUN_LIMIT, || async {
        support::receive(sdk, &machine.queue_url, Duration::from_secs(2)).await
    })
    .await;
    SimulationTask::from_body(&body)
        .unwrap_or_else(|e| panic!("a worker can parse the task: {e}\n{body}"))
}

/// Waits for the execution to end; returns its status, error and cause.
async fn finished(
    sdk: &SdkConfig,
    execution: &str,
) -> (ExecutionStatus, Option<String>, Option<String>) {
    let sfn = aws_sdk_sfn::Client::new(sdk);
    support::wait_for("the execution to end", RUN_LIMIT, || async {
        let out = sfn
            .describe_execution()
            .execution_arn(execution)
            .send()
            .await
            .expect("describe execution");
        (out.status() != &ExecutionStatus::Running).then(|| {
            (
                out.status().clone(),
                out.error().map(ToString::to_string),
                out.cause().map(ToString::to_string),
            )
        })
    })
    .await
}

/// The one outcome event the execution published.
async fn outcome(sdk: &SdkConfig, machine: &Machine) -> JobEvent {
    let body = support::wait_for("the outcome event", RUN_LIMIT, || async {
        support::receive(sdk, &machine.outcomes_url, Duration::from_secs(2)).await
    })
    .await;
    let (event, job_event) = support::job_event(&body);
    assert_eq!(event.source, "fleet.jobs");
    job_event
}

fn output(worker: &str) -> TaskOutput {
    TaskOutput {
        summary: json!({"peakInfected": 2931}),
        result: contracts::jobs::ResultLocation {
            bucket: "fleet-dev-results".to_string(),
            key: "results/x.json".to_string(),
            bytes: 48211,
        },
        worker: worker.to_string(),
    }
}

#[tokio::test]
async fn a_job_the_worker_finishes_succeeds_and_publishes_job_succeeded() {
    let sdk = support::sdk().await;
    let machine = support::machine(&sdk, &support::simulation_job_definition()).await;
    let job_id = emulator::unique_name("job");
    let execution = start(&sdk, &machine, job_input(&job_id)).await;

    let task = next_task(&sdk, &machine).await;
    assert_eq!(task.job_id.as_str(), job_id);
    assert_eq!(task.model, "spin");
    assert_eq!(task.params["durationMs"], 10);
    assert_eq!(task.requested_by.as_deref(), Some("alice"));
    aws_sdk_sfn::Client::new(&sdk)
        .send_task_success()
        .task_token(&task.task_token)
        .output(serde_json::to_string(&output("worker-1")).unwrap())
        .send()
        .await
        .expect("send task success");

    let (status, error, _) = finished(&sdk, &execution).await;
    assert_eq!(status, ExecutionStatus::Succeeded, "error {error:?}");
    match outcome(&sdk, &machine).await {
        JobEvent::Succeeded(e) => {
            assert_eq!(e.job_id.as_str(), job_id);
            assert_eq!(e.summary, json!({"peakInfected": 2931}));
            assert_eq!(e.result, output("worker-1").result);
        }
        other => panic!("expected JobSucceeded, got {other:?}"),
    }
}

#[tokio::test]
async fn requested_by_is_optional_in_the_input() {
    let sdk = support::sdk().await;
    let machine = support::machine(&sdk, &support::simulation_job_definition()).await;
    let job_id = emulator::unique_name("job");
    let input = json!({"jobId": job_id, "model": "sir", "params": {}});
    let _execution = start(&sdk, &machine, input).await;
    let task = next_task(&sdk, &machine).await;
    assert_eq!(task.requested_by, None);
    // Let the execution finish rather than linger in the emulator.
    aws_sdk_sfn::Client::new(&sdk)
        .send_task_failure()
        .task_token(&task.task_token)
        .error(errors::UNKNOWN_MODEL)
        .send()
        .await
        .expect("send task failure");
}

#[tokio::test]
async fn a_model_failure_is_not_retried_and_publishes_job_failed() {
    let sdk = support::sdk().await;
    let machine = support::machine(&sdk, &support::simulation_job_definition()).await;
    let job_id = emulator::unique_name("job");
    let execution = start(&sdk, &machine, job_input(&job_id)).await;

    let task = next_task(&sdk, &machine).await;
    aws_sdk_sfn::Client::new(&sdk)
        .send_task_failure()
        .task_token(&task.task_token)
        .error(errors::MODEL_FAILED)
        .cause("spin told to fail")
        .send()
        .await
        .expect("send task failure");

    let (status, error, _) = finished(&sdk, &execution).await;
    assert_eq!(status, ExecutionStatus::Failed);
    assert_eq!(error.as_deref(), Some(errors::MODEL_FAILED));
    match outcome(&sdk, &machine).await {
        JobEvent::Failed(e) => {
            assert_eq!(e.job_id.as_str(), job_id);
            assert_eq!(e.error, errors::MODEL_FAILED);
            // The worker's cause reaches JobFailed (the emulator's launcher makes moto
            // pass it on, as AWS does).
            assert_eq!(e.cause, "spin told to fail", "{e:?}");
        }
        other => panic!("expected JobFailed, got {other:?}"),
    }
    let again = support::receive(&sdk, &machine.queue_url, Duration::from_secs(1)).await;
    assert_eq!(again, None, "Model.* errors are not retried");
}

#[tokio::test]
async fn a_transient_worker_failure_is_retried() {
    let sdk = support::sdk().await;
    let mut definition = support::simulation_job_definition();
    // Shorter backoff than production's 5 s so the test is quick; the rule is the same.
    definition["States"]["Run"]["Retry"][0]["IntervalSeconds"] = json!(1);
    let machine = support::machine(&sdk, &definition).await;
    let job_id = emulator::unique_name("job");
    let execution = start(&sdk, &machine, job_input(&job_id)).await;
    let sfn = aws_sdk_sfn::Client::new(&sdk);

    let first = next_task(&sdk, &machine).await;
    sfn.send_task_failure()
        .task_token(&first.task_token)
        .error(errors::WORKER_TRANSIENT)
        .cause("S3 said 503")
        .send()
        .await
        .expect("send task failure");
    // The retry sends the task again, with a token of its own (moto 5.2.5 reused the
    // first; the emulator's launcher makes it as AWS does).
    let second = next_task(&sdk, &machine).await;
    assert_eq!(second.job_id, first.job_id);
    assert_ne!(
        second.task_token, first.task_token,
        "each attempt has its own token"
    );
    assert_eq!(
        (first.handout, second.handout),
        (0, 1),
        "each hand-out is numbered, so that its worker's JobStarted tells them apart"
    );
    // A late answer to the first attempt does not settle the retry.
    let stale = TaskOutput {
        summary: json!({"stale": true}),
        ..output("worker-1")
    };
    let late = sfn
        .send_task_success()
        .task_token(&first.task_token)
        .output(serde_json::to_string(&stale).unwrap())
        .send()
        .await
        .expect_err("the first attempt's token is closed");
    assert_eq!(late.code(), Some("TaskTimedOut"), "{late:?}");
    sfn.send_task_success()
        .task_token(&second.task_token)
        .output(serde_json::to_string(&output("worker-2")).unwrap())
        .send()
        .await
        .expect("send task success");

    let (status, error, _) = finished(&sdk, &execution).await;
    assert_eq!(status, ExecutionStatus::Succeeded, "error {error:?}");
    match outcome(&sdk, &machine).await {
        JobEvent::Succeeded(e) => assert_eq!(e.summary, output("worker-2").summary),
        other => panic!("expected JobSucceeded, got {other:?}"),
    }
    // The retry took only its own answer: it handed the task out once, not again.
    let extra = support::drain(&sdk, &machine.queue_url).await.len();
    assert_eq!(extra, 0, "tasks handed out after the retry's");
}

#[tokio::test]
async fn a_worker_that_stops_heartbeating_fails_the_job() {
    let sdk = support::sdk().await;
    let mut definition = support::simulation_job_definition();
    definition["States"]["Run"]["HeartbeatSeconds"] = json!(2);
    definition["States"]["Run"]["Retry"][0]["IntervalSeconds"] = json!(1);
    let machine = support::machine(&sdk, &definition).await;
    let job_id = emulator::unique_name("job");
    let started = std::time::Instant::now();
    let execution = start(&sdk, &machine, job_input(&job_id)).await;

    // The worker takes the task and never answers nor heartbeats.
    let _abandoned = next_task(&sdk, &machine).await;
    let (status, error, cause) = finished(&sdk, &execution).await;
    assert_eq!(status, ExecutionStatus::Failed);
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "the heartbeat, not the 3600 s timeout, ended the task"
    );
    // States.* names cannot be a Fail state's own error: they lead the cause.
    assert_eq!(error.as_deref(), Some("Job.Failed"));
    let failed = match outcome(&sdk, &machine).await {
        JobEvent::Failed(e) => e,
        other => panic!("expected JobFailed, got {other:?}"),
    };
    assert_eq!(failed.job_id.as_str(), job_id);
    assert!(
        cause
            .as_deref()
            .is_some_and(|c| c.starts_with(&failed.error)),
        "cause {cause:?}"
    );
    // Named as AWS names it (the emulator's launcher makes moto do so), so the Retry on
    // `States.HeartbeatTimeout` applies: MaxAttempts 2 handed out two more tasks.
    assert_eq!(failed.error, "States.HeartbeatTimeout");
    let retries = support::drain(&sdk, &machine.queue_url).await.len();
    assert_eq!(retries, 2, "the retries' tasks");
}

#[tokio::test]
async fn a_worker_answer_without_a_result_fails_the_job() {
    let sdk = support::sdk().await;
    let machine = support::machine(&sdk, &support::simulation_job_definition()).await;
    let job_id = emulator::unique_name("job");
    let execution = start(&sdk, &machine, job_input(&job_id)).await;
    let task = next_task(&sdk, &machine).await;
    aws_sdk_sfn::Client::new(&sdk)
        .send_task_success()
        .task_token(&task.task_token)
        .output(json!({"worker": "w", "summary": {}}).to_string())
        .send()
        .await
        .expect("send task success");
    let (status, error, _) = finished(&sdk, &execution).await;
    assert_eq!(status, ExecutionStatus::Failed);
    assert_eq!(error.as_deref(), Some("Worker.BadOutput"));
    match outcome(&sdk, &machine).await {
        JobEvent::Failed(e) => assert_eq!(e.error, "Worker.BadOutput"),
        other => panic!("expected JobFailed, got {other:?}"),
    }
}

/// Renders the Detail templates of the machine's putEvents states the way Step Functions
/// does, without an emulator, and decodes them with the contract: a field renamed in
/// either place fails here first.
#[test]
fn the_published_details_decode_as_job_events() {
    let definition = support::simulation_job_definition();
    let state = json!({
        "jobId": "0193a1f2-7c4d-7e55-9a0b-3f1e2d3c4b5a",
        "model": "sir",
        "params": {},
        "requestedBy": null,
        "output": serde_json::to_value(output("worker-1")).unwrap(),
        "caught": {"Error": "Model.Failed", "Cause": "diverged"},
    });
    let received = Received {
        id: "ignored",
        source: "fleet.jobs",
        time: None,
    };
    for (name, detail_type) in [
        ("PublishSucceeded", "JobSucceeded"),
        ("PublishFailed", "JobFailed"),
    ] {
        let entry = &definition["States"][name]["Parameters"]["Entries"][0];
        assert_eq!(entry["DetailType"], detail_type);
        assert_eq!(entry["Source"], "fleet.jobs");
        assert_eq!(entry["EventBusName"], "${EventBusName}");
        let detail = render(&entry["Detail"], &state);
        let envelope = JobEvent::decode(detail_type, &detail, &received)
            .unwrap_or_else(|e| panic!("{name}'s detail does not decode: {e}\n{detail:#}"));
        assert_eq!(envelope.meta.producer, "simulation-job");
        assert_eq!(envelope.meta.correlation_id, state["jobId"]);
        assert_eq!(envelope.meta.schema_version, 1);
        match envelope.event {
            JobEvent::Succeeded(e) => {
                assert_eq!(e.summary, json!({"peakInfected": 2931}));
                assert_eq!(e.result.bytes, 48211);
            }
            JobEvent::Failed(e) => {
                assert_eq!(
                    (e.error.as_str(), e.cause.as_str()),
                    ("Model.Failed", "diverged")
                );
            }
            other => panic!("{name} rendered {other:?}"),
        }
    }
}

/// Step Functions' Parameters rendering for what the definition uses: `key.$` with a
/// `$.path`, `$$.State.EnteredTime` or `States.UUID()`.
fn render(template: &Value, state: &Value) -> Value {
    match template {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, value)| match key.strip_suffix(".$") {
                    Some(key) => (
                        key.to_string(),
                        evaluate(value.as_str().expect("a path"), state),
                    ),
                    None => (key.clone(), render(value, state)),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

fn evaluate(expression: &str, state: &Value) -> Value {
    match expression {
        "$$.State.EnteredTime" => json!("2026-11-22T10:00:03.123Z"),
        "States.UUID()" => json!("6e1ef1c6-4f57-4f34-9b2b-0d7b1d6fd3f8"),
        path => {
            let path = path
                .strip_prefix("$.")
                .unwrap_or_else(|| panic!("unsupported path {path}"));
            path.split('.')
                .fold(state, |value, field| &value[field])
                .clone()
        }
    }
}
