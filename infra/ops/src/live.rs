//! What the fleet is doing right now: every queue of the stage with its depth (its DLQ's
//! too), and the jobs in flight (running `simulation-job` executions). The ops console
//! polls it every few seconds.

use aws_sdk_sfn::types::ExecutionStatus;
use serde::Serialize;

use crate::dlq::{depth, queue_url};
use crate::runs::{self, RunSummary};
use crate::{Ops, OpsError};

/// One queue of the stage and its depth.
#[derive(Debug, Clone, Serialize)]
pub struct QueueDepth {
    /// The physical queue name.
    pub name: String,
    /// The topology service owning it.
    pub service: String,
    /// Whether it is a dead-letter queue (of a queue, or of the failures topic).
    pub dead_letter: bool,
    pub visible: u64,
    pub in_flight: u64,
}

/// The stage's queues and its jobs in flight.
#[derive(Debug, Clone, Serialize)]
pub struct Live {
    pub queues: Vec<QueueDepth>,
    /// Running `simulation-job` executions, newest first, at most the limit asked for.
    pub jobs_in_flight: Vec<RunSummary>,
}

/// The state machine whose executions are jobs.
const JOBS_MACHINE: &str = "simulation-job";

/// Every queue of the stage with its depth, each queue followed by its DLQ.
pub async fn queues(ops: &Ops) -> Result<Vec<QueueDepth>, OpsError> {
    let dead: Vec<String> = ops
        .topology
        .dead_letters()
        .into_iter()
        .map(|d| d.queue)
        .collect();
    let mut names: Vec<(String, String)> = Vec::new();
    for (service, resource) in ops.topology.resources() {
        let topology::Resource::Queue(q) = resource else {
            continue;
        };
        names.push((ops.names.queue(&q.name), service.name.clone()));
        if q.dlq.is_some() {
            names.push((ops.names.dlq(&q.name), service.name.clone()));
        }
    }
    let mut out = Vec::with_capacity(names.len());
    for (name, service) in names {
        let url = queue_url(ops, &name).await?;
        let (visible, in_flight) = depth(ops, &url).await?;
        out.push(QueueDepth {
            dead_letter: dead.contains(&name),
            name,
            service,
            visible,
            in_flight,
        });
    }
    Ok(out)
}

/// The queues' depths and at most `limit` jobs in flight.
pub async fn live(ops: &Ops, limit: usize) -> Result<Live, OpsError> {
    let queues = queues(ops).await?;
    let jobs_in_flight = runs::list(
        ops,
        Some(JOBS_MACHINE),
        Some(ExecutionStatus::Running),
        None,
        limit,
    )
    .await?;
    Ok(Live {
        queues,
        jobs_in_flight,
    })
}
