//! Executions waiting on a task token (`fleet tokens`) (`.waitForTaskToken`), and
//! answering for the worker that holds one (`SendTaskSuccess`, `SendTaskFailure`,
//! `SendTaskHeartbeat`).
//!
//! Step Functions records the token only in the scheduled task's parameters, and does not
//! record heartbeats, so the heartbeat time left is a lower bound measured from when the
//! wait began: a worker that heartbeats has more.

use aws_sdk_sfn::types::ExecutionStatus;
use aws_smithy_types::error::metadata::ProvideErrorMetadata as _;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::error::aws_error;
use crate::{Ops, OpsError};

/// An execution waiting on a task token.
#[derive(Debug, Clone, Serialize)]
pub struct WaitingTask {
    pub execution: String,
    pub arn: String,
    pub machine: String,
    pub state: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub waiting_since: Option<OffsetDateTime>,
    pub waited_seconds: Option<f64>,
    pub heartbeat_seconds: Option<i64>,
    /// At least this long before the heartbeat times out (heartbeats sent since the wait
    /// began are not recorded, and each one extends it); absent once the first interval
    /// has passed.
    pub heartbeat_left_seconds: Option<i64>,
    pub timeout_seconds: Option<i64>,
    pub timeout_left_seconds: Option<i64>,
    pub token: Option<String>,
}

/// Every running execution of the stage (or of `machine`) waiting on a task token.
pub async fn list(ops: &Ops, machine: Option<&str>) -> Result<Vec<WaitingTask>, OpsError> {
    let now = OffsetDateTime::now_utc();
    let running = crate::runs::list(
        ops,
        machine,
        Some(ExecutionStatus::Running),
        None,
        usize::MAX,
    )
    .await?;
    let mut out = Vec::new();
    for run in running {
        let events = crate::runs::history(ops, &run.arn).await?;
        let (steps, _) = crate::runs::timeline(&events, true, now);
        let mut definition: Option<Value> = None;
        for step in steps {
            let Some(wait) = step.token_wait.filter(|w| w.until.is_none()) else {
                continue;
            };
            if step.exited_at.is_some() {
                continue;
            }
            let (mut heartbeat, mut timeout) = (wait.heartbeat_seconds, wait.timeout_seconds);
            if heartbeat.is_none() || timeout.is_none() {
                if definition.is_none() {
                    definition = definition_of(ops, &run.arn).await;
                }
                if let Some(state) = definition.as_ref().and_then(|d| find_state(d, &step.state)) {
                    heartbeat =
                        heartbeat.or_else(|| state.get("HeartbeatSeconds").and_then(Value::as_i64));
                    timeout =
                        timeout.or_else(|| state.get("TimeoutSeconds").and_then(Value::as_i64));
                }
            }
            let waited = wait.waited_seconds;
            let left = |limit: Option<i64>| {
                limit
                    .zip(waited)
                    .map(|(l, w)| l - w.floor() as i64)
                    .filter(|left| *left >= 0)
            };
            out.push(WaitingTask {
                execution: run.name.clone(),
                arn: run.arn.clone(),
                machine: run.machine.clone(),
                state: step.state.clone(),
                waiting_since: wait.since,
                waited_seconds: waited,
                heartbeat_seconds: heartbeat,
                heartbeat_left_seconds: left(heartbeat),
                timeout_seconds: timeout,
                timeout_left_seconds: left(timeout),
                token: wait.token,
            });
        }
    }
    Ok(out)
}

async fn definition_of(ops: &Ops, arn: &str) -> Option<Value> {
    match ops
        .sfn
        .describe_state_machine_for_execution()
        .execution_arn(arn)
        .send()
        .await
    {
        Ok(out) => serde_json::from_str(out.definition()).ok(),
        Err(e) => {
            tracing::warn!(execution = %arn, error = %aws_smithy_types::error::display::DisplayErrorContext(&e), "cannot read the state machine's definition");
            None
        }
    }
}

/// The state `name` in a definition, nested branches and item processors included.
pub fn find_state<'a>(definition: &'a Value, name: &str) -> Option<&'a Value> {
    let states = definition.get("States")?.as_object()?;
    if let Some(state) = states.get(name) {
        return Some(state);
    }
    states.values().find_map(|state| {
        let branches = state
            .get("Branches")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        let processors = ["ItemProcessor", "Iterator"]
            .into_iter()
            .filter_map(|k| state.get(k));
        branches
            .chain(processors)
            .find_map(|inner| find_state(inner, name))
    })
}

/// Completes a task with `output` (JSON text, checked before anything is sent).
pub async fn succeed(ops: &Ops, token: &str, output: &str) -> Result<(), OpsError> {
    if serde_json::from_str::<Value>(output).is_err() {
        return Err(OpsError::Invalid(format!(
            "the task's output {output:?} is not JSON"
        )));
    }
    ops.sfn
        .send_task_success()
        .task_token(token)
        .output(output)
        .send()
        .await
        .map_err(|e| token_error("SendTaskSuccess", e))?;
    Ok(())
}

/// Fails a task with an error name and a cause.
pub async fn fail(
    ops: &Ops,
    token: &str,
    error: Option<&str>,
    cause: Option<&str>,
) -> Result<(), OpsError> {
    ops.sfn
        .send_task_failure()
        .task_token(token)
        .set_error(error.map(str::to_owned))
        .set_cause(cause.map(str::to_owned))
        .send()
        .await
        .map_err(|e| token_error("SendTaskFailure", e))?;
    Ok(())
}

pub async fn heartbeat(ops: &Ops, token: &str) -> Result<(), OpsError> {
    ops.sfn
        .send_task_heartbeat()
        .task_token(token)
        .send()
        .await
        .map_err(|e| token_error("SendTaskHeartbeat", e))?;
    Ok(())
}

fn token_error<E, R>(operation: &str, e: aws_sdk_sfn::error::SdkError<E, R>) -> OpsError
where
    E: std::error::Error
        + aws_smithy_types::error::metadata::ProvideErrorMetadata
        + Send
        + Sync
        + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let hint = match e.code() {
        Some("InvalidToken" | "TaskDoesNotExist") => {
            " (the token is unknown, or its task already finished: `fleet tokens ls` lists the tokens waiting now)"
        }
        Some("TaskTimedOut") => {
            " (its task is no longer open: it was answered already, or it timed out; `fleet tokens ls` lists the tokens waiting now)"
        }
        _ => "",
    };
    let mut error = aws_error(operation, "the task token", e);
    if let OpsError::Aws { hint: h, .. } = &mut error {
        *h = hint.to_owned();
    }
    error
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn states_are_found_in_branches_and_item_processors() {
        let definition = json!({
            "States": {
                "Top": {"Type": "Task", "HeartbeatSeconds": 10},
                "Fan": {"Type": "Parallel", "Branches": [
                    {"States": {"InBranch": {"Type": "Task", "TimeoutSeconds": 20}}}
                ]},
                "Each": {"Type": "Map", "ItemProcessor": {"States": {"InMap": {"Type": "Task"}}}}
            }
        });
        assert_eq!(
            find_state(&definition, "Top").unwrap()["HeartbeatSeconds"],
            10
        );
        assert_eq!(
            find_state(&definition, "InBranch").unwrap()["TimeoutSeconds"],
            20
        );
        assert!(find_state(&definition, "InMap").is_some());
        assert!(find_state(&definition, "Nowhere").is_none());
    }
}
