//! The `fleet` commands: one module per command, each owning its clap arguments and a
//! `run` that calls the libraries and renders what they return.

pub mod auth;
pub mod bench;
pub mod chaos;
pub mod cost;
pub mod dev;
pub mod dlq;
pub mod events;
pub mod infra;
pub mod jobs;
pub mod ops;
pub mod runs;
pub mod schedules;
pub mod tokens;

use clap::Subcommand;
use fleet_ops::OpsError;
use provision::Stage;
use tokio_util::sync::CancellationToken;

use crate::UsageError;

/// What every command may read from the global flags.
#[derive(Debug, Clone)]
pub struct Globals {
    /// `--stage`: every resource is named `fleet-<stage>-...`.
    pub stage: Stage,
    /// `--json`: JSON on stdout instead of a table.
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole fleet on this machine against the local emulator until Ctrl-C.
    Dev(dev::DevArgs),
    /// Synthesize CloudFormation or deploy the infrastructure.
    #[command(subcommand)]
    Infra(infra::InfraCommand),
    /// Put events on the bus, or watch them.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Dead-letter queues: list, inspect, redrive, purge, export.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// State-machine executions: list, show a timeline, redrive.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// Executions waiting on a task token, and answering for their worker.
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
    /// The ops console in the browser: the same operations for `fleet-ops` users.
    #[command(subcommand)]
    Ops(ops::OpsCommand),
    /// Submit jobs and follow them through the HTTP API.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Delayed events of the scheduler service.
    #[command(subcommand)]
    Schedules(schedules::SchedulesCommand),
    /// Tokens for the local stack.
    #[command(subcommand)]
    Auth(auth::AuthCommand),
    /// Benchmarks that print numbers.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Run the local stack under many faults at once (worker kills, AWS API errors,
    /// duplicate deliveries, Lambda crashes, subscriber drops), check that every job ended
    /// once with every effect once and every stream gapless, and print a JSON report.
    Chaos(chaos::ChaosArgs),
    /// What a month of the fleet costs on AWS, per service, from the topology and a dated
    /// us-east-1 price table (`--measure N`: from requests counted on the local stack).
    Cost(cost::CostArgs),
    /// Run one simulation worker (what `fleet dev` starts; also usable alone).
    #[command(hide = true)]
    Worker(crate::workers::WorkerArgs),
}

/// Runs one command.
pub async fn run(command: Command, globals: &Globals) -> anyhow::Result<()> {
    match command {
        Command::Dev(args) => dev::run(args, globals).await,
        Command::Infra(command) => infra::run(command, globals).await,
        Command::Events(command) => events::run(command, globals).await,
        Command::Dlq(command) => dlq::run(command, globals).await,
        Command::Runs(command) => runs::run(command, globals).await,
        Command::Tokens(command) => tokens::run(command, globals).await,
        Command::Ops(command) => ops::run(command, globals).await,
        Command::Jobs(command) => jobs::run(command).await,
        Command::Schedules(command) => schedules::run(command, globals).await,
        Command::Auth(command) => auth::run(command),
        Command::Bench(command) => bench::run(command).await,
        Command::Chaos(args) => chaos::run(args).await,
        Command::Cost(args) => cost::run(args, globals).await,
        Command::Worker(args) => {
            let shutdown = shutdown_on_signals()?;
            crate::workers::run(args, crate::aws_from_env().await, shutdown).await
        }
    }
}

/// The ops library for the stage, on the endpoint the AWS environment names.
pub(crate) async fn ops(globals: &Globals) -> fleet_ops::Ops {
    fleet_ops::Ops::new(
        provision::fleet(&globals.stage),
        &crate::aws_from_env().await,
    )
}

/// An operation's error for the binary: the caller's mistakes exit with code 2.
pub(crate) fn ops_error(error: OpsError) -> anyhow::Error {
    if error.is_invalid() {
        UsageError(error.to_string()).into()
    } else {
        error.into()
    }
}

/// A token cancelled on Ctrl-C (SIGINT) or SIGTERM.
pub(crate) fn shutdown_on_signals() -> anyhow::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        cancel.cancel();
    });
    Ok(token)
}
