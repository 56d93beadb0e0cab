//! The scheduler: delayed one-shot events.
//!
//! `ScheduleRequested` (key, time, event) → [`handle_requested`] starts an execution of
//! the `schedule` state machine (`statemachines/schedule.asl.json`) **named after the
//! key**; the machine `Wait`s with `TimestampPath` until the time, then publishes the
//! event with `events:putEvents`. Step Functions makes the start idempotent: the same
//! name with the same input returns the running execution, the same name with another
//! input is refused (`ExecutionAlreadyExists`, logged and dropped: keys are single-use).
//! `ScheduleCancelled` → [`handle_cancelled`] stops the execution by name; an unknown,
//! finished or already stopped one is a no-op. [`pending`] lists the running ones
//! (`fleet schedules ls`).
//!
//! A cancellation that overtakes its request (events are not ordered) finds nothing to
//! stop, and the schedule still fires: publish the cancellation after the request was
//! accepted (it is listed by [`pending`]), or make the consumer check its own state, as
//! the licenses service does.
//!
//! The handlers make their Step Functions calls through [`Executions`] ([`Deps`] is the
//! SDK adapter); [`MemoryExecutions`] is its in-memory twin for unit tests.

mod executions;
pub mod service;
#[cfg(test)]
mod tests;

use aws_sdk_sfn::error::DisplayErrorContext;
use aws_sdk_sfn::types::ExecutionStatus;
use contracts::BusEvent;
use contracts::schedules::{ScheduleCancelled, ScheduleInput, ScheduleRequested};
use time::OffsetDateTime;

pub use executions::{Executions, MemoryExecution, MemoryExecutions, Start};

/// What the handlers need.
#[derive(Clone, Debug)]
pub struct Deps {
    pub sfn: aws_sdk_sfn::Client,
    /// The `schedule` state machine.
    pub state_machine_arn: String,
}

impl Deps {
    pub fn new(sdk: &aws_config::SdkConfig, state_machine_arn: impl Into<String>) -> Deps {
        Deps {
            sfn: aws_sdk_sfn::Client::new(sdk),
            state_machine_arn: state_machine_arn.into(),
        }
    }

    /// The ARN of the execution for `key`.
    pub fn execution_arn(&self, key: &str) -> String {
        format!(
            "{}:{key}",
            self.state_machine_arn
                .replacen(":stateMachine:", ":execution:", 1)
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// Not a valid request: retrying cannot help.
    #[error(transparent)]
    Contract(#[from] contracts::ContractError),
    /// Step Functions failed; the asynchronous invocation is retried.
    #[error("Step Functions {operation}: {message}")]
    StepFunctions {
        operation: &'static str,
        message: String,
    },
}

impl SchedulerError {
    pub fn error_type(&self) -> &'static str {
        match self {
            SchedulerError::Contract(_) => "Scheduler.InvalidEvent",
            SchedulerError::StepFunctions { .. } => "Scheduler.Transient",
        }
    }
}

impl From<SchedulerError> for lambda_runtime::Diagnostic {
    fn from(error: SchedulerError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: error.error_type().to_string(),
            error_message: error.to_string(),
        }
    }
}

/// Starts the execution that fires `ScheduleRequested`'s event at its time.
pub async fn handle_requested(event: BusEvent, deps: &Deps) -> Result<(), SchedulerError> {
    requested(event, deps).await
}

/// Stops the schedule named by `ScheduleCancelled`, if it still waits.
pub async fn handle_cancelled(event: BusEvent, deps: &Deps) -> Result<(), SchedulerError> {
    cancelled(event, deps).await
}

/// Stops the schedule `key`; a no-op when it is unknown or no longer running.
pub async fn cancel(key: &str, deps: &Deps) -> Result<(), SchedulerError> {
    cancel_in(key, deps).await
}

async fn requested(event: BusEvent, executions: &impl Executions) -> Result<(), SchedulerError> {
    let envelope = contracts::detail::decode::<ScheduleRequested>(
        &event.detail_type,
        &event.detail,
        &event.received(),
        |e| Some(e.key.clone()),
    )?;
    let request = envelope.event;
    request.validate()?;
    let input = ScheduleInput::from_request(&request);
    let input = serde_json::to_string(&input).map_err(|e| SchedulerError::StepFunctions {
        operation: "StartExecution",
        message: format!("the input does not serialize: {e}"),
    })?;
    match executions.start(&request.key, &input).await? {
        Start::Started => {
            tracing::info!(key = %request.key, at = %request.at, detail_type = %request.event.detail_type, "schedule started");
        }
        Start::NameTaken => {
            tracing::error!(key = %request.key, "a schedule with this key exists with other content; keys are single-use, request dropped");
        }
    }
    Ok(())
}

async fn cancelled(event: BusEvent, executions: &impl Executions) -> Result<(), SchedulerError> {
    let envelope = contracts::detail::decode::<ScheduleCancelled>(
        &event.detail_type,
        &event.detail,
        &event.received(),
        |e| Some(e.key.clone()),
    )?;
    cancel_in(&envelope.event.key, executions).await
}

async fn cancel_in(key: &str, executions: &impl Executions) -> Result<(), SchedulerError> {
    match executions.status(key).await? {
        Some(ExecutionStatus::Running) => {}
        Some(status) => {
            tracing::info!(key, status = %status, "schedule already over, nothing to cancel");
            return Ok(());
        }
        None => {
            tracing::info!(key, "no such schedule, nothing to cancel");
            return Ok(());
        }
    }
    if executions.stop(key).await? {
        tracing::info!(key, "schedule cancelled");
    }
    Ok(())
}

/// A schedule still waiting.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub key: String,
    pub due: Option<OffsetDateTime>,
    pub source: String,
    pub detail_type: String,
    pub started: Option<OffsetDateTime>,
}

/// Every running schedule, soonest first.
pub async fn pending(deps: &Deps) -> Result<Vec<Pending>, SchedulerError> {
    let mut out = Vec::new();
    let mut pages = deps
        .sfn
        .list_executions()
        .state_machine_arn(&deps.state_machine_arn)
        .status_filter(ExecutionStatus::Running)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(sfn_error("ListExecutions"))?;
        for execution in page.executions() {
            let described = deps
                .sfn
                .describe_execution()
                .execution_arn(execution.execution_arn())
                .send()
                .await
                .map_err(sfn_error("DescribeExecution"))?;
            let input: Option<ScheduleInput> =
                described.input().and_then(|i| serde_json::from_str(i).ok());
            let started = OffsetDateTime::from_unix_timestamp(execution.start_date().secs()).ok();
            out.push(match input {
                Some(input) => Pending {
                    key: input.key.clone(),
                    due: input.due(),
                    source: input.event.source.clone(),
                    detail_type: input.event.detail_type.clone(),
                    started,
                },
                None => Pending {
                    key: execution.name().to_string(),
                    due: None,
                    source: String::new(),
                    detail_type: String::new(),
                    started,
                },
            });
        }
    }
    out.sort_by(|a, b| a.due.cmp(&b.due).then_with(|| a.key.cmp(&b.key)));
    Ok(out)
}

fn sfn_error<E: std::error::Error + 'static>(
    operation: &'static str,
) -> impl FnOnce(E) -> SchedulerError {
    move |e| SchedulerError::StepFunctions {
        operation,
        message: DisplayErrorContext(&e).to_string(),
    }
}
