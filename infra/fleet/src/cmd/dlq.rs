//! `fleet dlq ls|show|redrive|purge|export`: the stage's dead-letter queues, rendered.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use fleet_ops::Ops;
use fleet_ops::dlq::{
    self, Body, DeadLetterQueue, DeadMessage, DlqStatus, Filter, Progress, Reason, RedriveOptions,
    RedriveReport,
};

use super::{Globals, ops_error};
use crate::UsageError;
use crate::render::{Table, cut, human_duration, human_time_opt, print_json};

/// `fleet dlq ...`
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Every dead-letter queue of the stage: kind, depth, age of the oldest message and
    /// what feeds it.
    Ls,
    /// Peek at the messages of a DLQ without consuming them: the decoded body, receive
    /// count, first failure, reason and correlation id. Task tokens are shown redacted.
    Show {
        /// The DLQ: its full name (fleet-<stage>-simulation-dlq) or without the
        /// `fleet-<stage>-` prefix (simulation-dlq, failures).
        name: String,
        /// At most this many messages.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Send messages back where they failed: an SQS DLQ to its source queue (same body
    /// and attributes, without the worker's fleet.* reason attributes); the failures
    /// queue to the function that failed, as the original event (an asynchronous
    /// `lambda:Invoke`); an EventBridge target DLQ to its SQS or Lambda target. The copy
    /// is sent before the original is deleted.
    Redrive(RedriveArgs),
    /// Delete every message of a DLQ. Asks for confirmation on a terminal; elsewhere
    /// needs --yes.
    Purge {
        name: String,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
    /// Write the messages of a DLQ to stdout as JSON lines, without consuming them.
    Export {
        name: String,
        /// At most this many messages (default: all).
        #[arg(long)]
        limit: Option<usize>,
        /// Keep task tokens in full in the exported bodies (they are redacted otherwise).
        #[arg(long)]
        unredacted: bool,
    },
}

/// `fleet dlq redrive NAME ...`
#[derive(Debug, Clone, Args)]
pub struct RedriveArgs {
    /// The DLQ, as for `fleet dlq show`.
    pub name: String,
    /// Only messages that match: a JSON object is an EventBridge event pattern matched
    /// against the event (the original event for Lambda failures) or the job; anything
    /// else is a substring of the body.
    #[arg(long)]
    pub filter: Option<String>,
    /// Only the message with this id (as `fleet dlq show` lists it).
    #[arg(long, conflicts_with = "filter")]
    pub message_id: Option<String>,
    /// Redrive at most this many messages.
    #[arg(long)]
    pub max: Option<usize>,
    /// At most this many messages per second.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Show what would be redriven and where, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// For the failures queue: the function to re-deliver to (its name with or without
    /// the `fleet-<stage>-` prefix). Without it, each event goes to the function whose
    /// rules' event patterns it matches; an event that matches none or several needs
    /// --function.
    #[arg(long)]
    pub function: Option<String>,
}

/// Runs `fleet dlq ...` for the stage against the endpoint the AWS environment names.
pub async fn run(command: DlqCommand, globals: &Globals) -> anyhow::Result<()> {
    let ops = super::ops(globals).await;
    let json = globals.json;
    match command {
        DlqCommand::Ls => {
            let statuses = dlq::list(&ops).await.map_err(ops_error)?;
            if json {
                print_json(&statuses)
            } else {
                print!("{}", ls_table(&statuses));
                Ok(())
            }
        }
        DlqCommand::Show { name, limit } => {
            let queue = resolve(&ops, &name).await?;
            let messages = dlq::show(&ops, &queue, limit).await.map_err(ops_error)?;
            if json {
                print_json(&messages)
            } else {
                print!("{}", show_text(&queue, &messages));
                Ok(())
            }
        }
        DlqCommand::Export {
            name,
            limit,
            unredacted,
        } => {
            let queue = resolve(&ops, &name).await?;
            let messages = dlq::export(&ops, &queue, limit, unredacted)
                .await
                .map_err(ops_error)?;
            let mut stdout = std::io::stdout().lock();
            for message in &messages {
                // Through a `Value`, as JSON lines always were: keys in its order.
                writeln!(stdout, "{}", serde_json::to_value(message)?)?;
            }
            stdout.flush()?;
            Ok(())
        }
        DlqCommand::Purge { name, yes } => {
            let queue = resolve(&ops, &name).await?;
            let url = dlq::queue_url(&ops, &queue.name).await.map_err(ops_error)?;
            let depth = dlq::depth(&ops, &url).await.map_err(ops_error)?;
            if !yes {
                confirm_purge(&queue.name, depth.0 + depth.1)?;
            }
            dlq::purge(&ops, &url, &queue.name)
                .await
                .map_err(ops_error)?;
            if json {
                print_json(&serde_json::json!({"queue": queue.name, "purged": depth.0 + depth.1}))
            } else {
                println!("purged {} ({} messages)", queue.name, depth.0 + depth.1);
                Ok(())
            }
        }
        DlqCommand::Redrive(args) => {
            let queue = resolve(&ops, &args.name).await?;
            let options = options(&args)?;
            let report = dlq::redrive(&ops, &queue, &options)
                .await
                .map_err(ops_error)?;
            if json {
                print_json(&report)?;
            } else {
                print!("{}", redrive_text(&report));
            }
            redrive_outcome(&report)
        }
    }
}

async fn resolve(ops: &Ops, name: &str) -> anyhow::Result<DeadLetterQueue> {
    dlq::resolve(ops, name).await.map_err(ops_error)
}

fn options(args: &RedriveArgs) -> Result<RedriveOptions, UsageError> {
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(UsageError(format!(
            "--rate {rate}: give a positive number of messages per second"
        )));
    }
    let filter = match &args.message_id {
        Some(id) => Some(Filter::MessageId(id.clone())),
        None => args
            .filter
            .as_deref()
            .map(Filter::parse)
            .transpose()
            .map_err(|e| UsageError(format!("--filter: {e}")))?,
    };
    Ok(RedriveOptions {
        filter,
        max: args.max,
        rate: args.rate,
        dry_run: args.dry_run,
        function: args.function.clone(),
        progress: Some(Arc::new(Bar::default())),
    })
}

/// A progress bar on stderr, drawn only when it is a terminal.
#[derive(Debug, Default)]
struct Bar(std::sync::OnceLock<indicatif::ProgressBar>);

impl Progress for Bar {
    fn started(&self, queue: &str, expected: u64) {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(expected),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} ({per_sec}, {eta} left)",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(format!("redriving {queue}"));
        let _ = self.0.set(bar);
    }

    fn redriven(&self) {
        if let Some(bar) = self.0.get() {
            bar.inc(1);
        }
    }

    fn finished(&self) {
        if let Some(bar) = self.0.get() {
            bar.finish_and_clear();
        }
    }
}

fn confirm_purge(name: &str, depth: u64) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(UsageError(format!(
            "purging {name} deletes its {depth} messages for good; pass --yes to confirm (no terminal to ask on)"
        ))
        .into());
    }
    eprint!("Delete all {depth} messages of {name} for good? Type the queue name to confirm: ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if answer.trim() != name {
        return Err(UsageError("not confirmed; nothing was purged".to_owned()).into());
    }
    Ok(())
}

fn redrive_outcome(report: &RedriveReport) -> anyhow::Result<()> {
    if report.failed.is_empty() {
        return Ok(());
    }
    let needs_function = report.failed.iter().all(|f| f.needs_function);
    let first = &report.failed[0];
    let message = format!(
        "{} message(s) could not be redriven and stay in {} (first: {}: {})",
        report.failed.len(),
        report.queue,
        first.message_id,
        first.error
    );
    if needs_function {
        Err(UsageError(message).into())
    } else {
        Err(anyhow::anyhow!(message))
    }
}

fn ls_table(statuses: &[DlqStatus]) -> String {
    let mut table = Table::new(&["name", "kind", "depth", "oldest", "sources"]).unlimited(4);
    for s in statuses {
        let oldest = s
            .oldest_age_seconds
            .map(|a| human_duration(Duration::from_secs(a)))
            .unwrap_or_else(|| "-".to_owned());
        let sources = if s.queue.sources.is_empty() {
            "-".to_owned()
        } else {
            s.queue
                .sources
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        table.row(vec![
            s.queue.name.clone(),
            s.queue.kind.as_str().to_owned(),
            s.depth.to_string(),
            oldest,
            sources,
        ]);
    }
    table.to_string()
}

fn show_text(queue: &DeadLetterQueue, messages: &[DeadMessage]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if messages.is_empty() {
        let _ = writeln!(
            out,
            "{} ({}) has no visible messages",
            queue.name,
            queue.kind.as_str()
        );
        return out;
    }
    let _ = writeln!(
        out,
        "{} ({}): {} message(s), left in the queue\n",
        queue.name,
        queue.kind.as_str(),
        messages.len()
    );
    for m in messages {
        let _ = writeln!(out, "message {}", m.message_id);
        let _ = writeln!(out, "  failed at:   {}", human_time_opt(m.first_failed_at));
        let _ = writeln!(
            out,
            "  receives:    {}",
            m.receive_count
                .map_or_else(|| "-".to_owned(), |n| n.to_string())
        );
        let _ = writeln!(out, "  reason:      {}", m.reason);
        if let Reason::Worker {
            source_queue: Some(q),
            ..
        } = &m.reason
        {
            let _ = writeln!(out, "  from:        {q}");
        }
        let _ = writeln!(
            out,
            "  correlation: {}",
            m.correlation_id.as_deref().unwrap_or("-")
        );
        let body = match &m.body {
            Body::Event {
                source,
                detail_type,
                decoded,
                error,
                detail,
                ..
            } => {
                let status = match (decoded, error) {
                    (Some(d), _) => format!(" [{d}]"),
                    (None, Some(e)) => format!(" [does not decode: {e}]"),
                    _ => String::new(),
                };
                format!("event {source} {detail_type}{status} {detail}")
            }
            Body::SimulationTask {
                job_id,
                model,
                params,
                task_token,
                ..
            } => format!(
                "simulation task job {job_id}, model {model}, params {params}, token {task_token}"
            ),
            Body::Json { value } => value.to_string(),
            Body::Text { text } => text.clone(),
        };
        let _ = writeln!(out, "  body:        {}\n", cut(&body, 400));
    }
    out
}

fn redrive_text(report: &RedriveReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let verb = if report.dry_run {
        "would redrive"
    } else {
        "redrove"
    };
    let _ = writeln!(
        out,
        "{verb} {} message(s) from {}",
        report.redriven, report.queue
    );
    for (destination, count) in &report.destinations {
        let _ = writeln!(out, "  {count} to {destination}");
    }
    if report.skipped > 0 {
        let _ = writeln!(
            out,
            "  {} left in place: did not match --filter",
            report.skipped
        );
    }
    if report.arrived_later > 0 {
        let _ = writeln!(
            out,
            "  {} left in place: arrived after the redrive started",
            report.arrived_later
        );
    }
    if report.not_deleted > 0 {
        let _ = writeln!(
            out,
            "  {} copied but not deleted here: they will be redriven again (handlers are idempotent)",
            report.not_deleted
        );
    }
    for failure in &report.failed {
        let _ = writeln!(out, "  failed {}: {}", failure.message_id, failure.error);
    }
    out
}
