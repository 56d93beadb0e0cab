//! `fleet tokens`: executions waiting on a task token (`.waitForTaskToken`), and
//! answering for the worker that holds one (`SendTaskSuccess`, `SendTaskFailure`,
//! `SendTaskHeartbeat`).
//!
//! Step Functions records the token only in the scheduled task's parameters, and does not
//! record heartbeats, so the heartbeat time left is a lower bound measured from when the
//! wait began: a worker that heartbeats has more.

use std::io::Read as _;
use std::time::Duration;

use aws_sdk_sfn::types::ExecutionStatus;
use aws_smithy_types::error::metadata::ProvideErrorMetadata as _;
use clap::Subcommand;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use topology::Stage;

use super::table::Table;
use super::{Ops, aws_error, human_duration, human_time_opt, print_json};
use crate::UsageError;

/// `fleet tokens ...`
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Running executions whose current state waits on a task token: the state, how long
    /// it has waited, the time left before its heartbeat (a lower bound: heartbeats are
    /// not recorded) and its timeout, and the token.
    Ls {
        /// Only this state machine (name with or without the `fleet-<stage>-` prefix, or
        /// ARN).
        #[arg(long)]
        machine: Option<String>,
    },
    /// Complete the task successfully (SendTaskSuccess).
    Succeed {
        /// The task token, or `-` to read it from stdin.
        token: String,
        /// The task's output: a JSON value.
        #[arg(long, default_value = "{}")]
        output: String,
    },
    /// Fail the task (SendTaskFailure); the state's Retry and Catch match on the error.
    Fail {
        /// The task token, or `-` to read it from stdin.
        token: String,
        /// The error name, e.g. Model.Failed or Worker.Transient.
        #[arg(long)]
        error: Option<String>,
        /// A human-readable cause.
        #[arg(long)]
        cause: Option<String>,
    },
    /// Tell Step Functions the task is still being worked on (SendTaskHeartbeat).
    Heartbeat {
        /// The task token, or `-` to read it from stdin.
        token: String,
    },
}

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

/// Runs `fleet tokens ...` for `stage` against the endpoint `sdk` names.
pub async fn run_tokens(
    stage: &Stage,
    sdk: &aws_config::SdkConfig,
    command: TokensCommand,
    json: bool,
) -> anyhow::Result<()> {
    let ops = Ops::for_stage(stage, sdk);
    match command {
        TokensCommand::Ls { machine } => {
            let waiting = list(&ops, machine.as_deref()).await?;
            if json {
                print_json(&waiting)
            } else {
                print!("{}", ls_table(&waiting));
                Ok(())
            }
        }
        TokensCommand::Succeed { token, output } => {
            let token = read_token(&token)?;
            succeed(&ops, &token, &output).await?;
            done(json, "succeeded")
        }
        TokensCommand::Fail {
            token,
            error,
            cause,
        } => {
            let token = read_token(&token)?;
            fail(&ops, &token, error.as_deref(), cause.as_deref()).await?;
            done(json, "failed")
        }
        TokensCommand::Heartbeat { token } => {
            let token = read_token(&token)?;
            heartbeat(&ops, &token).await?;
            done(json, "heartbeat sent")
        }
    }
}

fn done(json: bool, what: &str) -> anyhow::Result<()> {
    if json {
        print_json(&serde_json::json!({"result": what}))
    } else {
        println!("task {what}");
        Ok(())
    }
}

fn read_token(arg: &str) -> anyhow::Result<String> {
    let token = if arg == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text.trim().to_owned()
    } else {
        arg.trim().to_owned()
    };
    if token.is_empty() {
        return Err(UsageError("the task token is empty".to_owned()).into());
    }
    Ok(token)
}

/// Every running execution of the stage (or of `machine`) waiting on a task token.
pub async fn list(ops: &Ops, machine: Option<&str>) -> anyhow::Result<Vec<WaitingTask>> {
    let now = OffsetDateTime::now_utc();
    let running = super::runs::list(
        ops,
        machine,
        Some(ExecutionStatus::Running),
        None,
        usize::MAX,
    )
    .await?;
    let mut out = Vec::new();
    for run in running {
        let events = super::runs::history(ops, &run.arn).await?;
        let (steps, _) = super::runs::timeline(&events, true, now);
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

/// Completes a task with `output` (JSON text).
pub async fn succeed(ops: &Ops, token: &str, output: &str) -> anyhow::Result<()> {
    if serde_json::from_str::<Value>(output).is_err() {
        return Err(UsageError(format!(
            "--output {output:?} is not JSON; pass e.g. --output '{{\"ok\": true}}'"
        ))
        .into());
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
) -> anyhow::Result<()> {
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

pub async fn heartbeat(ops: &Ops, token: &str) -> anyhow::Result<()> {
    ops.sfn
        .send_task_heartbeat()
        .task_token(token)
        .send()
        .await
        .map_err(|e| token_error("SendTaskHeartbeat", e))?;
    Ok(())
}

fn token_error<E, R>(operation: &str, e: aws_sdk_sfn::error::SdkError<E, R>) -> anyhow::Error
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
    anyhow::anyhow!("{:#}{hint}", aws_error(operation, "the task token", e))
}

fn ls_table(waiting: &[WaitingTask]) -> String {
    if waiting.is_empty() {
        return "no execution is waiting on a task token\n".to_owned();
    }
    let secs = |s: Option<i64>| {
        s.and_then(|s| u64::try_from(s).ok())
            .map(|s| human_duration(Duration::from_secs(s)))
    };
    let mut table = Table::new(&[
        "execution",
        "machine",
        "state",
        "since",
        "waited",
        "heartbeat",
        "timeout",
        "token",
    ])
    .unlimited(7);
    for w in waiting {
        let heartbeat = match (w.heartbeat_seconds, secs(w.heartbeat_left_seconds)) {
            (None, _) => "-".to_owned(),
            (Some(_), Some(left)) => format!(">={left} left"),
            (Some(h), None) => format!("every {h}s"),
        };
        let timeout = secs(w.timeout_left_seconds)
            .map(|left| format!("{left} left"))
            .unwrap_or_else(|| "-".to_owned());
        table.row(vec![
            w.execution.clone(),
            w.machine.clone(),
            w.state.clone(),
            human_time_opt(w.waiting_since),
            w.waited_seconds
                .map(|d| human_duration(Duration::from_secs_f64(d)))
                .unwrap_or_else(|| "-".to_owned()),
            heartbeat,
            timeout,
            w.token
                .clone()
                .unwrap_or_else(|| "(not in the task's parameters)".to_owned()),
        ]);
    }
    table.to_string()
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
