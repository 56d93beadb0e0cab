//! `fleet cost`: a month of the fleet on AWS, priced per service from the topology (or
//! from requests counted on the local stack with `--measure`), with the always-on
//! comparison.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use crate::UsageError;
use crate::cmd::Globals;
use crate::cost::bounds::*;
use crate::cost::measure::{self, MeasureConfig, Measurement};
use crate::cost::model::{self, Estimate, Profile, Requests, Workload};
use crate::cost::{derive, prices};
use crate::render::{Table, print_json};

#[derive(Debug, Args)]
pub struct CostArgs {
    /// Jobs a month.
    #[arg(long, default_value_t = 100_000)]
    pub jobs_per_month: u64,
    /// Seconds a job runs on its worker.
    #[arg(long, default_value_t = 60.0)]
    pub job_seconds: f64,
    /// vCPUs of a worker task (default: the topology's).
    #[arg(long)]
    pub worker_vcpu: Option<f64>,
    /// GB of memory of a worker task (default: the topology's).
    #[arg(long)]
    pub worker_memory_gb: Option<f64>,
    /// `JobProgress` events a job publishes.
    #[arg(long, default_value_t = 10)]
    pub progress_per_job: u64,
    /// WebSocket connections open on average.
    #[arg(long, default_value_t = 100)]
    pub subscribers: u64,
    /// Hours a month each subscriber is connected.
    #[arg(long, default_value_t = 40.0)]
    pub connected_hours: f64,
    /// Webhook calls from external providers a month.
    #[arg(long, default_value_t = 0)]
    pub callbacks_per_month: u64,
    /// Delayed events (`ScheduleRequested`) a month.
    #[arg(long, default_value_t = 0)]
    pub schedules_per_month: u64,
    /// The busiest hour's load over the mean hour's: the always-on fleet is sized for it.
    #[arg(long, default_value_t = 3.0)]
    pub peak_factor: f64,
    /// The region to price (only us-east-1 is).
    #[arg(long, default_value = prices::REGION)]
    pub region: String,
    /// Subtract AWS's always-free monthly allowances.
    #[arg(long)]
    pub free_tier: bool,
    /// Run this many jobs on a local stack first and price the requests they made.
    #[arg(long, value_name = "N")]
    pub measure: Option<usize>,
    /// With --measure: milliseconds each measured `spin` job runs.
    #[arg(long, default_value_t = 1500)]
    pub measure_job_ms: u64,
    /// With --measure: worker processes.
    #[arg(long, default_value_t = 2)]
    pub measure_workers: usize,
    /// With --measure: where the emulator's virtualenv lives.
    #[arg(long, env = "FLEET_HOME")]
    pub home: Option<PathBuf>,
}

/// What `--json` prints.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Output<'a> {
    estimate: &'a Estimate,
    derived_per_job: &'a Requests,
    measurement: Option<&'a Measurement>,
}

impl CostArgs {
    /// The workload, every flag checked against its bound.
    pub fn workload(&self, topology: &provision::Topology) -> anyhow::Result<Workload> {
        if self.region != prices::REGION {
            return Err(UsageError(format!(
                "--region {}: only {} is priced (prices differ by region and service, and AWS publishes no multiplier); \
                 drop --region or pass --region {}",
                self.region,
                prices::REGION,
                prices::REGION
            ))
            .into());
        }
        let worker = topology.fargate_services().next();
        let vcpu = self
            .worker_vcpu
            .unwrap_or_else(|| worker.map_or(1.0, |w| f64::from(w.cpu) / 1024.0));
        let memory = self
            .worker_memory_gb
            .unwrap_or_else(|| worker.map_or(2.0, |w| f64::from(w.memory_mb) / 1024.0));
        let count = |flag: &str, value: u64, max: u64| -> anyhow::Result<f64> {
            if value > max {
                return Err(UsageError(format!("{flag} {value}: give at most {max}")).into());
            }
            Ok(value as f64)
        };
        let real = |flag: &str, value: f64, min: f64, max: u64| -> anyhow::Result<f64> {
            if !value.is_finite() || value < min || value > max as f64 {
                return Err(UsageError(format!(
                    "{flag} {value}: give a number from {min} to {max}"
                ))
                .into());
            }
            Ok(value)
        };
        Ok(Workload {
            jobs_per_month: count("--jobs-per-month", self.jobs_per_month, MAX_PER_MONTH)?,
            job_seconds: real("--job-seconds", self.job_seconds, 0.0, MAX_JOB_SECONDS)?,
            worker_vcpu: real("--worker-vcpu", vcpu, 0.25, MAX_WORKER_VCPU)?,
            worker_memory_gb: real("--worker-memory-gb", memory, 0.5, MAX_WORKER_MEMORY_GB)?,
            progress_per_job: count(
                "--progress-per-job",
                self.progress_per_job,
                MAX_PROGRESS_PER_JOB,
            )?,
            subscribers: count("--subscribers", self.subscribers, MAX_SUBSCRIBERS)?,
            connected_hours: real(
                "--connected-hours",
                self.connected_hours,
                0.0,
                MAX_CONNECTED_HOURS,
            )?,
            callbacks_per_month: count(
                "--callbacks-per-month",
                self.callbacks_per_month,
                MAX_PER_MONTH,
            )?,
            schedules_per_month: count(
                "--schedules-per-month",
                self.schedules_per_month,
                MAX_PER_MONTH,
            )?,
            peak_factor: real("--peak-factor", self.peak_factor, 1.0, MAX_PEAK_FACTOR)?,
            free_tier: self.free_tier,
        })
    }

    fn measure_config(&self, jobs: usize) -> anyhow::Result<MeasureConfig> {
        if jobs == 0 || jobs > MAX_MEASURE_JOBS {
            return Err(UsageError(format!(
                "--measure {jobs}: give from 1 to {MAX_MEASURE_JOBS} jobs"
            ))
            .into());
        }
        if self.measure_job_ms > simulation::models::spin::MAX_DURATION_MS {
            return Err(UsageError(format!(
                "--measure-job-ms {}: give at most {}",
                self.measure_job_ms,
                simulation::models::spin::MAX_DURATION_MS
            ))
            .into());
        }
        if self.measure_workers == 0 || self.measure_workers > MAX_MEASURE_WORKERS {
            return Err(UsageError(format!(
                "--measure-workers {}: give from 1 to {MAX_MEASURE_WORKERS}",
                self.measure_workers
            ))
            .into());
        }
        Ok(MeasureConfig {
            jobs,
            job_ms: self.measure_job_ms,
            workers: self.measure_workers,
            deadline: Duration::from_secs(600),
            home: self.home.clone().unwrap_or_else(emulator::default_home),
            exe: std::env::current_exe().context("locating the fleet binary")?,
        })
    }
}

pub async fn run(args: CostArgs, globals: &Globals) -> anyhow::Result<()> {
    let topology = provision::fleet(&globals.stage);
    let workload = args.workload(&topology)?;
    let derived = derive::profile(&topology).context("reading the topology's flows")?;
    let measurement = match args.measure {
        Some(jobs) => Some(measure::run(&args.measure_config(jobs)?).await?),
        None => None,
    };
    let profile: Profile = match &measurement {
        Some(m) => m.profile(&derived),
        None => derived.clone(),
    };
    let estimate = model::estimate(&workload, &profile);
    if globals.json {
        return print_json(&Output {
            estimate: &estimate,
            derived_per_job: &derived.job,
            measurement: measurement.as_ref(),
        });
    }
    if let Some(m) = &measurement {
        print!("{}", render_measurement(m, &derived.job));
        println!();
    }
    print!("{}", render_estimate(&estimate));
    Ok(())
}

/// The bill as a table, the total and the always-on comparison.
pub fn render_estimate(e: &Estimate) -> String {
    let mut table = Table::new(&["service", "unit", "quantity", "free", "usd/unit", "usd"]);
    for l in &e.lines {
        table.row(vec![
            l.service.to_owned(),
            l.unit.to_owned(),
            quantity(l.quantity),
            quantity(l.free),
            format!("{:.10}", l.usd_per_unit)
                .trim_end_matches('0')
                .to_owned(),
            format!("{:.2}", l.usd),
        ]);
    }
    let w = &e.workload;
    let a = &e.always_on;
    format!(
        "{table}total: ${total:.2} a month in {region} (list prices read {read}; per-job requests {basis})\n\
         always-on: {tasks} worker tasks of {vcpu} vCPU / {mem} GB all month (the mean {mean:.2} busy workers × peak factor {peak}) \
         cost ${on:.2} instead of ${scaled:.2}: ${total_on:.2} a month in all, {ratio:.1}× the serverless bill\n",
        table = table,
        total = e.total_usd,
        region = e.region,
        read = e.prices_read_on,
        basis = match e.basis {
            model::Basis::Derived => "derived from the topology",
            model::Basis::Measured => "measured on the local stack",
        },
        tasks = a.tasks,
        vcpu = w.worker_vcpu,
        mem = w.worker_memory_gb,
        mean = a.mean_busy_workers,
        peak = w.peak_factor,
        on = a.compute_usd,
        scaled = a.serverless_compute_usd,
        total_on = a.total_usd,
        ratio = if e.total_usd > 0.0 {
            a.total_usd / e.total_usd
        } else {
            0.0
        },
    )
}

/// The measured requests per job beside the derived ones, and every operation counted.
pub fn render_measurement(m: &Measurement, derived: &Requests) -> String {
    let mut side = Table::new(&["per job", "derived", "measured"]);
    let rows = [
        ("EventBridge events", derived.events, m.per_job.events),
        ("SQS requests", derived.sqs, m.per_job.sqs),
        ("SNS publishes", derived.sns, m.per_job.sns),
        (
            "state transitions",
            derived.transitions,
            m.per_job.transitions,
        ),
        (
            "Lambda invocations",
            derived.lambda_requests(),
            m.per_job.lambda_requests(),
        ),
        (
            "Lambda GB-seconds",
            derived.lambda_gb_seconds(),
            m.per_job.lambda_gb_seconds(),
        ),
        (
            "DynamoDB write units",
            derived.dynamodb_write_units,
            m.per_job.dynamodb_write_units,
        ),
        (
            "DynamoDB read units",
            derived.dynamodb_read_units,
            m.per_job.dynamodb_read_units,
        ),
        ("S3 PUTs", derived.s3_puts, m.per_job.s3_puts),
        ("S3 GETs", derived.s3_gets, m.per_job.s3_gets),
        ("S3 bytes stored", derived.s3_bytes, m.per_job.s3_bytes),
        (
            "HTTP requests",
            derived.http_requests,
            m.per_job.http_requests,
        ),
    ];
    for (what, d, measured) in rows {
        side.row(vec![what.to_owned(), per_job(d), per_job(measured)]);
    }
    let mut calls = Table::new(&["operation", "calls", "per job", "billed units per job"]);
    for (key, c) in &m.operations {
        calls.row(vec![
            key.clone(),
            c.calls.to_string(),
            per_job(c.per_job),
            per_job(c.billed_per_job),
        ]);
    }
    for (detail_type, n) in &m.events_per_job {
        calls.row(vec![
            format!("events (on the bus): {detail_type}"),
            "-".into(),
            per_job(*n),
            per_job(*n),
        ]);
    }
    calls.row(vec![
        "states (histories): transitions".into(),
        "-".into(),
        per_job(m.transitions_per_job),
        per_job(m.transitions_per_job),
    ]);
    calls.row(vec![
        "states (histories): SQS task sends".into(),
        "-".into(),
        per_job(m.state_machine_sqs_per_job),
        per_job(m.state_machine_sqs_per_job),
    ]);
    for l in &m.lambda {
        calls.row(vec![
            format!(
                "lambda: {} ({} MB, mean {:.1} ms)",
                l.function, l.memory_mb, l.mean_ms
            ),
            "-".into(),
            per_job(l.count),
            per_job(l.count),
        ]);
    }
    format!(
        "measured: {jobs} jobs on the local stack in {secs:.0} s ({idle} idle long polls left out)\n{side}\n{calls}",
        jobs = m.jobs,
        secs = m.seconds,
        idle = m.idle_receives,
    )
}

fn per_job(v: f64) -> String {
    format!("{v:.2}")
}

fn quantity(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// `--measure-workers`'s bound.
pub const MAX_MEASURE_WORKERS: usize = 16;
