//! `simulation-worker`: the Fargate container. Reads its environment, logs JSON, turns
//! SIGTERM and SIGINT into a graceful drain, and runs [`simulation::run`].
//!
//! Environment:
//!
//! | variable | meaning |
//! | --- | --- |
//! | `STAGE` | deployment stage, for logs (default `dev`) |
//! | `QUEUE_URL` | the simulation queue (required) |
//! | `TABLE` | the idempotency table; empty or unset: no idempotency records |
//! | `BUCKET` | where results are stored (required) |
//! | `BUS` | the event bus for `JobStarted`/`JobProgress` (required) |
//! | `CONCURRENCY` | models at once (default 1) |
//! | `DRAIN_TIMEOUT_SECS` | after SIGTERM, how long running jobs may finish (default 100) |
//! | `VISIBILITY_SECS` | SQS lease (default: the queue's `VisibilityTimeout`) |
//! | `RECEIVE_WAIT_SECS` | long-poll wait of an idle receive, 1 to 20 (default 20); an idle worker takes up to this long to stop |
//! | `HEARTBEAT_SECS` | `SendTaskHeartbeat` interval (default 5): a cancelled job stops within it |
//! | `METRICS_SECS` | EMF metrics line interval, 0 for none (default 60) |
//! | `WORKER_ID` | this worker's name (default `simulation-<random>`) |
//! | `EXEC_MODELS` | `exec` models: a JSON object, or the path of a file holding one |
//! | `RUST_LOG` | log filter (default `info`) |
//!
//! AWS settings (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL` for an emulator) are the
//! SDK's own variables.

use std::time::Duration;

use anyhow::{Context as _, bail};
use sqs_worker::QueueUrl;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use simulation::WorkerConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    if let Err(e) = serve().await {
        tracing::error!(error = format!("{e:#}"), "simulation worker failed");
        return Err(e);
    }
    Ok(())
}

async fn serve() -> anyhow::Result<()> {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let queue_url =
        QueueUrl::parse(required(simulation::service::env::QUEUE_URL)?).context("QUEUE_URL")?;
    let mut config = WorkerConfig::new(
        sdk,
        queue_url,
        required(simulation::service::env::BUCKET)?,
        required(topology::env::BUS)?,
    );
    if let Some(stage) = optional(topology::env::STAGE) {
        config.stage = stage;
    }
    config.table = optional(simulation::service::env::TABLE);
    if let Some(id) = optional("WORKER_ID") {
        config.worker_id = id;
    }
    if let Some(n) = number("CONCURRENCY")? {
        if n == 0 {
            bail!("CONCURRENCY must be at least 1");
        }
        config.concurrency = usize::try_from(n).context("CONCURRENCY")?;
    }
    if let Some(s) = number("DRAIN_TIMEOUT_SECS")? {
        config.drain_timeout = Duration::from_secs(s);
    }
    if let Some(s) = number("VISIBILITY_SECS")? {
        config.visibility_timeout = Some(Duration::from_secs(s));
    }
    if let Some(s) = number("RECEIVE_WAIT_SECS")? {
        config.receive_wait = simulation::receive_wait(s).context("RECEIVE_WAIT_SECS")?;
    }
    if let Some(s) = number("HEARTBEAT_SECS")? {
        if s == 0 {
            bail!("HEARTBEAT_SECS must be at least 1");
        }
        config.heartbeat_interval = Duration::from_secs(s);
    }
    if let Some(s) = number("METRICS_SECS")? {
        config.metrics_log = (s > 0).then(|| Duration::from_secs(s));
    }
    if let Some(exec) = optional("EXEC_MODELS") {
        let json = if exec.trim_start().starts_with('{') {
            exec
        } else {
            std::fs::read_to_string(&exec)
                .with_context(|| format!("EXEC_MODELS: reading {exec}"))?
        };
        config.registry = simulation::parse_exec_models(&json).context("EXEC_MODELS")?;
    }

    let shutdown = CancellationToken::new();
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let on_signal = shutdown.clone();
    let signals = tokio::spawn(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
            _ = on_signal.cancelled() => return,
        };
        tracing::info!(signal = name, "shutdown requested");
        on_signal.cancel();
    });

    let result = simulation::run(config, shutdown.clone()).await;
    shutdown.cancel();
    let _ = signals.await;
    result?;
    Ok(())
}

fn optional(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn required(name: &str) -> anyhow::Result<String> {
    optional(name)
        .with_context(|| format!("{name} is not set; see the table at the top of src/main.rs"))
}

fn number(name: &str) -> anyhow::Result<Option<u64>> {
    optional(name)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .with_context(|| format!("{name}=`{v}` is not a whole number"))
        })
        .transpose()
}
