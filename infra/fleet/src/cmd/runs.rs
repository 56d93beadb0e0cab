//! `fleet runs ls|show|redrive`: the stage's state-machine executions, rendered.

use std::time::Duration;

use aws_sdk_sfn::types::ExecutionStatus;
use clap::Subcommand;
use fleet_ops::runs::{self, RunDetail, RunSummary};
use fleet_ops::times::between;
use time::OffsetDateTime;

use super::{Globals, ops_error};
use crate::UsageError;
use crate::render::{Table, cut, human_duration, human_time, human_time_opt, print_json};

/// `fleet runs ...`
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Executions of the stage's state machines, newest first.
    Ls {
        /// Only this state machine: its name with or without the `fleet-<stage>-`
        /// prefix (simulation-job), or its ARN.
        #[arg(long)]
        machine: Option<String>,
        /// Only this status: RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED or
        /// PENDING_REDRIVE.
        #[arg(long, value_parser = parse_status)]
        status: Option<ExecutionStatus>,
        /// Only executions started since: an RFC 3339 time or an age (90s, 15m, 2h, 3d).
        #[arg(long)]
        since: Option<String>,
        /// At most this many executions.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// The timeline of one execution: each state with its start, duration, outcome, error
    /// and cause, and any wait on a task token.
    Show {
        /// An execution ARN, or a job id (the execution's name on the stage's
        /// simulation-job state machine, or else on another state machine of the stage).
        execution: String,
    },
    /// Redrive a failed, timed-out or aborted execution from the state that failed
    /// (RedriveExecution).
    Redrive {
        /// An execution ARN or a job id, as for `fleet runs show`.
        execution: String,
    },
}

pub(crate) fn parse_status(text: &str) -> Result<ExecutionStatus, String> {
    let upper = text.to_uppercase();
    let known = ExecutionStatus::values();
    if known.contains(&upper.as_str()) {
        Ok(ExecutionStatus::from(upper.as_str()))
    } else {
        Err(format!(
            "unknown status {text:?}; one of {}",
            known.join(", ")
        ))
    }
}

/// Runs `fleet runs ...` for the stage against the endpoint the AWS environment names.
pub async fn run(command: RunsCommand, globals: &Globals) -> anyhow::Result<()> {
    let ops = super::ops(globals).await;
    let json = globals.json;
    match command {
        RunsCommand::Ls {
            machine,
            status,
            since,
            limit,
        } => {
            let since = since
                .as_deref()
                .map(|s| fleet_ops::parse_since(s, OffsetDateTime::now_utc()))
                .transpose()
                .map_err(|e| UsageError(format!("--since {e}")))?;
            let runs = runs::list(&ops, machine.as_deref(), status, since, limit)
                .await
                .map_err(ops_error)?;
            if json {
                print_json(&runs)
            } else {
                print!("{}", ls_table(&runs));
                Ok(())
            }
        }
        RunsCommand::Show { execution } => {
            let arn = runs::resolve_execution(&ops, &execution)
                .await
                .map_err(ops_error)?;
            let detail = runs::show(&ops, &arn).await.map_err(ops_error)?;
            if json {
                print_json(&detail)
            } else {
                print!("{}", show_text(&detail));
                Ok(())
            }
        }
        RunsCommand::Redrive { execution } => {
            let arn = runs::resolve_execution(&ops, &execution)
                .await
                .map_err(ops_error)?;
            let redriven_at = runs::redrive(&ops, &arn).await.map_err(ops_error)?;
            if json {
                print_json(
                    &serde_json::json!({"arn": arn, "redriven_at": redriven_at.map(human_time)}),
                )
            } else {
                println!("redriven {arn} at {}", human_time_opt(redriven_at));
                Ok(())
            }
        }
    }
}

fn ls_table(runs: &[RunSummary]) -> String {
    let mut table = Table::new(&["name", "machine", "status", "started", "duration"]);
    for r in runs {
        table.row(vec![
            r.name.clone(),
            r.machine.clone(),
            r.status.clone(),
            human_time_opt(r.started_at),
            r.duration_seconds
                .map(|d| human_duration(Duration::from_secs_f64(d)))
                .unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    if table.is_empty() {
        return "no executions\n".to_owned();
    }
    table.to_string()
}

fn show_text(detail: &RunDetail) -> String {
    use std::fmt::Write as _;
    let s = &detail.summary;
    let mut out = String::new();
    let _ = writeln!(out, "execution  {}", s.arn);
    let _ = writeln!(out, "machine    {}", s.machine);
    let _ = writeln!(out, "status     {}", s.status);
    let _ = writeln!(
        out,
        "started    {} ({})",
        human_time_opt(s.started_at),
        s.duration_seconds
            .map(|d| human_duration(Duration::from_secs_f64(d)))
            .unwrap_or_else(|| "-".to_owned())
    );
    if detail.error.is_some() || detail.cause.is_some() {
        let _ = writeln!(
            out,
            "error      {}{}",
            detail.error.as_deref().unwrap_or("-"),
            detail
                .cause
                .as_deref()
                .map(|c| format!(": {c}"))
                .unwrap_or_default()
        );
    }
    if let Some(state) = &detail.failed_state {
        let _ = writeln!(out, "failed in  state {state}");
    }
    if let Some(first) = &detail.first_error
        && Some(&first.state) != detail.failed_state.as_ref()
    {
        let _ = writeln!(
            out,
            "first error in state {}: {}{}",
            first.state,
            first.error.as_deref().unwrap_or("-"),
            first
                .cause
                .as_deref()
                .map(|c| format!(": {c}"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(out);
    let mut table = Table::new(&[
        "state", "type", "at", "duration", "outcome", "error", "cause",
    ])
    .unlimited(6);
    for step in &detail.steps {
        let at = match (s.started_at, step.entered_at) {
            (Some(start), Some(entered)) => format!("+{}", human_duration(between(start, entered))),
            _ => "-".to_owned(),
        };
        let attempts = if step.attempts > 1 {
            format!(" ({} attempts)", step.attempts)
        } else {
            String::new()
        };
        table.row(vec![
            step.state.clone(),
            step.kind.clone(),
            at,
            step.duration_seconds
                .map(|d| human_duration(Duration::from_secs_f64(d)))
                .unwrap_or_else(|| "-".to_owned()),
            format!("{}{attempts}", step.outcome.as_str()),
            step.error.clone().unwrap_or_default(),
            cut(step.cause.as_deref().unwrap_or_default(), 200),
        ]);
    }
    out.push_str(&table.to_string());
    for step in &detail.steps {
        let Some(wait) = &step.token_wait else {
            continue;
        };
        let waited = wait
            .waited_seconds
            .map(|d| human_duration(Duration::from_secs_f64(d)))
            .unwrap_or_else(|| "-".to_owned());
        let verb = if wait.until.is_some() {
            "waited"
        } else {
            "waiting"
        };
        let _ = writeln!(
            out,
            "\n{}: {verb} {waited} on task token {}{}{}",
            step.state,
            wait.task_token
                .as_deref()
                .unwrap_or("(not found in the task's parameters)"),
            wait.heartbeat_seconds
                .map(|h| format!(", heartbeat every {h}s"))
                .unwrap_or_default(),
            wait.timeout_seconds
                .map(|t| format!(", timeout {t}s"))
                .unwrap_or_default(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse_in_any_case() {
        assert_eq!(parse_status("failed").unwrap(), ExecutionStatus::Failed);
        assert_eq!(
            parse_status("TIMED_OUT").unwrap(),
            ExecutionStatus::TimedOut
        );
        assert!(parse_status("broken").is_err());
    }
}
