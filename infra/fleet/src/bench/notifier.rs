//! `fleet bench notifier`: how the notifier and the local WebSocket gateway hold many
//! connections and broadcast to them.
//!
//! The stack runs in a child `fleet dev` process (its own emulator, no workers), so its
//! resident memory can be read on its own and each process stays within its
//! open-files limit. The bench opens N WebSocket connections, subscribes each to one
//! channel (`user:bench`), reads the gateway's memory, then publishes job events on the
//! bus and times each frame from `PutEvents` to its arrival on every connection: the
//! whole path (EventBridge → local host → `notifier-events` → DynamoDB → N
//! `@connections` posts → WebSocket).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use contracts::jobs::{JobProgress, JobRequested};
use contracts::{Envelope, JobEvent, JobId};
use futures::StreamExt as _;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::clients::{Arrival, ClientThread, ROUND_MARK, open};
use super::procfs::{Cpu, rss_kib};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub connections: usize,
    /// Events broadcast (and timed) after a warm-up one.
    pub rounds: usize,
    /// Connections being opened at once.
    pub open_concurrency: usize,
    pub home: PathBuf,
    /// The `fleet` binary that runs the stack.
    pub exe: PathBuf,
}

/// The numbers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BenchReport {
    pub connections: usize,
    pub rounds: usize,
    /// Seconds to open and subscribe every connection.
    pub connect_seconds: f64,
    pub deliveries: usize,
    /// The first delivery of a round: the path's fixed part (bus, queue, store).
    pub latency_min_ms: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    /// The slowest `PutEvents` call of the timed rounds (part of every latency).
    pub publish_max_ms: f64,
    /// The gateway process's resident memory growth per idle subscribed connection.
    pub bytes_per_connection: f64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// CPU time per delivery over the timed rounds: the stack process (local host,
    /// notifier, gateway), the emulator (moto, its child) and the bench's own clients.
    pub stack_cpu_us_per_delivery: f64,
    pub emulator_cpu_us_per_delivery: f64,
    pub clients_cpu_us_per_delivery: f64,
    pub target_p99_ms: f64,
    pub target_bytes_per_connection: f64,
}

pub async fn run(config: &BenchConfig) -> anyhow::Result<BenchReport> {
    crate::dev::raise_open_files_limit();
    let http_port = crate::dev::free_port()?;
    let emulator_port = crate::dev::free_port()?;
    let stage = format!("b{}", &uuid::Uuid::new_v4().simple().to_string()[..7]);
    eprintln!("bench: starting the stack (stage {stage}) in a child process");
    let mut child = tokio::process::Command::new(&config.exe)
        .args(["--stage", &stage, "dev", "--workers", "0"])
        .args(["--http-port", &http_port.to_string()])
        .args(["--emulator-port", &emulator_port.to_string()])
        .arg("--home")
        .arg(&config.home)
        .stdout(Stdio::null())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", config.exe.display()))?;
    let pid = child.id().context("the child has no pid")?;
    let outcome = measure(config, &stage, http_port, emulator_port, pid).await;
    // SIGTERM: `fleet dev` stops what it started (its emulator included).
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).context("pid")?,
        rustix::process::Signal::TERM,
    );
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    outcome
}

async fn measure(
    config: &BenchConfig,
    stage: &str,
    http_port: u16,
    emulator_port: u16,
    pid: u32,
) -> anyhow::Result<BenchReport> {
    let base = format!("http://127.0.0.1:{http_port}");
    wait_ready(&base).await?;
    let issuer = crate::local::dev_issuer(&config.home)?;
    let token = issuer
        .issue("bench", Duration::from_secs(3600))
        .context("issuing the bench's token")?;
    let url = crate::watch::websocket_url(&base, &token)?;
    let rss_before = rss_kib(pid)?;

    eprintln!("bench: opening {} connections", config.connections);
    let started = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Arrival>>();
    let clients = ClientThread::start(tx)?;
    let opened: Vec<anyhow::Result<()>> = futures::stream::iter(0..config.connections)
        .map(|client| {
            let url = url.clone();
            let arrivals = clients.arrivals.clone();
            let handle = clients.handle.clone();
            async move {
                handle
                    .spawn(async move { open(&url, client, arrivals).await })
                    .await
                    .context("a client task ended abnormally")?
            }
        })
        .buffer_unordered(config.open_concurrency.max(1))
        .collect()
        .await;
    let failures = opened.iter().filter(|r| r.is_err()).count();
    if let Some(Err(e)) = opened.into_iter().find(|r| r.is_err()) {
        bail!("{failures} connections failed to open; the first: {e:#}");
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "bench: {} connections subscribed in {connect_seconds:.1} s",
        config.connections
    );
    let rss_after = rss_kib(pid)?;

    let sdk = emulator::sdk_config_for(&format!("http://127.0.0.1:{emulator_port}"));
    let names = provision::Names::new(&provision::Stage::new(stage).map_err(anyhow::Error::msg)?);
    let publisher = bus::Publisher::from_sdk(&sdk, names.bus());
    let job = JobId::generate();
    let requested = JobRequested {
        model: "spin".into(),
        params: serde_json::Map::new(),
        job_id: Some(job.clone()),
        idempotency_key: None,
        requested_by: Some("bench".into()),
    };
    let mut latencies = Vec::new();
    let mut cpu_before = Cpu::default();
    let mut publish_max = Duration::ZERO;
    for round in 0..=config.rounds {
        if round == 1 {
            cpu_before = Cpu::read(pid)?;
        }
        let event = if round == 0 {
            JobEvent::from(requested.clone())
        } else {
            JobEvent::from(JobProgress {
                job_id: job.clone(),
                progress: round as f64 / config.rounds.max(1) as f64,
                message: Some(format!("{ROUND_MARK}{round}")),
            })
        };
        let sent = Instant::now();
        publisher
            .publish(&Envelope::new(event, "bench"))
            .await
            .context("publishing the bench's event")?;
        if round > 0 {
            publish_max = publish_max.max(sent.elapsed());
        }
        let deadline = sent + Duration::from_secs(120);
        let mut received = 0;
        let mut got = vec![false; config.connections];
        let (mut first, mut last) = (Duration::MAX, Duration::ZERO);
        while received < config.connections {
            let batch = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .with_context(|| {
                    format!(
                        "round {round}: only {received} of {} connections got the frame within 120 s",
                        config.connections
                    )
                })?
                .context("the clients' thread stopped")?;
            for arrival in batch {
                // Each connection counts once per round, with the first copy of the
                // round's own frame: a late frame of an earlier round or a repeat is no
                // delivery.
                if arrival.round != round || got[arrival.client] {
                    continue;
                }
                got[arrival.client] = true;
                received += 1;
                // Round 0 warms up (first pushes, connection pools); it is not timed.
                let latency = arrival.at.duration_since(sent);
                (first, last) = (first.min(latency), last.max(latency));
                if round > 0 {
                    latencies.push(latency);
                }
            }
        }
        if round > 0 {
            eprintln!(
                "bench: round {round}/{} delivered to all: first {:.1} ms, last {:.1} ms",
                config.rounds,
                first.as_secs_f64() * 1000.0,
                last.as_secs_f64() * 1000.0
            );
        }
    }
    let cpu = Cpu::read(pid)?.since(&cpu_before);
    latencies.sort();
    let per_delivery = |seconds: f64| seconds * 1e6 / latencies.len().max(1) as f64;
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[index].as_secs_f64() * 1000.0
    };
    let grown = rss_after.saturating_sub(rss_before) as f64 * 1024.0;
    Ok(BenchReport {
        connections: config.connections,
        rounds: config.rounds,
        connect_seconds,
        deliveries: latencies.len(),
        latency_min_ms: percentile(0.0),
        latency_p50_ms: percentile(0.50),
        latency_p99_ms: percentile(0.99),
        latency_max_ms: percentile(1.0),
        publish_max_ms: publish_max.as_secs_f64() * 1000.0,
        bytes_per_connection: grown / config.connections.max(1) as f64,
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
        stack_cpu_us_per_delivery: per_delivery(cpu.stack),
        emulator_cpu_us_per_delivery: per_delivery(cpu.emulator),
        clients_cpu_us_per_delivery: per_delivery(cpu.clients),
        target_p99_ms: 200.0,
        target_bytes_per_connection: 20.0 * 1024.0,
    })
}

async fn wait_ready(base: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let ready = http
            .get(format!("{base}/.well-known/jwks.json"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the stack did not come up at {base} within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
