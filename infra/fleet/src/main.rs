//! The `fleet` binary: parses arguments, sets up logging, runs a command, maps its error
//! to an exit code.

use std::process::ExitCode;

use clap::Parser;
use fleet::UsageError;
use fleet::cmd::{Command, Globals};
use provision::Stage;

// `fleet dev` and the benches allocate small buffers from many threads (one WebSocket
// connection, one request per push): glibc's malloc spends much of that time in
// arena locks and consolidation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "fleet",
    version,
    about = "An event-driven worker fleet for AWS: run it locally, deploy it, operate it."
)]
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
    let globals = Globals {
        stage: cli.stage,
        json: cli.json,
    };
    match fleet::cmd::run(cli.command, &globals).await {
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
