//! `fleet chaos`: the local stack under many faults at once, checked against ground
//! truth; prints a JSON report and exits non-zero on any violation.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use crate::chaos::{self, ChaosConfig};
use crate::render::print_json;

#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// Jobs submitted under faults.
    #[arg(long, default_value_t = 200)]
    pub jobs: usize,
    /// Jobs submitted first without faults, for the latency baseline (0: none; default a
    /// quarter of --jobs).
    #[arg(long)]
    pub baseline_jobs: Option<usize>,
    /// Every fault kind's rate, 0 to 1: AWS API errors (throttling, 500/503, dropped
    /// connections, split evenly), extra latency, duplicate SQS deliveries, Lambda
    /// crashes and timeouts, subscriber drops.
    #[arg(long, default_value_t = 0.1)]
    pub rate: f64,
    /// Override --rate for AWS API errors.
    #[arg(long)]
    pub aws_error_rate: Option<f64>,
    /// Override --rate for extra latency on AWS API calls.
    #[arg(long)]
    pub latency_rate: Option<f64>,
    /// Override --rate for SQS messages delivered twice (made visible again at once).
    #[arg(long)]
    pub duplicate_rate: Option<f64>,
    /// Override --rate for Lambda invocations cut off part-way.
    #[arg(long)]
    pub lambda_fault_rate: Option<f64>,
    /// Override --rate for subscribers dropping their connection after a frame.
    #[arg(long)]
    pub subscriber_drop_rate: Option<f64>,
    /// Mean seconds between SIGKILLs of a random worker (0: none).
    #[arg(long, default_value_t = 20)]
    pub kill_every: u64,
    /// Mean seconds between SIGTERMs of a random worker (0: none).
    #[arg(long, default_value_t = 40)]
    pub term_every: u64,
    /// Simulation worker processes.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Users (each with a WebSocket and an SSE subscriber on its channel).
    #[arg(long, default_value_t = 4)]
    pub users: usize,
    /// Seconds over which each phase's submissions are spread (default: half a second
    /// per job).
    #[arg(long)]
    pub submit_over: Option<u64>,
    /// Seconds the fault phase may take to end every job.
    #[arg(long, default_value_t = 600)]
    pub deadline: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Send no Idempotency-Key (shows that the checks catch duplicate jobs).
    #[arg(long)]
    pub without_idempotency_keys: bool,
    /// Resume subscriptions without `since` (shows that the checks catch gaps).
    #[arg(long)]
    pub resume_without_since: bool,
    /// Leave the dead letters injected faults caused where they are, instead of redriving
    /// them as on-call would (shows that the checks catch what a crashed Lambda drops).
    #[arg(long)]
    pub without_redrive: bool,
    #[arg(long, env = "FLEET_HOME")]
    pub home: Option<PathBuf>,
}

impl ChaosArgs {
    pub fn config(&self) -> anyhow::Result<ChaosConfig> {
        let rates = [
            ("--rate", Some(self.rate)),
            ("--aws-error-rate", self.aws_error_rate),
            ("--latency-rate", self.latency_rate),
            ("--duplicate-rate", self.duplicate_rate),
            ("--lambda-fault-rate", self.lambda_fault_rate),
            ("--subscriber-drop-rate", self.subscriber_drop_rate),
        ];
        for (flag, rate) in rates {
            if let Some(rate) = rate
                && !(0.0..=1.0).contains(&rate)
            {
                return Err(crate::UsageError(format!(
                    "{flag} {rate}: give a share from 0 to 1 (0.1 is 10%)"
                ))
                .into());
            }
        }
        let exe = std::env::current_exe().context("locating the fleet binary")?;
        let home = self.home.clone().unwrap_or_else(emulator::default_home);
        let mut config = ChaosConfig::every_fault(self.jobs, self.rate, home, exe);
        let every = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        config.baseline_jobs = self.baseline_jobs.unwrap_or(config.baseline_jobs);
        config.aws_error_rate = self.aws_error_rate.unwrap_or(self.rate);
        config.latency_rate = self.latency_rate.unwrap_or(self.rate);
        config.duplicate_rate = self.duplicate_rate.unwrap_or(self.rate);
        config.lambda_fault_rate = self.lambda_fault_rate.unwrap_or(self.rate);
        config.subscriber_drop_rate = self.subscriber_drop_rate.unwrap_or(self.rate);
        config.kill_every = every(self.kill_every);
        config.term_every = every(self.term_every);
        config.workers = self.workers;
        config.users = self.users;
        if let Some(s) = self.submit_over {
            config.submit_over = Duration::from_secs(s);
        }
        config.deadline = Duration::from_secs(self.deadline);
        config.seed = self.seed;
        config.idempotency_keys = !self.without_idempotency_keys;
        config.resume_with_since = !self.resume_without_since;
        config.redrive = !self.without_redrive;
        Ok(config)
    }
}

pub async fn run(args: ChaosArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let report = chaos::run(&config).await?;
    print_json(&report)?;
    let violations = report.violations.len();
    eprintln!(
        "chaos: {} jobs under faults, {} ended; p50 {:.0} ms, p99 {:.0} ms (baseline p50 {:.0} ms, p99 {:.0} ms); {violations} violations",
        report.faults.jobs,
        report.faults.ended,
        report.faults.latency_p50_ms,
        report.faults.latency_p99_ms,
        report.baseline.as_ref().map_or(0.0, |b| b.latency_p50_ms),
        report.baseline.as_ref().map_or(0.0, |b| b.latency_p99_ms),
    );
    anyhow::ensure!(
        report.passed(),
        "chaos: {violations} violations (see the report)"
    );
    Ok(())
}
