//! `fleet tokens ls|succeed|fail|heartbeat`: executions waiting on a task token, and
//! answering for their worker.

use std::io::Read as _;
use std::time::Duration;

use clap::Subcommand;
use fleet_ops::tokens::{self, WaitingTask};
use serde_json::Value;

use super::{Globals, ops_error};
use crate::UsageError;
use crate::render::{Table, human_duration, human_time_opt, print_json};

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

/// Runs `fleet tokens ...` for the stage against the endpoint the AWS environment names.
pub async fn run(command: TokensCommand, globals: &Globals) -> anyhow::Result<()> {
    let ops = super::ops(globals).await;
    let json = globals.json;
    match command {
        TokensCommand::Ls { machine } => {
            let waiting = tokens::list(&ops, machine.as_deref())
                .await
                .map_err(ops_error)?;
            if json {
                print_json(&waiting)
            } else {
                print!("{}", ls_table(&waiting));
                Ok(())
            }
        }
        TokensCommand::Succeed { token, output } => {
            let token = read_token(&token)?;
            if serde_json::from_str::<Value>(&output).is_err() {
                return Err(UsageError(format!(
                    "--output {output:?} is not JSON; pass e.g. --output '{{\"ok\": true}}'"
                ))
                .into());
            }
            tokens::succeed(&ops, &token, &output)
                .await
                .map_err(ops_error)?;
            done(json, "succeeded")
        }
        TokensCommand::Fail {
            token,
            error,
            cause,
        } => {
            let token = read_token(&token)?;
            tokens::fail(&ops, &token, error.as_deref(), cause.as_deref())
                .await
                .map_err(ops_error)?;
            done(json, "failed")
        }
        TokensCommand::Heartbeat { token } => {
            let token = read_token(&token)?;
            tokens::heartbeat(&ops, &token).await.map_err(ops_error)?;
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
