//! `fleet cost --measure N`: runs N jobs on the local stack and counts every AWS request
//! they cause, by service and operation, in AWS's billing units.
//!
//! The stack is `fleet chaos`'s ([`Stack::start_run`]) with a fault plan of no rules:
//! its proxy injects nothing and only counts, with each call's size
//! ([`emulator::faults::Sizes`]). Jobs go in through the public HTTP API as `fleet
//! chaos` submits them ([`Submitter`]). Around the run the counts are read twice and
//! subtracted, so the stack's start-up is not counted; then:
//!
//! - **what the emulator does inside itself** is read from its results: events on the
//!   bus from a tail (Step Functions' `putEvents` tasks publish without a client call),
//!   state transitions and SQS sends of Step Functions' tasks from the executions'
//!   histories;
//! - **what exists only locally** is left out: the local host's delivery queues
//!   (`fleet-<stage>-local-*`, EventBridge → Lambda on AWS has none), DynamoDB `Scan`
//!   (the host's TTL sweep: TTL deletes are free on AWS), SSM reads (free for standard
//!   parameters); and idle long polls (receives answered without a message) are reported
//!   apart, as they depend on time, not on jobs;
//! - **Lambda invocations and their billed time** come from the local host's meter; the
//!   durations are this machine's, in whatever build ran.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use emulator::faults::{FaultPlan, FaultReport, Sizes};
use serde::Serialize;
use serde_json::json;
use tokio::time::Instant;

use super::model::{Basis, Invocations, Profile, Requests};
use crate::chaos::checks::{BusEvent, Expected};
use crate::chaos::workload::{Planned, Submitter, Via};
use crate::dev::{Faults, Stack};

/// What to run.
#[derive(Debug, Clone)]
pub struct MeasureConfig {
    pub jobs: usize,
    /// How long each `spin` job runs on its worker.
    pub job_ms: u64,
    pub workers: usize,
    pub deadline: Duration,
    pub home: PathBuf,
    pub exe: PathBuf,
}

/// One operation's calls during the run, and per job.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counted {
    pub calls: u64,
    pub per_job: f64,
    /// In the operation's billing unit (64 KB chunks, DynamoDB units), per job.
    pub billed_per_job: f64,
    pub request_bytes_per_job: f64,
}

/// What a run counted.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    pub jobs: usize,
    pub seconds: f64,
    /// `service:Operation` through the proxy, local-only calls left out.
    pub operations: BTreeMap<String, Counted>,
    /// Receives answered without a message during the run (time, not jobs).
    pub idle_receives: u64,
    /// Events on the fleet bus per job, by detail type.
    pub events_per_job: BTreeMap<String, f64>,
    /// State transitions per job, from the executions' histories.
    pub transitions_per_job: f64,
    /// SQS sends of Step Functions tasks per job (inside the emulator).
    pub state_machine_sqs_per_job: f64,
    /// Per function: invocations per job and mean billed milliseconds.
    pub lambda: Vec<Invocations>,
    /// The jobs' requests, per job, in billing units.
    pub per_job: Requests,
}

impl Measurement {
    /// The measured job in place of the derived one; what was not measured (frames,
    /// logs, the other flows) stays derived.
    pub fn profile(&self, derived: &Profile) -> Profile {
        let mut job = self.per_job.clone();
        job.frames = derived.job.frames + derived.progress.frames * self.progress_per_job();
        job.log_bytes = derived.job.log_bytes;
        Profile {
            basis: Basis::Measured,
            job,
            progress_in_job: self.progress_per_job(),
            ..derived.clone()
        }
    }

    pub fn progress_per_job(&self) -> f64 {
        self.events_per_job
            .get(contracts::jobs::PROGRESS)
            .copied()
            .unwrap_or(0.0)
    }
}

/// Starts a stack, runs the jobs, counts, stops the stack.
pub async fn run(config: &MeasureConfig) -> anyhow::Result<Measurement> {
    anyhow::ensure!(config.jobs > 0, "--measure must be at least 1");
    let stack = Stack::start_run(
        "cost",
        &config.home,
        &config.exe,
        config.workers.max(1),
        Faults {
            aws: Some(FaultPlan::default()),
            ..Faults::default()
        },
    )
    .await?;
    let outcome = drive(config, &stack).await;
    stack.stop().await;
    outcome
}

async fn drive(config: &MeasureConfig, stack: &Stack) -> anyhow::Result<Measurement> {
    let proxy = stack
        .proxy
        .as_ref()
        .context("the measuring stack has no counting proxy")?;
    let direct = stack.emulator.sdk_config();
    let ops = fleet_ops::Ops::new(stack.topology.clone(), &direct);
    let started = Instant::now();
    let since = time::OffsetDateTime::now_utc();
    let events: Arc<Mutex<Vec<BusEvent>>> = Arc::default();
    let (stop_tail, tail) = crate::chaos::tail_bus(
        ops.clone(),
        stack.topology.names().bus(),
        &json!({"source": [{"prefix": ""}]}),
        started,
        Arc::clone(&events),
    )
    .await?;
    let before = (proxy.report(), stack.host.function_usage());

    let token = stack
        .issuer
        .issue("cost-user", Duration::from_secs(3600))
        .map_err(|e| anyhow::anyhow!("issuing a token: {e}"))?;
    let submitter = Submitter {
        base: format!("http://{}", stack.http_addr),
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .context("an HTTP client")?,
        idempotency: true,
    };
    let deadline = started + config.deadline;
    let job = Planned {
        owner: "cost-user".into(),
        model: "spin",
        params: json!({"durationMs": config.job_ms}),
        expected: Expected::Succeeded,
        via: Via::Http,
        followed: false,
        at: Duration::ZERO,
    };
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let mut http_requests = 0u64;
    let mut ids = Vec::with_capacity(config.jobs);
    for i in 0..config.jobs {
        let submission = submitter
            .http(&token, &job, &format!("cost-{run_id}-{i}"), deadline)
            .await?;
        http_requests += u64::from(submission.attempts);
        ids.push(submission.job_id);
    }
    eprintln!(
        "cost: {} jobs submitted, waiting for them to end",
        ids.len()
    );

    // Every job ended, then nothing more happens: no invocation and no AWS call but idle
    // polls for a while (the outcome's consumers run after it is on the bus).
    let ended = |events: &[BusEvent]| {
        events
            .iter()
            .filter(|e| {
                e.detail_type == contracts::jobs::SUCCEEDED
                    || e.detail_type == contracts::jobs::FAILED
            })
            .filter(|e| e.job_id.as_ref().is_some_and(|j| ids.contains(j)))
            .count()
    };
    loop {
        let seen = events.lock().map(|e| ended(&e)).unwrap_or(0);
        if seen >= ids.len() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {seen} of {} jobs ended within {:?}",
            ids.len(),
            config.deadline
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut last = busy(&proxy.report(), &stack.host.function_usage());
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < QUIET_FOR {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the stack was still busy at the deadline"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = busy(&proxy.report(), &stack.host.function_usage());
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
    }
    let after = (proxy.report(), stack.host.function_usage());
    let seconds = started.elapsed().as_secs_f64();
    let _ = stop_tail.send(true);
    let _ = tail.await;
    let events = events.lock().map(|e| e.clone()).unwrap_or_default();

    let (transitions, machine_sqs) = executions(&ops, since).await?;
    // `fleet-<stage>-local-`: every delivery queue's name starts so.
    let local_prefix = local_host::delivery_queue(&stack.topology.names(), "");
    Ok(tally(Tally {
        jobs: config.jobs,
        seconds,
        before: &before.0,
        after: &after.0,
        usage_before: &before.1,
        usage_after: &after.1,
        topology: &stack.topology,
        local_queue_prefix: &local_prefix,
        events: &events,
        transitions,
        machine_sqs,
        http_requests,
    }))
}

/// How long the stack must do nothing but idle polls before the counts are read.
const QUIET_FOR: Duration = Duration::from_secs(3);

/// The counts that change only when something other than an idle poll happens.
fn busy(report: &FaultReport, usage: &BTreeMap<String, local_host::FunctionUsage>) -> (u64, u64) {
    let calls: u64 = report
        .operations
        .values()
        .map(|o| o.sizes.calls - o.sizes.empty_receives)
        .sum();
    let invocations = usage.values().map(|u| u.invocations).sum();
    (calls, invocations)
}

/// State transitions and SQS task sends of every execution started since `since`.
async fn executions(
    ops: &fleet_ops::Ops,
    since: time::OffsetDateTime,
) -> anyhow::Result<(u64, u64)> {
    let runs = fleet_ops::runs::list(ops, None, None, Some(since), MAX_EXECUTIONS)
        .await
        .context("listing the executions")?;
    let (mut transitions, mut sqs) = (0, 0);
    for run in runs {
        for event in fleet_ops::runs::history(ops, &run.arn)
            .await
            .with_context(|| format!("reading the history of {}", run.name))?
        {
            if event.kind.ends_with("StateEntered") {
                transitions += 1;
            }
            if event.kind == "TaskScheduled"
                && event
                    .resource
                    .as_deref()
                    .is_some_and(|r| r.starts_with("sqs:"))
            {
                sqs += 1;
            }
        }
    }
    Ok((transitions, sqs))
}

/// Executions read back at most (a measurement runs at most
/// [`super::bounds::MAX_MEASURE_JOBS`] jobs, each one execution, plus what they start).
const MAX_EXECUTIONS: usize = 10 * super::bounds::MAX_MEASURE_JOBS;

/// Everything counted, before it is divided by the jobs.
struct Tally<'a> {
    jobs: usize,
    seconds: f64,
    before: &'a FaultReport,
    after: &'a FaultReport,
    usage_before: &'a BTreeMap<String, local_host::FunctionUsage>,
    usage_after: &'a BTreeMap<String, local_host::FunctionUsage>,
    topology: &'a topology::Topology,
    local_queue_prefix: &'a str,
    events: &'a [BusEvent],
    transitions: u64,
    machine_sqs: u64,
    http_requests: u64,
}

/// The calls one operation made between two reports, less local-only queues.
fn between(t: &Tally<'_>, key: &str) -> Sizes {
    let sizes = |report: &FaultReport| -> Sizes {
        let Some(op) = report.operation(key) else {
            return Sizes::default();
        };
        if op.queues.is_empty() {
            return op.sizes;
        }
        let mut kept = Sizes::default();
        for (queue, s) in &op.queues {
            if !queue.starts_with(t.local_queue_prefix) {
                kept = plus(kept, *s);
            }
        }
        kept
    };
    minus(sizes(t.after), sizes(t.before))
}

fn plus(a: Sizes, b: Sizes) -> Sizes {
    Sizes {
        calls: a.calls + b.calls,
        request_bytes: a.request_bytes + b.request_bytes,
        response_bytes: a.response_bytes + b.response_bytes,
        request_64k: a.request_64k + b.request_64k,
        request_1k: a.request_1k + b.request_1k,
        response_4k: a.response_4k + b.response_4k,
        empty_receives: a.empty_receives + b.empty_receives,
    }
}

fn minus(a: Sizes, b: Sizes) -> Sizes {
    Sizes {
        calls: a.calls.saturating_sub(b.calls),
        request_bytes: a.request_bytes.saturating_sub(b.request_bytes),
        response_bytes: a.response_bytes.saturating_sub(b.response_bytes),
        request_64k: a.request_64k.saturating_sub(b.request_64k),
        request_1k: a.request_1k.saturating_sub(b.request_1k),
        response_4k: a.response_4k.saturating_sub(b.response_4k),
        empty_receives: a.empty_receives.saturating_sub(b.empty_receives),
    }
}

/// Local-only operations, left out of the counts (see the module's documentation).
fn local_only(key: &str) -> bool {
    key == "dynamodb:Scan" || key.starts_with("ssm:")
}

/// How an operation is billed, in its unit, from its sizes.
fn billed(key: &str, s: &Sizes) -> f64 {
    let (service, operation) = key.split_once(':').unwrap_or((key, ""));
    match (service, operation) {
        // A receive that found nothing is an idle poll, counted apart.
        ("sqs", "ReceiveMessage") => (s.request_64k - s.empty_receives.min(s.request_64k)) as f64,
        ("sqs" | "sns", _) => s.request_64k as f64,
        ("dynamodb", "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem") => {
            s.request_1k as f64
        }
        // Transactions cost twice.
        ("dynamodb", "TransactWriteItems") => 2.0 * s.request_1k as f64,
        ("dynamodb", "GetItem" | "Query" | "BatchGetItem") => s.response_4k as f64,
        ("dynamodb", "TransactGetItems") => 2.0 * s.response_4k as f64,
        _ => s.calls as f64,
    }
}

fn tally(t: Tally<'_>) -> Measurement {
    let jobs = t.jobs.max(1) as f64;
    let mut operations = BTreeMap::new();
    let mut per_job = Requests::default();
    let mut idle_receives = 0;
    for key in t.after.operations.keys() {
        if local_only(key) {
            continue;
        }
        let s = between(&t, key);
        if s.calls == 0 {
            continue;
        }
        let units = billed(key, &s) / jobs;
        operations.insert(
            key.clone(),
            Counted {
                calls: s.calls,
                per_job: s.calls as f64 / jobs,
                billed_per_job: units,
                request_bytes_per_job: s.request_bytes as f64 / jobs,
            },
        );
        let (service, operation) = key.split_once(':').unwrap_or((key.as_str(), ""));
        match (service, operation) {
            ("sqs", _) => {
                per_job.sqs += units;
                if operation == "ReceiveMessage" {
                    idle_receives += s.empty_receives;
                }
            }
            ("sns", "Publish" | "PublishBatch") => per_job.sns += units,
            ("dynamodb", "PutItem" | "UpdateItem") => {
                per_job.dynamodb_write_units += units;
                per_job.dynamodb_bytes += s.request_bytes as f64 / jobs;
            }
            ("dynamodb", "DeleteItem" | "BatchWriteItem" | "TransactWriteItems") => {
                per_job.dynamodb_write_units += units;
            }
            ("dynamodb", "GetItem" | "Query" | "BatchGetItem" | "TransactGetItems") => {
                per_job.dynamodb_read_units += units;
            }
            ("s3", "PutObject" | "CopyObject" | "ListObjectsV2" | "CreateMultipartUpload") => {
                per_job.s3_puts += units;
                if operation == "PutObject" {
                    per_job.s3_bytes += s.request_bytes as f64 / jobs;
                }
            }
            ("s3", _) => per_job.s3_gets += units,
            _ => {}
        }
    }
    // Events: what the bus carried, each entry in 64 KB chunks.
    let mut events_per_job = BTreeMap::new();
    for e in t.events {
        *events_per_job.entry(e.detail_type.clone()).or_insert(0.0) += 1.0 / jobs;
        let size = e.detail.to_string().len() + e.detail_type.len() + 64;
        per_job.events += size.div_ceil(64 * 1024).max(1) as f64 / jobs;
    }
    per_job.transitions = t.transitions as f64 / jobs;
    per_job.sqs += t.machine_sqs as f64 / jobs;
    per_job.http_requests = t.http_requests as f64 / jobs;
    let lambda: Vec<Invocations> = t
        .usage_after
        .iter()
        .filter_map(|(name, after)| {
            let before = t.usage_before.get(name).copied().unwrap_or_default();
            let count = after.invocations.saturating_sub(before.invocations);
            if count == 0 {
                return None;
            }
            let ms = after.billed_ms.saturating_sub(before.billed_ms);
            Some(Invocations {
                function: name.clone(),
                memory_mb: t
                    .topology
                    .function(name)
                    .map_or(topology::Function::DEFAULT_MEMORY_MB, |f| f.memory_mb),
                count: count as f64 / jobs,
                mean_ms: ms as f64 / count as f64,
            })
        })
        .collect();
    per_job.invocations = lambda.clone();
    Measurement {
        jobs: t.jobs,
        seconds: t.seconds,
        operations,
        idle_receives,
        events_per_job,
        transitions_per_job: per_job.transitions,
        state_machine_sqs_per_job: t.machine_sqs as f64 / jobs,
        lambda,
        per_job,
    }
}
