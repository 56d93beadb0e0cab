//! The worker in process against the emulator: a Step Functions task in, an answered task
//! token and a stored result out.

use std::time::Duration;

use aws_sdk_sfn::types::ExecutionStatus;
use contracts::tasks::TaskOutput;
use serde_json::json;
use sqs_worker::attributes;
use tokio_util::sync::CancellationToken;

use crate::stack::{Stack, eventually, job_id};

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
    eventually(
        Duration::from_secs(5),
        "the message is acknowledged",
        || async { stack.counts(&stack.queue).await == (0, 0) },
    )
    .await;
    assert!(stack.result_keys().await.is_empty());
}

#[tokio::test]
async fn an_invalid_task_goes_to_the_dead_letter_queue_naming_the_field() {
    let stack = Stack::new(30, 20).await;
    let body = json!({"taskToken": "t", "jobId": "not a valid id!", "model": "spin", "params": {}})
        .to_string();
    stack
        .sqs
        .send_message()
        .queue_url(stack.queue.as_str())
        .message_body(&body)
        .send()
        .await
        .unwrap();
    let dead = with_worker(&stack, async {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let out = stack
                .sqs
                .receive_message()
                .queue_url(stack.dlq.as_str())
                .wait_time_seconds(1)
                .message_attribute_names("All")
                .send()
                .await
                .unwrap();
            if let Some(m) = out.messages().first() {
                break m.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nothing dead-lettered"
            );
        }
    })
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
