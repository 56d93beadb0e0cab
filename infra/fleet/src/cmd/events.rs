//! `fleet events put|tail`.

use std::io::Write as _;

use clap::{Args, Subcommand};
use fleet_ops::pattern::Pattern;
use fleet_ops::tail::EVERY_EVENT;

use super::{Globals, ops_error};
use crate::{UsageError, events};

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Publish one event; prints its event id.
    Put {
        #[arg(long)]
        source: String,
        #[arg(long)]
        detail_type: String,
        /// A JSON object, or @file.json.
        #[arg(long)]
        detail: String,
        /// The bus (default: fleet-<stage>).
        #[arg(long)]
        bus: Option<String>,
    },
    /// Print live events of the bus, one JSON object per line, through a temporary rule
    /// and queue of its own (removed on exit and Ctrl-C), so no consumer misses any.
    Tail(TailArgs),
}

/// `fleet events tail ...`
#[derive(Debug, Clone, Args)]
pub struct TailArgs {
    /// Only events matching this EventBridge event pattern, e.g.
    /// '{"source": ["fleet.jobs"], "detail-type": [{"prefix": "Job"}]}' (default: every
    /// event).
    #[arg(long)]
    pub pattern: Option<String>,
    /// The bus (default: fleet-<stage>).
    #[arg(long)]
    pub bus: Option<String>,
}

pub async fn run(command: EventsCommand, globals: &Globals) -> anyhow::Result<()> {
    match command {
        EventsCommand::Put {
            source,
            detail_type,
            detail,
            bus,
        } => {
            let detail = events::read_detail(&detail)?;
            let bus = bus.unwrap_or_else(|| provision::Names::new(&globals.stage).bus());
            let sdk = crate::aws_from_env().await;
            let id = events::put(&sdk, &bus, &source, &detail_type, &detail).await?;
            println!("{id}");
            Ok(())
        }
        EventsCommand::Tail(args) => tail(args, globals).await,
    }
}

/// Runs `fleet events tail` until Ctrl-C or SIGTERM; prints one JSON event per line.
async fn tail(args: TailArgs, globals: &Globals) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let sdk = crate::aws_from_env().await;
    // Installed before anything is created, so a signal during setup is not lost: it
    // ends the tail as soon as setup is done, and cleanup runs.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    };
    let ops = fleet_ops::Ops::new(provision::fleet(&globals.stage), &sdk);
    let bus = args.bus.unwrap_or_else(|| ops.names.bus());
    let pattern = match &args.pattern {
        Some(text) => Pattern::parse(text).map_err(|e| UsageError(format!("--pattern: {e}")))?,
        None => Pattern::parse(EVERY_EVENT)
            .map_err(|e| anyhow::anyhow!("the match-all pattern is valid: {e}"))?,
    };
    let mut stdout = std::io::stdout();
    fleet_ops::tail::tail(
        &ops,
        &bus,
        &pattern,
        shutdown,
        |line| {
            writeln!(stdout, "{line}")?;
            stdout.flush()
        },
        |t| {
            eprintln!(
                "tailing bus {} through the temporary rule {} and queue {}; Ctrl-C stops and removes them",
                t.bus, t.rule, t.queue
            );
        },
    )
    .await
    .map_err(ops_error)
}
