//! An execution's timeline read from its history: each state with its start, duration,
//! outcome, error and cause, and any wait on a task token.

use aws_sdk_sfn::types::HistoryEvent;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::times::{between, from_smithy, redact};

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
        if let Some(d) = e.task_succeeded_event_details() {
            event.resource = Some(format!("{}:{}", d.resource_type(), d.resource()));
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
}
