//! `fleet bench notifier|worker`: benchmarks that print a JSON report on stdout.

use std::path::PathBuf;

use clap::Subcommand;

use crate::bench;
use crate::render::print_json;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Hold many WebSocket connections on the local gateway subscribed to one channel,
    /// broadcast job events to them, and print p50/p99 delivery latency and resident
    /// memory per connection (JSON). Run it with `--release`.
    Notifier {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        #[arg(long, env = "FLEET_HOME")]
        home: Option<PathBuf>,
    },
    /// Fill a queue with no-op jobs and drain it with the worker runtime, then with a
    /// naive receive-one/delete-one loop; prints a JSON summary of both. Uses the endpoint
    /// AWS_ENDPOINT_URL names, or a private emulator when it is unset.
    Worker {
        #[arg(long, default_value_t = 1000)]
        messages: usize,
        #[arg(long, env = "FLEET_HOME")]
        home: Option<PathBuf>,
    },
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Notifier {
            connections,
            rounds,
            home,
        } => {
            let report = bench::notifier::run(&bench::notifier::BenchConfig {
                connections,
                rounds,
                open_concurrency: 100,
                home: home.unwrap_or_else(emulator::default_home),
                exe: std::env::current_exe()
                    .map_err(|e| anyhow::anyhow!("locating the fleet binary: {e}"))?,
            })
            .await?;
            print_json(&report)?;
            println!(
                "p50 {:.1} ms, p99 {:.1} ms (target < {:.0} ms); {:.1} KiB per idle connection (target < {:.0} KiB)",
                report.latency_p50_ms,
                report.latency_p99_ms,
                report.target_p99_ms,
                report.bytes_per_connection / 1024.0,
                report.target_bytes_per_connection / 1024.0
            );
            Ok(())
        }
        BenchCommand::Worker { messages, home } => {
            let report = bench::worker::run(&bench::worker::BenchConfig {
                messages,
                home: home.unwrap_or_else(emulator::default_home),
            })
            .await?;
            print_json(&report)
        }
    }
}
