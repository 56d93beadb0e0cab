//! `fleet runs`: the stage's state-machine executions, one execution's timeline read from
//! its history, and redriving a failed one.

use std::time::Duration;

use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent};
use aws_smithy_types::error::metadata::ProvideErrorMetadata as _;
use clap::Subcommand;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use topology::Stage;

use super::table::{Table, cut};
use super::{
    Ops, aws_error, between, from_smithy, human_duration, human_time, human_time_opt, print_json,
    redact,
};
use crate::UsageError;

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

/// How a state ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Succeeded,
    Failed,
    /// It failed and a `Catch` moved on.
    Caught,
    Running,
    /// It waits for a task token.
    Waiting,
    /// Entered, and the history says nothing more.
    Entered,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Caught => "caught",
            Outcome::Running => "running",
            Outcome::Waiting => "waiting",
            Outcome::Entered => "entered",
        }
    }
}

/// One state of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub state: String,
    /// `Task`, `Pass`, `Choice`, `Fail`, ...
    pub kind: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub entered_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub exited_at: Option<OffsetDateTime>,
    pub duration_seconds: Option<f64>,
    pub outcome: Outcome,
    /// Task attempts (retries included).
    pub attempts: u32,
    /// The task's resource, e.g. `sqs:sendMessage.waitForTaskToken`.
    pub resource: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub token_wait: Option<TokenWait>,
    #[serde(skip)]
    last_failed: bool,
    #[serde(skip)]
    ended_execution: bool,
}

/// A wait on a task token (`.waitForTaskToken`).
#[derive(Debug, Clone, Serialize)]
pub struct TokenWait {
    #[serde(with = "time::serde::rfc3339::option")]
    pub since: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub until: Option<OffsetDateTime>,
    pub waited_seconds: Option<f64>,
    pub heartbeat_seconds: Option<i64>,
    pub timeout_seconds: Option<i64>,
    /// Redacted: `fleet tokens ls` shows it in full.
    pub task_token: Option<String>,
    /// The token in full, for `fleet tokens`.
    #[serde(skip)]
    pub token: Option<String>,
}

/// A history event reduced to what the timeline needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    pub at: Option<OffsetDateTime>,
    /// The history event type, e.g. `TaskStateEntered`.
    pub kind: String,
    /// The state, for `*StateEntered` and `*StateExited`.
    pub name: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// `resourceType:resource`, for scheduled tasks.
    pub resource: Option<String>,
    pub parameters: Option<String>,
    pub heartbeat_seconds: Option<i64>,
    pub timeout_seconds: Option<i64>,
}

macro_rules! error_details {
    ($event:expr, $($accessor:ident),* $(,)?) => {{
        let mut found: Option<(Option<String>, Option<String>)> = None;
        $(
            if found.is_none()
                && let Some(d) = $event.$accessor()
            {
                found = Some((d.error().map(str::to_owned), d.cause().map(str::to_owned)));
            }
        )*
        found
    }};
}

impl From<&HistoryEvent> for Event {
    fn from(e: &HistoryEvent) -> Event {
        let mut event = Event {
            at: from_smithy(e.timestamp()),
            kind: e.r#type().as_str().to_owned(),
            ..Event::default()
        };
        if let Some(d) = e.state_entered_event_details() {
            event.name = Some(d.name().to_owned());
        }
        if let Some(d) = e.state_exited_event_details() {
            event.name = Some(d.name().to_owned());
        }
        if let Some(d) = e.task_scheduled_event_details() {
            event.resource = Some(format!("{}:{}", d.resource_type(), d.resource()));
            event.parameters = Some(d.parameters().to_owned());
            event.heartbeat_seconds = d.heartbeat_in_seconds();
            event.timeout_seconds = d.timeout_in_seconds();
        }
        if let Some(d) = e.activity_scheduled_event_details() {
            event.resource = Some(d.resource().to_owned());
            event.heartbeat_seconds = d.heartbeat_in_seconds();
            event.timeout_seconds = d.timeout_in_seconds();
        }
        if let Some((error, cause)) = error_details!(
            e,
            task_failed_event_details,
            task_start_failed_event_details,
            task_submit_failed_event_details,
            task_timed_out_event_details,
            activity_failed_event_details,
            activity_schedule_failed_event_details,
            activity_timed_out_event_details,
            lambda_function_failed_event_details,
            lambda_function_schedule_failed_event_details,
            lambda_function_start_failed_event_details,
            lambda_function_timed_out_event_details,
            execution_failed_event_details,
            execution_aborted_event_details,
            execution_timed_out_event_details,
            map_run_failed_event_details,
            evaluation_failed_event_details,
        ) {
            event.error = error;
            event.cause = cause;
        }
        event
    }
}

/// The timeline of an execution from its history events, in order. `end` is when the
/// execution stopped, or now while it runs.
pub fn timeline(
    events: &[Event],
    running: bool,
    end: OffsetDateTime,
) -> (Vec<Step>, Option<String>) {
    let mut steps: Vec<Step> = Vec::new();
    let mut failed_state = None;
    for ev in events {
        let kind = ev.kind.as_str();
        if let Some(state_kind) = kind.strip_suffix("StateEntered") {
            steps.push(Step {
                state: ev.name.clone().unwrap_or_default(),
                kind: state_kind.to_owned(),
                entered_at: ev.at,
                exited_at: None,
                duration_seconds: None,
                outcome: Outcome::Entered,
                attempts: 0,
                resource: None,
                error: None,
                cause: None,
                token_wait: None,
                last_failed: false,
                ended_execution: false,
            });
            continue;
        }
        if kind.ends_with("StateExited") {
            let name = ev.name.as_deref().unwrap_or_default();
            if let Some(step) = steps
                .iter_mut()
                .rev()
                .find(|s| s.exited_at.is_none() && s.state == name)
            {
                step.exited_at = ev.at;
            }
            continue;
        }
        let open = steps.iter_mut().rev().find(|s| s.exited_at.is_none());
        match kind {
            "TaskScheduled" | "ActivityScheduled" | "LambdaFunctionScheduled" => {
                if let Some(step) = open {
                    step.attempts += 1;
                    step.last_failed = false;
                    step.resource = ev.resource.clone();
                    if ev
                        .resource
                        .as_deref()
                        .is_some_and(|r| r.ends_with(".waitForTaskToken"))
                    {
                        let token = ev.parameters.as_deref().and_then(find_token);
                        step.token_wait = Some(TokenWait {
                            since: ev.at,
                            until: None,
                            waited_seconds: None,
                            heartbeat_seconds: ev.heartbeat_seconds,
                            timeout_seconds: ev.timeout_seconds,
                            task_token: token.as_deref().map(redact),
                            token,
                        });
                    }
                }
            }
            "TaskSucceeded" | "ActivitySucceeded" | "LambdaFunctionSucceeded" => {
                if let Some(step) = open {
                    step.last_failed = false;
                    if let Some(wait) = &mut step.token_wait {
                        wait.until = ev.at;
                    }
                }
            }
            "ExecutionFailed" | "ExecutionTimedOut" | "ExecutionAborted" => {
                let step = match open {
                    Some(step) => Some(step),
                    None => steps.last_mut(),
                };
                if let Some(step) = step {
                    step.ended_execution = true;
                    if step.error.is_none() || step.kind == "Fail" {
                        step.error.clone_from(&ev.error);
                        step.cause.clone_from(&ev.cause);
                    }
                    failed_state = Some(step.state.clone());
                }
            }
            _ if ev.error.is_some() || ev.cause.is_some() => {
                if let Some(step) = open {
                    step.last_failed = true;
                    step.error.clone_from(&ev.error);
                    step.cause.clone_from(&ev.cause);
                    if let Some(wait) = &mut step.token_wait {
                        wait.until = ev.at;
                    }
                }
            }
            _ => {}
        }
    }
    for step in &mut steps {
        step.outcome = match () {
            () if step.kind == "Fail" => Outcome::Failed,
            () if step.exited_at.is_some() && step.last_failed => Outcome::Caught,
            () if step.exited_at.is_some() || step.kind == "Succeed" => Outcome::Succeeded,
            () if step.ended_execution => Outcome::Failed,
            () if running && step.token_wait.as_ref().is_some_and(|w| w.until.is_none()) => {
                Outcome::Waiting
            }
            () if running => Outcome::Running,
            () => Outcome::Entered,
        };
        let stop = step.exited_at.unwrap_or(end);
        step.duration_seconds = step.entered_at.map(|t| between(t, stop).as_secs_f64());
        if let Some(wait) = &mut step.token_wait {
            let until = wait.until.unwrap_or(end);
            wait.waited_seconds = wait.since.map(|t| between(t, until).as_secs_f64());
        }
    }
    (steps, failed_state)
}

/// The task token in a task's parameters: the value of a `taskToken` key (any case) at
/// any depth, JSON strings included (an SQS `MessageBody` may be one).
pub fn find_token(parameters: &str) -> Option<String> {
    fn walk(value: &Value) -> Option<String> {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    if k.eq_ignore_ascii_case("taskToken")
                        && let Value::String(s) = v
                    {
                        return Some(s.clone());
                    }
                }
                map.values().find_map(|v| match v {
                    Value::String(s) => serde_json::from_str::<Value>(s)
                        .ok()
                        .as_ref()
                        .and_then(walk),
                    other => walk(other),
                })
            }
            Value::Array(items) => items.iter().find_map(walk),
            _ => None,
        }
    }
    walk(&serde_json::from_str(parameters).ok()?)
}

fn parse_status(text: &str) -> Result<ExecutionStatus, String> {
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

/// Runs `fleet runs ...` for `stage` against the endpoint `sdk` names.
pub async fn run_runs(
    stage: &Stage,
    sdk: &aws_config::SdkConfig,
    command: RunsCommand,
    json: bool,
) -> anyhow::Result<()> {
    let ops = Ops::for_stage(stage, sdk);
    match command {
        RunsCommand::Ls {
            machine,
            status,
            since,
            limit,
        } => {
            let since = since
                .as_deref()
                .map(|s| super::parse_since(s, OffsetDateTime::now_utc()))
                .transpose()?;
            let runs = list(&ops, machine.as_deref(), status, since, limit).await?;
            if json {
                print_json(&runs)
            } else {
                print!("{}", ls_table(&runs));
                Ok(())
            }
        }
        RunsCommand::Show { execution } => {
            let arn = resolve_execution(&ops, &execution).await?;
            let detail = show(&ops, &arn).await?;
            if json {
                print_json(&detail)
            } else {
                print!("{}", show_text(&detail));
                Ok(())
            }
        }
        RunsCommand::Redrive { execution } => {
            let arn = resolve_execution(&ops, &execution).await?;
            let redriven_at = redrive(&ops, &arn).await?;
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

/// The stage's state machines as (name, ARN), or only the one `machine` names.
pub async fn state_machines(
    ops: &Ops,
    machine: Option<&str>,
) -> anyhow::Result<Vec<(String, String)>> {
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
        return Err(UsageError(format!(
            "no state machine {w} at this endpoint (stage {})",
            ops.stage()
        ))
        .into());
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
) -> anyhow::Result<Vec<RunSummary>> {
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
pub async fn resolve_execution(ops: &Ops, execution: &str) -> anyhow::Result<String> {
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
    Err(UsageError(format!(
        "no execution named {execution} on the state machines of stage {} ({})",
        ops.stage(),
        machines
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .into())
}

/// Every history event of an execution, in order.
pub async fn history(ops: &Ops, arn: &str) -> anyhow::Result<Vec<Event>> {
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
pub async fn show(ops: &Ops, arn: &str) -> anyhow::Result<RunDetail> {
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
pub async fn redrive(ops: &Ops, arn: &str) -> anyhow::Result<Option<OffsetDateTime>> {
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
                Err(anyhow::anyhow!(
                    "this endpoint does not implement RedriveExecution (the local emulator, moto, lacks it: it answered {}). On AWS this command redrives the execution from the state that failed; locally, start a new execution with the same input instead (StartExecution with the input shown by `fleet runs show {arn} --json`).",
                    status.map_or_else(|| "an error".to_owned(), |s| format!("HTTP {s}"))
                ))
            } else {
                Err(aws_error("RedriveExecution", arn, e))
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

    fn at(ms: i64) -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(1_800_000_000_000 + ms) * 1_000_000)
            .ok()
    }

    fn ev(ms: i64, kind: &str) -> Event {
        Event {
            at: at(ms),
            kind: kind.to_owned(),
            ..Event::default()
        }
    }

    fn named(ms: i64, kind: &str, name: &str) -> Event {
        Event {
            name: Some(name.to_owned()),
            ..ev(ms, kind)
        }
    }

    fn failed(ms: i64, kind: &str, error: &str, cause: Option<&str>) -> Event {
        Event {
            error: Some(error.to_owned()),
            cause: cause.map(str::to_owned),
            ..ev(ms, kind)
        }
    }

    fn scheduled(ms: i64) -> Event {
        Event {
            resource: Some("sqs:sendMessage.waitForTaskToken".to_owned()),
            parameters: Some(
                r#"{"QueueUrl": "q", "MessageBody": {"taskToken": "tok-123", "jobId": "j"}}"#
                    .to_owned(),
            ),
            heartbeat_seconds: Some(60),
            timeout_seconds: Some(3600),
            ..ev(ms, "TaskScheduled")
        }
    }

    /// The simulation job's history as moto records it when the worker fails the task.
    #[test]
    fn a_caught_task_failure_and_the_fail_state_that_re_raises_it() {
        let events = vec![
            ev(0, "ExecutionStarted"),
            named(1, "PassStateEntered", "Normalize"),
            named(2, "PassStateExited", "Normalize"),
            named(3, "TaskStateEntered", "Run"),
            scheduled(4),
            ev(5, "TaskStarted"),
            ev(100, "TaskSubmitted"),
            failed(400, "TaskFailed", "Model.Failed", Some("diverged")),
            named(401, "TaskStateExited", "Run"),
            named(402, "ChoiceStateEntered", "HowToFail"),
            named(403, "ChoiceStateExited", "HowToFail"),
            named(404, "FailStateEntered", "Failed"),
            failed(410, "ExecutionFailed", "Model.Failed", None),
        ];
        let (steps, failed_state) = timeline(&events, false, at(410).unwrap());
        assert_eq!(failed_state.as_deref(), Some("Failed"));
        let outcomes: Vec<(&str, Outcome)> = steps
            .iter()
            .map(|s| (s.state.as_str(), s.outcome))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("Normalize", Outcome::Succeeded),
                ("Run", Outcome::Caught),
                ("HowToFail", Outcome::Succeeded),
                ("Failed", Outcome::Failed),
            ]
        );
        let run = &steps[1];
        assert_eq!(run.error.as_deref(), Some("Model.Failed"));
        assert_eq!(run.cause.as_deref(), Some("diverged"));
        assert_eq!(run.duration_seconds, Some(0.398));
        let wait = run.token_wait.as_ref().unwrap();
        assert_eq!(wait.token.as_deref(), Some("tok-123"));
        assert_eq!(wait.task_token.as_deref(), Some("tok-123…(7 chars)"));
        assert_eq!(wait.waited_seconds, Some(0.396));
        assert_eq!(steps[3].error.as_deref(), Some("Model.Failed"));
    }

    #[test]
    fn a_running_execution_waits_on_its_token() {
        let events = vec![
            ev(0, "ExecutionStarted"),
            named(1, "TaskStateEntered", "Run"),
            scheduled(2),
            ev(3, "TaskSubmitted"),
        ];
        let (steps, failed_state) = timeline(&events, true, at(5002).unwrap());
        assert_eq!(failed_state, None);
        assert_eq!(steps[0].outcome, Outcome::Waiting);
        assert_eq!(
            steps[0].token_wait.as_ref().unwrap().waited_seconds,
            Some(5.0)
        );
    }

    #[test]
    fn a_retried_task_that_succeeds_counts_its_attempts() {
        let events = vec![
            named(0, "TaskStateEntered", "Publish"),
            scheduled(1),
            failed(2, "TaskFailed", "Worker.Transient", None),
            scheduled(3),
            ev(4, "TaskSucceeded"),
            named(5, "TaskStateExited", "Publish"),
            ev(6, "ExecutionSucceeded"),
        ];
        let (steps, _) = timeline(&events, false, at(6).unwrap());
        assert_eq!(steps[0].outcome, Outcome::Succeeded);
        assert_eq!(steps[0].attempts, 2);
    }

    #[test]
    fn tokens_are_found_at_any_depth_and_inside_json_strings() {
        assert_eq!(
            find_token(r#"{"MessageBody": {"taskToken": "a"}}"#).as_deref(),
            Some("a")
        );
        assert_eq!(
            find_token(r#"{"MessageBody": "{\"TaskToken\": \"b\"}"}"#).as_deref(),
            Some("b")
        );
        assert_eq!(
            find_token(r#"{"Payload": [{"x": 1}, {"taskToken": "c"}]}"#).as_deref(),
            Some("c")
        );
        assert_eq!(find_token(r#"{"MessageBody": {"jobId": "j"}}"#), None);
        assert_eq!(find_token("not json"), None);
    }

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
