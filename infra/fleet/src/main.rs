//! The `fleet` binary: parses arguments, sets up logging and signals, runs a subcommand.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use fleet::{UsageError, dev, events, infra, ops};
use tokio_util::sync::CancellationToken;
use topology::Stage;

#[derive(Debug, Parser)]
#[command(name = "fleet", version, about = "An event-driven worker fleet for AWS: run it locally, deploy it, operate it.")]
struct Cli {
    /// The stage: every resource is named `fleet-<stage>-...`.
    #[arg(long, global = true, env = "FLEET_STAGE", default_value = "dev", value_parser = parse_stage)]
    stage: Stage,
    /// JSON on stdout instead of a table (for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole fleet on this machine against the local emulator until Ctrl-C.
    Dev(DevArgs),
    /// Synthesize CloudFormation or deploy the infrastructure.
    #[command(subcommand)]
    Infra(InfraCommand),
    /// Put events on the bus, or watch them.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Dead-letter queues: list, inspect, redrive, purge, export.
    #[command(subcommand)]
    Dlq(ops::DlqCommand),
    /// State-machine executions: list, show a timeline, redrive.
    #[command(subcommand)]
    Runs(ops::RunsCommand),
    /// Executions waiting on a task token, and answering for their worker.
    #[command(subcommand)]
    Tokens(ops::TokensCommand),
    /// Run one simulation worker (what `fleet dev` starts; also usable alone).
    #[command(hide = true)]
    Worker(fleet::workers::WorkerArgs),
}

#[derive(Debug, Args)]
struct DevArgs {
    /// Port of the emulator on 127.0.0.1; an emulator already listening there is reused.
    #[arg(long, default_value_t = 4566)]
    emulator_port: u16,
    /// Folder for the emulator's virtualenv and logs.
    #[arg(long, env = "FLEET_HOME")]
    home: Option<PathBuf>,
    /// Simulation worker processes.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

#[derive(Debug, Subcommand)]
enum InfraCommand {
    /// Write one CloudFormation template per stack into a folder.
    Synth {
        #[arg(long)]
        out: PathBuf,
    },
    /// Create or update the stage's resources at the endpoint the AWS environment names
    /// (AWS_ENDPOINT_URL, AWS_REGION, AWS_PROFILE). Idempotent.
    Deploy,
    /// Synthesize into a folder and check the templates with cfn-lint (installed into the
    /// project's virtualenv on first use).
    Lint {
        #[arg(long, default_value = "target/cfn")]
        out: PathBuf,
        #[arg(long, env = "FLEET_HOME")]
        home: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
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
    Tail(ops::TailArgs),
}

fn parse_stage(s: &str) -> Result<Stage, String> {
    Stage::new(s).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLEET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<UsageError>().is_some() => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let stage = cli.stage;
    let json = cli.json;
    match cli.command {
        Command::Dev(args) => {
            let config = dev::DevConfig {
                stage,
                emulator_port: args.emulator_port,
                home: args.home.unwrap_or_else(emulator::default_home),
                workers: args.workers,
                exe: std::env::current_exe().ok(),
            };
            let shutdown = shutdown_on_signals()?;
            let stack = dev::Stack::start(&config).await?;
            println!("{}", stack.banner());
            println!("fleet dev: ready; Ctrl-C stops everything it started");
            shutdown.cancelled().await;
            eprintln!("fleet dev: stopping");
            stack.stop().await;
            Ok(())
        }
        Command::Infra(InfraCommand::Synth { out }) => {
            for path in infra::synth(&stage, &out)? {
                println!("{}", path.display());
            }
            Ok(())
        }
        Command::Infra(InfraCommand::Lint { out, home }) => {
            let home = home.unwrap_or_else(emulator::default_home);
            println!("{}", infra::lint(&stage, &out, &home)?);
            Ok(())
        }
        Command::Infra(InfraCommand::Deploy) => {
            let sdk = fleet::aws_from_env().await;
            let report = infra::deploy(&stage, &sdk).await?;
            println!("{report}");
            Ok(())
        }
        Command::Events(EventsCommand::Put {
            source,
            detail_type,
            detail,
            bus,
        }) => {
            let detail = events::read_detail(&detail)?;
            let bus = bus.unwrap_or_else(|| topology::Names::new(&stage).bus());
            let sdk = fleet::aws_from_env().await;
            let id = events::put(&sdk, &bus, &source, &detail_type, &detail).await?;
            println!("{id}");
            Ok(())
        }
        Command::Events(EventsCommand::Tail(args)) => {
            ops::run_tail(&stage, &fleet::aws_from_env().await, args, json).await
        }
        Command::Worker(args) => {
            let shutdown = shutdown_on_signals()?;
            fleet::workers::run(args, fleet::aws_from_env().await, shutdown).await
        }
        Command::Dlq(cmd) => ops::run_dlq(&stage, &fleet::aws_from_env().await, cmd, json).await,
        Command::Runs(cmd) => ops::run_runs(&stage, &fleet::aws_from_env().await, cmd, json).await,
        Command::Tokens(cmd) => {
            ops::run_tokens(&stage, &fleet::aws_from_env().await, cmd, json).await
        }
    }
}

/// A token cancelled on Ctrl-C (SIGINT) or SIGTERM.
fn shutdown_on_signals() -> anyhow::Result<CancellationToken> {
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
