//! `fleet chaos`: the whole local stack under many faults at once, checked against ground
//! truth.
//!
//! The run starts the stack as `fleet dev` does (its own emulator, a fault proxy in front
//! of it, the local host with invocation faults, worker processes), then drives a workload
//! through public interfaces only: `POST /jobs` (some sent twice with one
//! `Idempotency-Key`), `JobRequested` on the bus from an upstream source, and WebSocket and
//! SSE subscribers on `user:` and `job:` channels. A first phase runs without faults (the
//! baseline); the second with every fault kind on. Then the faults stop, and the checks
//! ([`checks`]) compare what was submitted with what the jobs API stored, what the bus
//! carried, the results bucket, the dead-letter queues and every subscriber's stream.
//!
//! Dead letters: Lambda retries an asynchronous invocation twice, then dead-letters it
//! (on AWS as here), so at high fault rates a few events end there; the harness acts as
//! the on-call engineer (`fleet dlq redrive`) for dead letters whose reason is an
//! injected fault, reports how many, and counts any other dead letter as a violation.

pub mod checks;
pub mod subscribers;
pub mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use emulator::faults::{FaultKind, FaultPlan, FaultRule};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::dev::{Faults, Stack};
use checks::{BusEvent, DeadLetter, History, Stored, Submitted, Violation};
use subscribers::{Counters, Record, Spec, Transport};
use workload::{Planned, Submitter, Via};

/// What to run.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// Jobs of the fault phase.
    pub jobs: usize,
    /// Jobs of the baseline phase (no faults); 0 skips it.
    pub baseline_jobs: usize,
    pub users: usize,
    pub workers: usize,
    pub seed: u64,
    /// Submissions are spread over this long (per phase).
    pub submit_over: Duration,
    /// The share of AWS API calls failing (split evenly between throttling, 500/503 and
    /// dropped connections).
    pub aws_error_rate: f64,
    /// The share of AWS API calls delayed, and by how much at most.
    pub latency_rate: f64,
    pub latency_max: Duration,
    /// The share of received SQS messages made visible again at once (a second consumer
    /// gets them while the first works: a duplicate delivery).
    pub duplicate_rate: f64,
    /// The share of Lambda invocations cut off (split between crashes and timeouts).
    pub lambda_fault_rate: f64,
    /// The chance a subscriber drops its connection after each frame.
    pub subscriber_drop_rate: f64,
    /// On average, how often a worker is killed with SIGKILL (and restarted).
    pub kill_every: Option<Duration>,
    /// On average, how often a worker is sent SIGTERM mid-job (and restarted once it
    /// drained).
    pub term_every: Option<Duration>,
    /// How long the fault phase may take to end every job.
    pub deadline: Duration,
    /// Protections the harness itself can switch off, to show the checks catch what they
    /// claim: the `Idempotency-Key` on retried submissions, `since` on resume, and the
    /// redrive of dead letters an injected fault caused (as on-call would).
    pub idempotency_keys: bool,
    pub resume_with_since: bool,
    pub redrive: bool,
    pub home: PathBuf,
    pub exe: PathBuf,
}

impl ChaosConfig {
    /// Every fault kind at `rate`, a kill about every 20 s and a SIGTERM every 40 s.
    pub fn every_fault(jobs: usize, rate: f64, home: PathBuf, exe: PathBuf) -> ChaosConfig {
        ChaosConfig {
            jobs,
            baseline_jobs: (jobs / 4).max(1),
            users: 4,
            workers: 4,
            seed: 1,
            submit_over: Duration::from_millis(500 * u64::try_from(jobs).unwrap_or(1)),
            aws_error_rate: rate,
            latency_rate: rate,
            latency_max: Duration::from_millis(200),
            duplicate_rate: rate,
            lambda_fault_rate: rate,
            subscriber_drop_rate: rate,
            kill_every: Some(Duration::from_secs(20)),
            term_every: Some(Duration::from_secs(40)),
            deadline: Duration::from_secs(600),
            idempotency_keys: true,
            resume_with_since: true,
            redrive: true,
            home,
            exe,
        }
    }

    fn aws_plan(&self) -> FaultPlan {
        let share = self.aws_error_rate / 3.0;
        let rule = |kind, rate| FaultRule {
            service: None,
            operation: None,
            kind,
            rate,
        };
        let mut rules = vec![
            rule(FaultKind::Throttle, share),
            rule(FaultKind::ServerError, share),
            rule(FaultKind::Drop, share),
            rule(FaultKind::Latency, self.latency_rate),
        ];
        rules.insert(
            0,
            FaultRule {
                service: Some("sqs".into()),
                operation: Some("ReceiveMessage".into()),
                kind: FaultKind::DuplicateReceive,
                rate: self.duplicate_rate,
            },
        );
        FaultPlan {
            seed: self.seed,
            rules,
            latency_ms: (0, u64::try_from(self.latency_max.as_millis()).unwrap_or(0)),
        }
    }

    fn invocation_faults(&self) -> local_host::InvocationFaults {
        local_host::InvocationFaults {
            crash: self.lambda_fault_rate / 2.0,
            timeout: self.lambda_fault_rate / 2.0,
            cut_after: Duration::from_millis(300),
            triggers: local_host::FaultTriggers::ALL,
            seed: self.seed,
        }
    }
}

/// The figures of one phase.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseReport {
    pub jobs: usize,
    pub ended: usize,
    pub seconds: f64,
    /// From the submission to the outcome event on the bus.
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    /// Requests sent beyond one per job (failed answers retried with the same key).
    pub submission_retries: u64,
    /// Jobs per submission path (`http`, `http-retried`, `bus`).
    pub via: BTreeMap<String, usize>,
}

/// The faults actually injected.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Injected {
    pub aws: Option<emulator::faults::FaultReport>,
    pub invocations: local_host::InvocationFaultCounts,
    pub sigkills: u64,
    pub sigterms: u64,
    pub worker_restarts: u64,
    pub subscriber_drops: u64,
    pub subscriber_resumes: u64,
}

/// Everything a run found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChaosReport {
    pub seed: u64,
    pub baseline: Option<PhaseReport>,
    pub faults: PhaseReport,
    pub injected: Injected,
    pub subscribers: usize,
    pub frames_received: usize,
    /// Dead letters caused by injected faults, which the harness redrove as on-call
    /// would.
    pub dead_letters_redriven: usize,
    /// How long after the last job ended every queue of the stack took to drain (the
    /// notifier's delivery queue last, locally: its function runs at the local host's
    /// concurrency, not Lambda's), before the subscribers' catch-up began.
    pub drain_seconds: f64,
    /// Counts per violation kind (every kind listed, zeros included).
    pub counts: BTreeMap<String, usize>,
    pub violations: Vec<Violation>,
}

impl ChaosReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// How long a subscriber may take, once the jobs ended, to reach its channel's head and
/// every outcome it expects: an event redelivered after a lost receive comes back only
/// after its visibility timeout, and its frame with it.
const CATCH_UP: Duration = Duration::from_secs(150);

/// Every violation kind, for the report's counts.
const KINDS: [checks::Kind; 12] = [
    checks::Kind::Lost,
    checks::Kind::Stuck,
    checks::Kind::WrongOutcome,
    checks::Kind::EndedTwice,
    checks::Kind::AnsweredTwice,
    checks::Kind::DuplicateJob,
    checks::Kind::ResultMismatch,
    checks::Kind::Gap,
    checks::Kind::Repeat,
    checks::Kind::MissingFrame,
    checks::Kind::Incomplete,
    checks::Kind::UnexplainedDeadLetter,
];

/// Runs the whole thing.
pub async fn run(config: &ChaosConfig) -> anyhow::Result<ChaosReport> {
    anyhow::ensure!(config.users > 0, "--users must be at least 1");
    anyhow::ensure!(config.workers > 0, "--workers must be at least 1");
    let stack = Stack::start_run(
        "chaos",
        &config.home,
        &config.exe,
        config.workers,
        Faults {
            aws: Some(config.aws_plan()),
            invocations: config.invocation_faults(),
        },
    )
    .await?;
    let outcome = Run::new(config, &stack).drive().await;
    stack.stop().await;
    outcome
}

/// One run's state.
struct Run<'a> {
    config: &'a ChaosConfig,
    stack: &'a Stack,
    /// The emulator seen directly: the harness's observations are never faulted.
    direct: aws_config::SdkConfig,
    started: Instant,
    events: Arc<Mutex<Vec<BusEvent>>>,
    /// Dead letters of injected faults redriven so far.
    redriven: std::sync::atomic::AtomicUsize,
}

/// What a phase submitted, with when.
struct Phase {
    submitted: Vec<(Submitted, Instant, u32)>,
    records: Vec<tokio::task::JoinHandle<Record>>,
    finish: watch::Sender<bool>,
    report: PhaseReport,
}

impl<'a> Run<'a> {
    fn new(config: &'a ChaosConfig, stack: &'a Stack) -> Run<'a> {
        Run {
            config,
            stack,
            direct: stack.emulator.sdk_config(),
            started: Instant::now(),
            events: Arc::new(Mutex::new(Vec::new())),
            redriven: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    async fn drive(&self) -> anyhow::Result<ChaosReport> {
        let ops = fleet_ops::Ops::new(self.stack.topology.clone(), &self.direct);
        let (stop_tail, tail) = self.tail(ops.clone()).await?;
        let counters = Arc::new(Counters::default());
        let api_base = format!("http://{}", self.stack.http_addr);

        let baseline = if self.config.baseline_jobs > 0 {
            eprintln!(
                "chaos: baseline, {} jobs without faults",
                self.config.baseline_jobs
            );
            let phase = self
                .phase("base", self.config.baseline_jobs, 0.0, &api_base, &counters)
                .await?;
            Some(phase)
        } else {
            None
        };

        eprintln!(
            "chaos: {} jobs under faults (AWS errors {:.0}%, latency {:.0}%, duplicates {:.0}%, Lambda {:.0}%, subscriber drops {:.0}%, SIGKILL every {:?}, SIGTERM every {:?})",
            self.config.jobs,
            self.config.aws_error_rate * 100.0,
            self.config.latency_rate * 100.0,
            self.config.duplicate_rate * 100.0,
            self.config.lambda_fault_rate * 100.0,
            self.config.subscriber_drop_rate * 100.0,
            self.config.kill_every,
            self.config.term_every,
        );
        self.stack.set_faults(true);
        let disruption = Disruption::start(self.stack, self.config);
        let faulty = self
            .phase(
                "chaos",
                self.config.jobs,
                self.config.subscriber_drop_rate,
                &api_base,
                &counters,
            )
            .await;
        let (sigkills, sigterms, mut restarts) = disruption.stop().await;
        self.stack.set_faults(false);
        restarts += restart_workers(self.stack);
        let mut faulty = faulty?;

        // Late jobs: redrive injected dead letters (as on-call would), then wait again.
        let everything: Vec<Submitted> = baseline
            .iter()
            .chain(std::iter::once(&faulty))
            .flat_map(|p| p.submitted.iter().map(|(s, _, _)| s.clone()))
            .collect();
        let all: Vec<&Submitted> = everything.iter().collect();
        let mut leftover = Vec::new();
        let settle = Instant::now() + Duration::from_secs(120);
        loop {
            if self.pending(&all).is_empty() {
                break;
            }
            let redriven = if self.config.redrive {
                self.redrive_injected(&ops).await?
            } else {
                0
            };
            if redriven == 0 && Instant::now() >= settle {
                leftover = self.dead_letters(&ops).await?.1;
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if leftover.is_empty() {
            leftover = self.dead_letters(&ops).await?.1;
        }

        faulty.report.ended = self.ended_count(&faulty);
        latencies(
            &mut faulty.report,
            &faulty.submitted,
            &self.events(),
            self.started,
        );
        let mut baseline = baseline;
        if let Some(phase) = baseline.as_mut() {
            phase.report.ended = self.ended_count(phase);
            latencies(
                &mut phase.report,
                &phase.submitted,
                &self.events(),
                self.started,
            );
        }

        // Every event reaches its consumers before the subscribers are told to finish: a
        // backlog is late, not lost.
        let drain_started = Instant::now();
        self.drain(&ops, Instant::now() + CATCH_UP).await?;
        let drain_seconds = drain_started.elapsed().as_secs_f64();

        // Subscribers catch up with their channels' heads, then stop.
        let mut records = Vec::new();
        for phase in baseline.iter_mut().chain(std::iter::once(&mut faulty)) {
            let _ = phase.finish.send(true);
            for handle in phase.records.drain(..) {
                records.push(handle.await.context("a subscriber task")?);
            }
        }
        let _ = stop_tail.send(true);
        let _ = tail.await;

        let history = self.history(&all, records, leftover).await?;
        let violations = checks::check(&history);
        let mut counts: BTreeMap<String, usize> =
            KINDS.iter().map(|k| (kind_name(*k), 0)).collect();
        for v in &violations {
            *counts.entry(kind_name(v.kind)).or_default() += 1;
        }
        Ok(ChaosReport {
            seed: self.config.seed,
            baseline: baseline.map(|p| p.report),
            faults: faulty.report,
            injected: Injected {
                aws: self.stack.proxy.as_ref().map(|p| p.report()),
                invocations: self.stack.host.invocation_faults(),
                sigkills,
                sigterms,
                worker_restarts: restarts,
                subscriber_drops: counters.drops.load(std::sync::atomic::Ordering::Relaxed),
                subscriber_resumes: counters.resumes.load(std::sync::atomic::Ordering::Relaxed),
            },
            subscribers: history.subscribers.len(),
            frames_received: history.subscribers.iter().map(|r| r.arrivals.len()).sum(),
            dead_letters_redriven: self.redriven.load(std::sync::atomic::Ordering::Relaxed),
            drain_seconds,
            counts,
            violations,
        })
    }

    /// Waits until every queue of the stage (the delivery queues of its functions, the
    /// simulation queue; not the dead-letter queues fleet-ops knows) holds no message,
    /// visible or in flight, or `deadline` passes.
    async fn drain(&self, ops: &fleet_ops::Ops, deadline: Instant) -> anyhow::Result<()> {
        let dead_letters: BTreeSet<String> = fleet_ops::dlq::dead_letter_queues(ops)
            .await?
            .into_iter()
            .map(|q| q.name)
            .collect();
        let sqs = aws_sdk_sqs::Client::new(&self.direct);
        let prefix = format!("{}-", self.stack.topology.names().prefix());
        let listed = sqs
            .list_queues()
            .queue_name_prefix(&prefix)
            .max_results(1000)
            .send()
            .await
            .context("listing the stage's queues")?;
        let queues: Vec<String> = listed
            .queue_urls()
            .iter()
            .filter(|url| !dead_letters.contains(url.rsplit('/').next().unwrap_or(url)))
            .cloned()
            .collect();
        loop {
            let mut busy = Vec::new();
            for url in &queues {
                let attributes = sqs
                    .get_queue_attributes()
                    .queue_url(url)
                    .attribute_names(
                        aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages,
                    )
                    .attribute_names(
                        aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                    )
                    .send()
                    .await
                    .with_context(|| format!("reading the depth of {url}"))?;
                let depth: u64 = attributes
                    .attributes()
                    .into_iter()
                    .flatten()
                    .filter_map(|(_, v)| v.parse::<u64>().ok())
                    .sum();
                if depth > 0 {
                    busy.push(format!(
                        "{} ({depth})",
                        url.rsplit('/').next().unwrap_or(url)
                    ));
                }
            }
            if busy.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                tracing::warn!(queues = %busy.join(", "), "queues still not drained at the deadline");
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Redrives the DLQs whose every message failed of an injected fault, as the
    /// on-call engineer would (`fleet dlq redrive`); returns how many messages went back.
    async fn redrive_injected(&self, ops: &fleet_ops::Ops) -> anyhow::Result<usize> {
        let (explained, _) = self.dead_letters(ops).await?;
        let mut redriven = 0;
        for queue in explained {
            let options = fleet_ops::dlq::RedriveOptions::default();
            match fleet_ops::dlq::redrive(&self.ops_with_lambda(), &queue, &options).await {
                Ok(report) => redriven += report.redriven,
                Err(e) => tracing::warn!(queue = %queue.name, error = %e, "redrive failed"),
            }
        }
        if redriven > 0 {
            eprintln!("chaos: redrove {redriven} dead letters of injected faults");
        }
        self.redriven
            .fetch_add(redriven, std::sync::atomic::Ordering::Relaxed);
        Ok(redriven)
    }

    fn events(&self) -> Vec<BusEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// The ops library with Lambda reached through the local host (redrives invoke
    /// functions).
    fn ops_with_lambda(&self) -> fleet_ops::Ops {
        let mut ops = fleet_ops::Ops::new(self.stack.topology.clone(), &self.direct);
        let lambda = aws_sdk_lambda::config::Builder::from(&self.direct)
            .endpoint_url(format!("http://{}", self.stack.http_addr))
            .build();
        ops.lambda = aws_sdk_lambda::Client::from_conf(lambda);
        ops
    }

    /// Tails every job event on the bus into `self.events`.
    async fn tail(
        &self,
        ops: fleet_ops::Ops,
    ) -> anyhow::Result<(watch::Sender<bool>, tokio::task::JoinHandle<()>)> {
        let pattern = serde_json::json!({"source": [contracts::jobs::SOURCE]});
        let bus = self.stack.topology.names().bus();
        tail_bus(ops, bus, &pattern, self.started, Arc::clone(&self.events)).await
    }

    /// Submits a phase's jobs with their subscribers and waits until they end (or the
    /// deadline passes).
    async fn phase(
        &self,
        name: &str,
        jobs: usize,
        drop_rate: f64,
        api_base: &str,
        counters: &Arc<Counters>,
    ) -> anyhow::Result<Phase> {
        let phase_started = Instant::now();
        let users: Vec<String> = (1..=self.config.users)
            .map(|i| format!("{name}-user{i}"))
            .collect();
        let tokens: BTreeMap<String, String> = users
            .iter()
            .map(|u| {
                self.stack
                    .issuer
                    .issue(u, Duration::from_secs(3600))
                    .map(|t| (u.clone(), t))
                    .map_err(|e| anyhow::anyhow!("issuing a token for {u}: {e}"))
            })
            .collect::<anyhow::Result<_>>()?;
        let (finish, finish_rx) = watch::channel(false);
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed ^ u64::from(name.len() as u32));
        let mut records = Vec::new();
        // The jobs whose outcome each user's channel must show before its subscribers stop.
        let outcomes: BTreeMap<String, subscribers::Outcomes> = users
            .iter()
            .map(|u| (u.clone(), subscribers::Outcomes::default()))
            .collect();
        let mut follow = |channel: String,
                          token: &str,
                          transport: Transport,
                          outcomes: subscribers::Outcomes,
                          rng: &mut ChaCha8Rng| {
            let spec = Spec {
                base: api_base.to_owned(),
                token: token.to_owned(),
                channel,
                transport,
                drop_rate,
                resume_with_since: self.config.resume_with_since,
                outcomes,
                seed: rng.random(),
            };
            records.push(tokio::spawn(subscribers::follow(
                spec,
                finish_rx.clone(),
                Arc::clone(counters),
                CATCH_UP,
            )));
        };
        for (user, token) in &tokens {
            let expected = outcomes.get(user).cloned().unwrap_or_default();
            follow(
                format!("user:{user}"),
                token,
                Transport::WebSocket,
                expected.clone(),
                &mut rng,
            );
            follow(
                format!("user:{user}"),
                token,
                Transport::Sse,
                expected,
                &mut rng,
            );
        }
        let plan = workload::plan(
            jobs,
            &users,
            self.config.submit_over,
            self.config.seed.wrapping_add(jobs as u64),
        );
        let submitter = Submitter {
            base: api_base.to_owned(),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .context("an HTTP client")?,
            idempotency: self.config.idempotency_keys,
        };
        let events = aws_sdk_eventbridge::Client::new(&self.stack.sdk);
        let bus = self.stack.topology.names().bus();
        let deadline = phase_started + self.config.deadline;
        let mut submissions = tokio::task::JoinSet::new();
        for (i, job) in plan.into_iter().enumerate() {
            let token = tokens.get(&job.owner).cloned().unwrap_or_default();
            let key = format!("{name}-{}-{i}", self.config.seed);
            let (submitter, events, bus) = (submitter.clone(), events.clone(), bus.clone());
            submissions.spawn(async move {
                tokio::time::sleep_until(phase_started + job.at).await;
                let at = Instant::now();
                let submitted =
                    submit(&submitter, &events, &bus, &token, &job, &key, deadline).await;
                (job, at, submitted)
            });
        }
        let mut submitted = Vec::new();
        let mut retries = 0;
        while let Some(joined) = submissions.join_next().await {
            let (job, at, result) = joined.context("a submission task")?;
            let submission = result?;
            retries += u64::from(submission.attempts.saturating_sub(1));
            // The notifier learns owners from the jobs service's events only, so an
            // upstream service's job reaches its owner's channel not at all.
            if job.via != Via::Bus
                && let Some(expected) = outcomes.get(&job.owner)
            {
                expected.insert(&submission.job_id);
            }
            if job.followed {
                let token = tokens.get(&job.owner).cloned().unwrap_or_default();
                let expected = subscribers::Outcomes::default();
                expected.insert(&submission.job_id);
                follow(
                    format!("job:{}", submission.job_id),
                    &token,
                    Transport::WebSocket,
                    expected,
                    &mut rng,
                );
            }
            submitted.push((
                Submitted {
                    job_id: submission.job_id,
                    owner: job.owner.clone(),
                    model: job.model.to_owned(),
                    expected: job.expected.clone(),
                    via: job.via.as_str().to_owned(),
                },
                at,
                submission.attempts,
            ));
        }
        let mut via = BTreeMap::new();
        for (s, _, _) in &submitted {
            *via.entry(s.via.clone()).or_default() += 1;
        }
        // Wait for every outcome on the bus, redriving dead letters of injected faults
        // every few seconds meanwhile.
        let ops = fleet_ops::Ops::new(self.stack.topology.clone(), &self.direct);
        let mut next_redrive = Instant::now();
        loop {
            let all: Vec<&Submitted> = submitted.iter().map(|(s, _, _)| s).collect();
            if self.pending(&all).is_empty() || Instant::now() >= deadline {
                break;
            }
            if Instant::now() >= next_redrive {
                self.redrive_injected(&ops).await?;
                next_redrive = Instant::now() + Duration::from_secs(5);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Ok(Phase {
            report: PhaseReport {
                jobs,
                seconds: phase_started.elapsed().as_secs_f64(),
                submission_retries: retries,
                via,
                ..PhaseReport::default()
            },
            submitted,
            records,
            finish,
        })
    }

    /// Submitted jobs without an outcome event on the bus yet.
    fn pending<'s>(&self, submitted: &[&'s Submitted]) -> Vec<&'s Submitted> {
        let ended: BTreeSet<String> = self
            .events()
            .into_iter()
            .filter(|e| {
                e.detail_type == contracts::jobs::SUCCEEDED
                    || e.detail_type == contracts::jobs::FAILED
            })
            .filter_map(|e| e.job_id)
            .collect();
        submitted
            .iter()
            .copied()
            .filter(|s| !ended.contains(&s.job_id))
            .collect()
    }

    fn ended_count(&self, phase: &Phase) -> usize {
        let all: Vec<&Submitted> = phase.submitted.iter().map(|(s, _, _)| s).collect();
        all.len() - self.pending(&all).len()
    }

    /// The stage's dead-letter queues holding messages: those whose every message failed
    /// of an injected fault, and the messages failed of anything else.
    async fn dead_letters(
        &self,
        ops: &fleet_ops::Ops,
    ) -> anyhow::Result<(Vec<fleet_ops::dlq::DeadLetterQueue>, Vec<DeadLetter>)> {
        let mut explained = Vec::new();
        let mut others = Vec::new();
        for status in fleet_ops::dlq::list(ops).await? {
            if status.depth == 0 {
                continue;
            }
            let messages = fleet_ops::dlq::show(ops, &status.queue, 100).await?;
            let mut all_injected = !messages.is_empty();
            for message in &messages {
                let reason = message.reason.to_string();
                if !is_injected(&reason) {
                    all_injected = false;
                    others.push(DeadLetter {
                        queue: status.queue.name.clone(),
                        reason,
                        excerpt: serde_json::to_string(&message.body)
                            .unwrap_or_default()
                            .chars()
                            .take(300)
                            .collect(),
                    });
                }
            }
            if all_injected {
                explained.push(status.queue);
            }
        }
        Ok((explained, others))
    }

    /// The ground truth and what the stack holds at the end, with faults off.
    async fn history(
        &self,
        submitted: &[&Submitted],
        subscribers: Vec<Record>,
        dead_letters: Vec<DeadLetter>,
    ) -> anyhow::Result<History> {
        let base = format!("http://{}", self.stack.http_addr);
        let mut stored = BTreeMap::new();
        let mut listed = BTreeSet::new();
        let owners: BTreeSet<&str> = submitted.iter().map(|s| s.owner.as_str()).collect();
        for owner in owners {
            let token = self
                .stack
                .issuer
                .issue(owner, Duration::from_secs(3600))
                .map_err(|e| anyhow::anyhow!("issuing a token for {owner}: {e}"))?;
            let api = crate::api::Api::new(&base, token);
            for view in api
                .list(None)
                .await
                .with_context(|| format!("listing {owner}'s jobs"))?
            {
                listed.insert(view.job_id.to_string());
                stored.insert(
                    view.job_id.to_string(),
                    Stored {
                        status: view.status.as_str().to_owned(),
                        error: view.error.map(|e| e.error),
                    },
                );
            }
        }
        // Jobs requested on the bus belong to their `requestedBy` too, so they are listed.
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&self.direct)
                .force_path_style(true)
                .build(),
        );
        let mut results = Vec::new();
        let mut pages = s3
            .list_objects_v2()
            .bucket(self.stack.topology.names().bucket("results"))
            .prefix("results/")
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.context("listing the results bucket")?;
            results.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        Ok(History {
            submitted: submitted.iter().map(|s| (*s).clone()).collect(),
            stored,
            listed,
            events: self.events(),
            results,
            dead_letters,
            subscribers,
            task_answers: self.task_answers().await?,
        })
    }

    /// Per execution of the simulation-job state machine (named after its job), how many
    /// successful answers to its hand-outs Step Functions took, from the execution's
    /// history (`TaskSucceeded` of the `waitForTaskToken` task).
    async fn task_answers(&self) -> anyhow::Result<BTreeMap<String, usize>> {
        let ops = fleet_ops::Ops::new(self.stack.topology.clone(), &self.direct);
        let machine = ops.names.state_machine("simulation-job");
        let runs = fleet_ops::runs::list(&ops, Some(&machine), None, None, usize::MAX)
            .await
            .context("listing the simulation-job executions")?;
        let mut answers = BTreeMap::new();
        for run in runs {
            let history = fleet_ops::runs::history(&ops, &run.arn)
                .await
                .with_context(|| format!("the history of execution {}", run.name))?;
            let taken = history
                .iter()
                .filter(|e| {
                    e.kind == "TaskSucceeded"
                        && e.resource
                            .as_deref()
                            .is_some_and(|r| r.contains("waitForTaskToken"))
                })
                .count();
            answers.insert(run.name, taken);
        }
        Ok(answers)
    }
}

/// Tails the events matching `pattern` on `bus` into `events`, each with when it was
/// seen after `started`, until the returned sender says stop; returns once the tail is
/// listening (`fleet chaos` and `fleet cost --measure`).
pub(crate) async fn tail_bus(
    ops: fleet_ops::Ops,
    bus: String,
    pattern: &serde_json::Value,
    started: Instant,
    events: Arc<Mutex<Vec<BusEvent>>>,
) -> anyhow::Result<(watch::Sender<bool>, tokio::task::JoinHandle<()>)> {
    let pattern =
        fleet_ops::pattern::Pattern::parse(&pattern.to_string()).context("the tail's pattern")?;
    let (stop, mut stopped) = watch::channel(false);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let handle = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let mut ready = Some(ready_tx);
        let result = fleet_ops::tail::tail(
            &ops,
            &bus,
            &pattern,
            shutdown,
            |text| {
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(text) {
                    let detail = event["detail"].clone();
                    let record = BusEvent {
                        id: event["id"].as_str().unwrap_or_default().to_owned(),
                        detail_type: event["detail-type"].as_str().unwrap_or_default().to_owned(),
                        job_id: detail["jobId"].as_str().map(str::to_owned),
                        detail,
                        seen_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(0),
                    };
                    if let Ok(mut all) = events.lock() {
                        all.push(record);
                    }
                }
                Ok(())
            },
            |_| {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
            },
        )
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "the bus tail failed");
        }
    });
    tokio::time::timeout(Duration::from_secs(30), ready_rx)
        .await
        .context("the bus tail did not start within 30 s")?
        .context("the bus tail ended before it started")?;
    Ok((stop, handle))
}

/// Whether a dead letter's reason is a fault the harness injected (a cut-off
/// invocation, or an AWS call the proxy failed).
fn is_injected(reason: &str) -> bool {
    reason.contains("injected")
}

fn kind_name(kind: checks::Kind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// One submission, by its path.
async fn submit(
    submitter: &Submitter,
    events: &aws_sdk_eventbridge::Client,
    bus: &str,
    token: &str,
    job: &Planned,
    key: &str,
    deadline: Instant,
) -> anyhow::Result<workload::Submission> {
    match job.via {
        Via::Http => submitter.http(token, job, key, deadline).await,
        Via::HttpTwice => {
            let first = submitter.http(token, job, key, deadline).await?;
            let second = submitter.http(token, job, key, deadline).await?;
            if first.job_id != second.job_id {
                // Both are real jobs now; the checks report the second as a duplicate.
                tracing::warn!(first = %first.job_id, second = %second.job_id, "one key, two jobs");
            }
            Ok(workload::Submission {
                job_id: first.job_id,
                attempts: first.attempts + second.attempts,
            })
        }
        Via::Bus => {
            let job_id = contracts::JobId::generate().to_string();
            workload::publish_upstream(events, bus, job, &job_id, deadline).await
        }
    }
}

/// p50/p99/max from submission to the outcome on the bus.
fn latencies(
    report: &mut PhaseReport,
    submitted: &[(Submitted, Instant, u32)],
    events: &[BusEvent],
    started: Instant,
) {
    let ended: BTreeMap<&str, u64> = events
        .iter()
        .filter(|e| {
            e.detail_type == contracts::jobs::SUCCEEDED || e.detail_type == contracts::jobs::FAILED
        })
        .filter_map(|e| e.job_id.as_deref().map(|j| (j, e.seen_ms)))
        .collect();
    let mut ms: Vec<f64> = submitted
        .iter()
        .filter_map(|(s, at, _)| {
            let submitted_ms = at.duration_since(started).as_millis();
            let ended_ms = u128::from(*ended.get(s.job_id.as_str())?);
            Some(ended_ms.saturating_sub(submitted_ms) as f64)
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let pick = |q: f64| -> f64 {
        if ms.is_empty() {
            return 0.0;
        }
        let i = ((ms.len() as f64 - 1.0) * q).round() as usize;
        ms[i.min(ms.len() - 1)]
    };
    report.latency_p50_ms = pick(0.5);
    report.latency_p99_ms = pick(0.99);
    report.latency_max_ms = pick(1.0);
}

fn restart_workers(stack: &Stack) -> u64 {
    match stack.workers.lock() {
        Ok(mut workers) => workers
            .restart_exited()
            .map(|n| n as u64)
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "restarting workers failed");
                0
            }),
        Err(_) => 0,
    }
}

/// Kills and stops workers at random moments, and restarts them as ECS would.
struct Disruption {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<(u64, u64, u64)>,
}

impl Disruption {
    fn start(stack: &Stack, config: &ChaosConfig) -> Disruption {
        let (stop, mut stopped) = watch::channel(false);
        let workers = Arc::clone(&stack.workers);
        let (kill_every, term_every) = (config.kill_every, config.term_every);
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed.wrapping_mul(31));
        let task = tokio::spawn(async move {
            let (mut kills, mut terms, mut restarts) = (0, 0, 0);
            let tick = Duration::from_millis(250);
            loop {
                tokio::select! {
                    _ = stopped.wait_for(|s| *s) => break,
                    _ = tokio::time::sleep(tick) => {}
                }
                let Ok(mut workers) = workers.lock() else {
                    break;
                };
                // A Poisson process: each tick fires with probability tick / mean.
                let fire = |every: Option<Duration>, rng: &mut ChaCha8Rng| {
                    every.is_some_and(|e| {
                        rng.random_bool((tick.as_secs_f64() / e.as_secs_f64()).min(1.0))
                    })
                };
                if fire(kill_every, &mut rng) && !workers.is_empty() {
                    let i = rng.random_range(0..workers.len());
                    if workers.signal(i, rustix::process::Signal::KILL).is_some() {
                        kills += 1;
                    }
                }
                if fire(term_every, &mut rng) && !workers.is_empty() {
                    let i = rng.random_range(0..workers.len());
                    if workers.signal(i, rustix::process::Signal::TERM).is_some() {
                        terms += 1;
                    }
                }
                restarts += workers.restart_exited().unwrap_or(0) as u64;
            }
            (kills, terms, restarts)
        });
        Disruption { stop, task }
    }

    async fn stop(self) -> (u64, u64, u64) {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}
