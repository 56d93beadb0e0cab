//! The stage's state-machine executions (`fleet runs`), one execution's timeline read from
//! its history, and redriving a failed one.

use aws_sdk_sfn::types::ExecutionStatus;
use aws_smithy_types::error::metadata::ProvideErrorMetadata as _;
use serde::Serialize;
use time::OffsetDateTime;

use crate::error::aws_error;
use crate::times::{between, from_smithy};
use crate::{Ops, OpsError};

mod timeline;

pub use timeline::{Event, Outcome, Step, TokenWait, find_token, timeline};

/// One execution in a listing.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub name: String,
    pub arn: String,
    pub machine: String,
    pub status: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub stopped_at: Option<OffsetDateTime>,
    pub duration_seconds: Option<f64>,
}

/// One execution with its timeline.
#[derive(Debug, Clone, Serialize)]
pub struct RunDetail {
    #[serde(flatten)]
    pub summary: RunSummary,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// The state the execution failed in (for a Fail state, the state raising it).
    pub failed_state: Option<String>,
    /// The earliest error of the run, which often explains the failure better than the
    /// last one (a task error caught and re-raised by a Fail state).
    pub first_error: Option<StepError>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepError {
    pub state: String,
    pub error: Option<String>,
    pub cause: Option<String>,
}

/// The stage's state machines as (name, ARN), or only the one `machine` names.
pub async fn state_machines(
    ops: &Ops,
    machine: Option<&str>,
) -> Result<Vec<(String, String)>, OpsError> {
    if let Some(arn) = machine.filter(|m| m.starts_with("arn:")) {
        let name = arn.rsplit(':').next().unwrap_or(arn).to_owned();
        return Ok(vec![(name, arn.to_owned())]);
    }
    let prefix = format!("{}-", ops.names.prefix());
    let wanted = machine.map(|m| {
        if m.starts_with(&prefix) {
            m.to_owned()
        } else {
            format!("{prefix}{m}")
        }
    });
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = ops
            .sfn
            .list_state_machines()
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| aws_error("ListStateMachines", format!("stage {}", ops.stage()), e))?;
        for m in page.state_machines() {
            let matches = match &wanted {
                Some(w) => m.name() == w,
                None => m.name().starts_with(&prefix),
            };
            if matches {
                out.push((m.name().to_owned(), m.state_machine_arn().to_owned()));
            }
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    if let (Some(w), true) = (&wanted, out.is_empty()) {
        return Err(OpsError::Invalid(format!(
            "no state machine {w} at this endpoint (stage {})",
            ops.stage()
        )));
    }
    Ok(out)
}

/// Executions of the stage's state machines, newest first.
pub async fn list(
    ops: &Ops,
    machine: Option<&str>,
    status: Option<ExecutionStatus>,
    since: Option<OffsetDateTime>,
    limit: usize,
) -> Result<Vec<RunSummary>, OpsError> {
    /// Pages read per state machine: listings are newest first on AWS, and a stage's
    /// history past this many executions is for the console, not a terminal.
    const MAX_PAGES: usize = 20;
    let mut out = Vec::new();
    for (name, arn) in state_machines(ops, machine).await? {
        let mut token = None;
        for _ in 0..MAX_PAGES {
            let page = ops
                .sfn
                .list_executions()
                .state_machine_arn(&arn)
                .set_status_filter(status.clone())
                .max_results(1000)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| aws_error("ListExecutions", &name, e))?;
            let mut older_than_since = false;
            for e in page.executions() {
                let started = from_smithy(e.start_date());
                if let (Some(since), Some(started)) = (since, started)
                    && started < since
                {
                    older_than_since = true;
                    continue;
                }
                let stopped = e.stop_date().and_then(from_smithy);
                out.push(RunSummary {
                    name: e.name().to_owned(),
                    arn: e.execution_arn().to_owned(),
                    machine: name.clone(),
                    status: e.status().as_str().to_owned(),
                    started_at: started,
                    stopped_at: stopped,
                    duration_seconds: started.map(|s| {
                        between(s, stopped.unwrap_or_else(OffsetDateTime::now_utc)).as_secs_f64()
                    }),
                });
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() || (older_than_since && out.len() >= limit) {
                break;
            }
        }
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.started_at));
    out.truncate(limit);
    Ok(out)
}

/// An execution ARN from an ARN or a job id.
pub async fn resolve_execution(ops: &Ops, execution: &str) -> Result<String, OpsError> {
    if execution.starts_with("arn:") {
        return Ok(execution.to_owned());
    }
    let machines = state_machines(ops, None).await?;
    let simulation = ops.names.state_machine("simulation-job");
    let mut ordered: Vec<&(String, String)> =
        machines.iter().filter(|(n, _)| *n == simulation).collect();
    ordered.extend(machines.iter().filter(|(n, _)| *n != simulation));
    for (_, machine_arn) in ordered {
        let arn = format!(
            "{}:{execution}",
            machine_arn.replacen(":stateMachine:", ":execution:", 1)
        );
        match ops
            .sfn
            .describe_execution()
            .execution_arn(&arn)
            .send()
            .await
        {
            Ok(_) => return Ok(arn),
            Err(e) if e.code() == Some("ExecutionDoesNotExist") => continue,
            Err(e) => return Err(aws_error("DescribeExecution", &arn, e)),
        }
    }
    Err(OpsError::Invalid(format!(
        "no execution named {execution} on the state machines of stage {} ({})",
        ops.stage(),
        machines
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Every history event of an execution, in order.
pub async fn history(ops: &Ops, arn: &str) -> Result<Vec<Event>, OpsError> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = ops
            .sfn
            .get_execution_history()
            .execution_arn(arn)
            .max_results(1000)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| aws_error("GetExecutionHistory", arn, e))?;
        out.extend(page.events().iter().map(Event::from));
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    Ok(out)
}

/// One execution with its timeline.
pub async fn show(ops: &Ops, arn: &str) -> Result<RunDetail, OpsError> {
    let described = ops
        .sfn
        .describe_execution()
        .execution_arn(arn)
        .send()
        .await
        .map_err(|e| aws_error("DescribeExecution", arn, e))?;
    let events = history(ops, arn).await?;
    let running = described.status() == &ExecutionStatus::Running;
    let started = from_smithy(described.start_date());
    let stopped = described.stop_date().and_then(from_smithy);
    let end = if running {
        OffsetDateTime::now_utc()
    } else {
        stopped
            .or_else(|| events.iter().rev().find_map(|e| e.at))
            .unwrap_or_else(OffsetDateTime::now_utc)
    };
    let (steps, failed_state) = timeline(&events, running, end);
    let execution_error = events
        .iter()
        .rev()
        .find(|e| e.kind.starts_with("Execution") && (e.error.is_some() || e.cause.is_some()));
    let first_error = steps.iter().find(|s| s.error.is_some()).map(|s| StepError {
        state: s.state.clone(),
        error: s.error.clone(),
        cause: s.cause.clone(),
    });
    let machine = described
        .state_machine_arn()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    Ok(RunDetail {
        summary: RunSummary {
            name: described.name().unwrap_or_default().to_owned(),
            arn: arn.to_owned(),
            machine,
            status: described.status().as_str().to_owned(),
            started_at: started,
            stopped_at: stopped,
            duration_seconds: started.map(|s| between(s, end).as_secs_f64()),
        },
        error: described
            .error()
            .map(str::to_owned)
            .or_else(|| execution_error.and_then(|e| e.error.clone())),
        cause: described
            .cause()
            .map(str::to_owned)
            .or_else(|| execution_error.and_then(|e| e.cause.clone())),
        failed_state,
        first_error,
        steps,
    })
}

/// Redrives an execution; returns when Step Functions says it was redriven.
pub async fn redrive(ops: &Ops, arn: &str) -> Result<Option<OffsetDateTime>, OpsError> {
    match ops.sfn.redrive_execution().execution_arn(arn).send().await {
        Ok(out) => Ok(from_smithy(out.redrive_date())),
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            let code = e.code().map(str::to_owned);
            let unsupported = matches!(status, Some(404 | 500 | 501))
                && !matches!(
                    code.as_deref(),
                    Some("ExecutionDoesNotExist" | "ExecutionNotRedrivable")
                );
            if unsupported
                || matches!(
                    code.as_deref(),
                    Some("UnknownOperationException" | "NotImplemented")
                )
            {
                Err(OpsError::Failed(format!(
                    "this endpoint does not implement RedriveExecution (the local emulator, moto, lacks it: it answered {}). On AWS this command redrives the execution from the state that failed; locally, start a new execution with the same input instead (StartExecution with the input shown by `fleet runs show {arn} --json`).",
                    status.map_or_else(|| "an error".to_owned(), |s| format!("HTTP {s}"))
                )))
            } else {
                Err(aws_error("RedriveExecution", arn, e))
            }
        }
    }
}
