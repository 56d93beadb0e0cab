//! The worker in process against the emulator: a Step Functions task in, an answered task
//! token and a stored result out.

use std::time::Duration;

use aws_sdk_sfn::types::ExecutionStatus;
use contracts::tasks::TaskOutput;
use emulator::testing::{self, wait_until};
use serde_json::json;
use sqs_worker::attributes;
use tokio_util::sync::CancellationToken;

use crate::stack::{Stack, job_id};

/// Runs the worker until `f` is done.
async fn with_worker<T>(stack: &Stack, f: impl std::future::Future<Output = T>) -> T {
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(simulation::run(stack.worker_config(), shutdown.clone()));
    let out = f.await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(20), worker)
        .await
        .expect("the worker stops")
        .unwrap()
        .unwrap();
    out
}

#[tokio::test]
async fn a_job_runs_end_to_end_and_its_result_is_stored() {
    let stack = Stack::new(30, 20).await;
    let job = job_id();
    let params = json!({"population": 10000, "initialInfected": 10, "beta": 0.3, "gamma": 0.1, "days": 60, "runs": 20, "seed": 7});
    let execution = stack.start(&job, "sir", params).await;
    let finished = with_worker(&stack, stack.finished(&execution, Duration::from_secs(30))).await;

    assert_eq!(finished.status, ExecutionStatus::Succeeded, "{finished:?}");
    let output: TaskOutput = serde_json::from_value(finished.output.unwrap()).unwrap();
    assert_eq!(output.result.bucket, stack.bucket);
    assert_eq!(output.result.key, format!("results/{job}.json"));
    let stored = stack.result(&output.result.key).await;
    assert_eq!(stored.len() as u64, output.result.bytes);
    let stored: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    assert!(stored.is_object() && !stored.as_object().unwrap().is_empty());
    assert_eq!(
        stack.counts(&stack.queue).await,
        (0, 0),
        "the message is deleted"
    );
}

#[tokio::test]
async fn a_failing_model_fails_the_execution_with_its_error_name() {
    let stack = Stack::new(30, 20).await;
    let execution = stack
        .start(&job_id(), "spin", json!({"durationMs": 10, "mode": "fail"}))
        .await;
    let finished = with_worker(&stack, stack.finished(&execution, Duration::from_secs(30))).await;
    assert_eq!(finished.status, ExecutionStatus::Failed, "{finished:?}");
    assert_eq!(finished.error.as_deref(), Some("Model.Failed"));
    // The model's message travels as the failure's cause.
    assert!(
        finished
            .cause
            .as_deref()
            .is_some_and(|c| c.contains("spin told to fail")),
        "{finished:?}"
    );
    stack
        .settled("the message is acknowledged", Duration::from_secs(5))
        .await;
    assert!(stack.result_keys().await.is_empty());
}

#[tokio::test]
async fn an_invalid_task_goes_to_the_dead_letter_queue_naming_the_field() {
    let stack = Stack::new(30, 20).await;
    let body = json!({"taskToken": "t", "jobId": "not a valid id!", "model": "spin", "params": {}})
        .to_string();
    stack.send(&body).await;
    let dead = with_worker(
        &stack,
        testing::receive_until(
            &stack.sdk,
            stack.dlq.as_str(),
            Duration::from_secs(20),
            |m| Some(m.clone()),
        ),
    )
    .await;
    assert_eq!(dead.body(), Some(body.as_str()), "the body is unchanged");
    let attr = |name: &str| {
        dead.message_attributes()
            .and_then(|a| a.get(name))
            .and_then(|v| v.string_value())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(attr(attributes::ERROR), simulation::worker::INVALID_TASK);
    let reason = attr(attributes::REASON);
    assert!(reason.contains("`jobId`"), "{reason}");
    assert_eq!(stack.counts(&stack.queue).await, (0, 0));
}

#[tokio::test]
async fn a_closed_task_token_is_acknowledged_without_running_the_job() {
    use std::collections::BTreeMap;

    use simulation::models::{ExecCommand, RegistryConfig};

    let stack = Stack::new(30, 20).await;
    // The model leaves a marker when it runs.
    let marker = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{}.ran", emulator::unique_name("marker")));
    let config = simulation::WorkerConfig {
        registry: RegistryConfig {
            exec: BTreeMap::from([(
                "marker".to_owned(),
                ExecCommand {
                    program: "/bin/sh".into(),
                    args: vec![
                        "-c".into(),
                        format!("touch '{}'; echo '{{}}'", marker.display()),
                    ],
                    timeout: None,
                },
            )]),
        },
        ..stack.worker_config()
    };
    // A task whose token no execution waits on (an attempt that timed out, or a made-up one).
    let body = json!({"taskToken": "no-execution-waits-on-this", "jobId": job_id(), "model": "marker", "params": {}})
        .to_string();
    stack.send(&body).await;
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(simulation::run(config, shutdown.clone()));
    stack
        .settled("the message is acknowledged", Duration::from_secs(20))
        .await;
    shutdown.cancel();
    let metrics = tokio::time::timeout(Duration::from_secs(20), worker)
        .await
        .expect("the worker stops")
        .unwrap()
        .unwrap();
    assert!(!marker.exists(), "the model ran for a closed token");
    assert_eq!(metrics.succeeded, 1, "{metrics:?}");
    assert_eq!(stack.counts(&stack.dlq).await, (0, 0));
    assert!(stack.result_keys().await.is_empty());
}

#[tokio::test]
async fn a_job_whose_lease_a_newer_attempt_takes_over_stops_and_answers_nothing() {
    use aws_sdk_dynamodb::types::AttributeValue;

    let stack = Stack::new(4, 30).await;
    let dynamo = aws_sdk_dynamodb::Client::new(&stack.sdk);
    let job = job_id();
    let execution = stack
        .start(&job, "spin", json!({"durationMs": 120_000}))
        .await;
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(simulation::run(stack.worker_config(), shutdown.clone()));
    let record = || async {
        dynamo
            .get_item()
            .table_name(&stack.table)
            .key("jobId", AttributeValue::S(job.clone()))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
    };
    wait_until("the job holds its key", Duration::from_secs(20), || async {
        record().await.is_some()
    })
    .await;
    // A newer attempt of the job, on another worker, takes the record over.
    let far = (std::time::SystemTime::now() + Duration::from_secs(3600))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    dynamo
        .put_item()
        .table_name(&stack.table)
        .item("jobId", AttributeValue::S(job.clone()))
        .item("status", AttributeValue::S("in-progress".into()))
        .item("owner", AttributeValue::S("other-worker:m".into()))
        .item("attempt", AttributeValue::S("newer".into()))
        .item("sequence", AttributeValue::N(u64::MAX.to_string()))
        .item(
            "leaseExpiresAt",
            AttributeValue::N(far.as_millis().to_string()),
        )
        .send()
        .await
        .unwrap();
    // The model stops long before its two minutes; the message comes back and is
    // acknowledged as the older attempt it is.
    stack
        .settled(
            "the old attempt's message is settled",
            Duration::from_secs(30),
        )
        .await;
    shutdown.cancel();
    let metrics = tokio::time::timeout(Duration::from_secs(20), worker)
        .await
        .expect("the worker stops: no model is left running")
        .unwrap()
        .unwrap();
    assert_eq!(metrics.lease_lost, 1, "{metrics:?}");
    assert_eq!(metrics.superseded, 1, "{metrics:?}");
    assert_eq!(metrics.succeeded, 0, "{metrics:?}");
    assert!(stack.result_keys().await.is_empty(), "no result stored");
    assert_eq!(
        stack.status(&execution).await,
        ExecutionStatus::Running,
        "the token was not answered"
    );
    let item = record().await.unwrap();
    assert_eq!(item["owner"].as_s().unwrap(), "other-worker:m");
    let _ = stack
        .sfn
        .stop_execution()
        .execution_arn(&execution)
        .send()
        .await;
}
