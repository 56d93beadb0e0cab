//! Simulation worker: the models it runs, chosen by name from a job spec, and the
//! SQS-fed container that runs them for the simulation-job state machine.
//!
//! [`run`] consumes the `simulation` queue with the shared runtime (`sqs-worker`) and
//! [`worker::SimulationHandler`]; the `simulation-worker` binary (and the `fleet` CLI)
//! only build a [`WorkerConfig`] and call it.

pub mod config;
pub mod models;
pub mod service;
pub mod worker;

use sqs_worker::{Config, IdempotencyConfig, MetricsSnapshot, Worker, WorkerError};
use tokio_util::sync::CancellationToken;

pub use config::{InvalidReceiveWait, WorkerConfig, parse_exec_models, receive_wait};
pub use worker::SimulationHandler;

use crate::models::{Registry, RegistryConfigError};

/// The partition key of the simulation idempotency table.
pub const TABLE_KEY: &str = "jobId";

/// Why the worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Registry(#[from] RegistryConfigError),
    #[error(transparent)]
    Worker(#[from] WorkerError),
}

/// Runs the worker until `shutdown` is cancelled and the drain is over; returns the
/// runtime's final counters.
pub async fn run(
    config: WorkerConfig,
    shutdown: CancellationToken,
) -> Result<MetricsSnapshot, RunError> {
    let registry = Registry::new(config.registry.clone())?;
    tracing::info!(stage = %config.stage, worker_id = %config.worker_id, models = ?registry.names().collect::<Vec<_>>(), "simulation worker starting");
    let handler = SimulationHandler::new(&config, registry);
    let runtime = Config {
        concurrency: config.concurrency,
        visibility_timeout: config.visibility_timeout,
        wait_time: config.receive_wait,
        drain_timeout: config.drain_timeout,
        idempotency: config
            .table
            .as_ref()
            .map(|table| IdempotencyConfig::new(table.clone(), TABLE_KEY)),
        metrics_log: config.metrics_log,
        ..Config::new(config.queue_url.clone(), config.worker_id.clone())
    };
    Ok(Worker::from_sdk(&config.sdk, runtime, handler)
        .run(shutdown)
        .await?)
}
