//! The handlers' logic on [`MemoryExecutions`].

use aws_sdk_sfn::types::ExecutionStatus;
use contracts::schedules::{CANCELLED, REQUESTED};
use serde_json::{Value, json};

use super::*;

fn delivered(detail_type: &str, detail: Value) -> BusEvent {
    BusEvent::from_json(
        &json!({"id": "e-1", "source": "fleet.tests", "detail-type": detail_type, "detail": detail})
            .to_string(),
    )
    .expect("an EventBridge event")
}

fn request(key: &str, at: &str, source: &str) -> BusEvent {
    delivered(
        REQUESTED,
        json!({
            "key": key,
            "at": at,
            "event": {"source": source, "detailType": "Reminder", "detail": {"n": 1}}
        }),
    )
}

fn cancellation(key: &str) -> BusEvent {
    delivered(CANCELLED, json!({"key": key}))
}

/// Handles a request for `key` at `at` from the tests' own source.
async fn schedule(executions: &MemoryExecutions, key: &str, at: &str) {
    requested(request(key, at, "fleet.tests"), executions)
        .await
        .expect("the request is handled");
}

fn statuses(executions: &MemoryExecutions) -> Vec<(String, ExecutionStatus)> {
    executions
        .executions()
        .into_iter()
        .map(|e| (e.name, e.status))
        .collect()
}

#[tokio::test]
async fn a_request_starts_one_execution_named_after_its_key_with_the_rounded_time() {
    let executions = MemoryExecutions::default();
    let event = request("remind-1", "2030-05-01T10:00:00.250+02:00", "fleet.tests");
    requested(event.clone(), &executions)
        .await
        .expect("the request is handled");
    // The same request again (EventBridge delivers at least once) is the same execution.
    requested(event, &executions)
        .await
        .expect("a repeat is handled");

    let started = executions.executions();
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(started[0].name, "remind-1");
    assert_eq!(started[0].status, ExecutionStatus::Running);
    let input: ScheduleInput = serde_json::from_str(&started[0].input).expect("the input");
    assert_eq!(input.key, "remind-1");
    assert_eq!(input.at, "2030-05-01T08:00:01Z");
    assert_eq!(input.event.source, "fleet.tests");
    assert_eq!(input.event.detail_type, "Reminder");
    assert_eq!(Value::Object(input.event.detail), json!({"n": 1}));
}

#[tokio::test]
async fn a_key_reused_with_other_content_is_dropped_and_the_first_schedule_stands() {
    let executions = MemoryExecutions::default();
    schedule(&executions, "remind-1", "2030-05-01T10:00:00Z").await;
    requested(
        request("remind-1", "2031-01-01T00:00:00Z", "fleet.tests"),
        &executions,
    )
    .await
    .expect("a reused key is dropped, not retried");

    let started = executions.executions();
    assert_eq!(started.len(), 1, "{started:?}");
    let input: ScheduleInput = serde_json::from_str(&started[0].input).expect("the input");
    assert_eq!(input.at, "2030-05-01T10:00:00Z");
}

#[tokio::test]
async fn a_cancellation_stops_the_waiting_schedule() {
    let executions = MemoryExecutions::default();
    schedule(&executions, "remind-1", "2030-05-01T10:00:00Z").await;
    cancelled(cancellation("remind-1"), &executions)
        .await
        .expect("the cancellation is handled");
    assert_eq!(
        statuses(&executions),
        vec![("remind-1".to_string(), ExecutionStatus::Aborted)]
    );
}

#[tokio::test]
async fn cancelling_an_unknown_or_finished_schedule_is_a_no_op() {
    let executions = MemoryExecutions::default();
    cancelled(cancellation("never-requested"), &executions)
        .await
        .expect("an unknown key is no error");
    assert!(executions.executions().is_empty());

    schedule(&executions, "remind-1", "2030-05-01T10:00:00Z").await;
    assert!(executions.end("remind-1", ExecutionStatus::Succeeded));
    cancelled(cancellation("remind-1"), &executions)
        .await
        .expect("a fired schedule is no error");
    assert_eq!(
        statuses(&executions),
        vec![("remind-1".to_string(), ExecutionStatus::Succeeded)]
    );
}

#[tokio::test]
async fn bad_requests_are_contract_errors_naming_the_field_and_start_nothing() {
    let executions = MemoryExecutions::default();
    let cases = [
        (request("remind-1", "tomorrow at ten", "fleet.tests"), "at"),
        (
            request("remind-1", "3001-01-01T00:00:00Z", "fleet.tests"),
            "at",
        ),
        (
            request("remind-1", "2030-05-01T10:00:00Z", contracts::jobs::SOURCE),
            "event.source",
        ),
        (
            request("not a key!", "2030-05-01T10:00:00Z", "fleet.tests"),
            "key",
        ),
    ];
    for (event, field) in cases {
        let error = requested(event, &executions)
            .await
            .expect_err("a bad request is refused");
        assert_eq!(error.error_type(), "Scheduler.InvalidEvent", "{error}");
        let SchedulerError::Contract(contract) = &error else {
            panic!("expected a contract error, got {error}")
        };
        assert_eq!(contract.field(), field, "{error}");
    }
    let error = cancelled(delivered(CANCELLED, json!({})), &executions)
        .await
        .expect_err("a cancellation without a key is refused");
    let SchedulerError::Contract(contract) = &error else {
        panic!("expected a contract error, got {error}")
    };
    assert_eq!(contract.field(), "key");
    assert!(executions.executions().is_empty());
}
