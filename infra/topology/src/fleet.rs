//! THE definition of the fleet: one function per service. Adding a service means adding a
//! function returning [`Service`] and listing it in [`fleet`].

use std::time::Duration;

use crate::model::{
    Bucket, EventBus, FargateService, Key, Queue, ResourceRef, Scaling, Service, Table, Topic,
    Topology, ValueRef,
};
use crate::names::Stage;

/// The fleet for `stage`.
pub fn fleet(stage: &Stage) -> Topology {
    Topology::new(stage, vec![core(), simulation()])
}

/// The topic every asynchronous function names as its dead letter, and the queue that
/// collects its messages.
pub const FAILURES: &str = "failures";

/// What every service shares: the bus, and the failures topic with its queue.
///
/// The failures queue subscribes with raw message delivery off, so each message keeps
/// the SNS envelope whose `MessageAttributes` carry Lambda's `RequestID`, `ErrorCode`
/// and `ErrorMessage`.
pub fn core() -> Service {
    Service::new("core")
        .with(EventBus)
        .with(Queue::new(FAILURES).with_retention(Queue::DLQ_RETENTION))
        .with(Topic::new(FAILURES).subscribe(FAILURES))
}

/// The simulation workers: a queue with its DLQ, an idempotency table, a results bucket
/// and a Fargate service scaled on the queue's backlog.
pub fn simulation() -> Service {
    const QUEUE: &str = "simulation";
    const TABLE: &str = "simulation-jobs";
    const BUCKET: &str = "results";
    let queue_actions = [
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:SendMessage",
        "sqs:GetQueueAttributes",
    ];
    let worker = FargateService {
        name: "simulation-worker".into(),
        cpu: 1024,
        memory_mb: 2048,
        stop_timeout: FargateService::MAX_STOP_TIMEOUT,
        queue: QUEUE.into(),
        scaling: Scaling {
            min_tasks: 0,
            max_tasks: 10,
            backlog_per_task: 10,
        },
        env: Vec::new(),
        permissions: Vec::new(),
    }
    .env("STAGE", ValueRef::Stage)
    .env("QUEUE_URL", ValueRef::QueueUrl(QUEUE.into()))
    .env("TABLE", ValueRef::TableName(TABLE.into()))
    .env("BUCKET", ValueRef::BucketName(BUCKET.into()))
    .env("BUS", ValueRef::BusName)
    .allow(&queue_actions, ResourceRef::Queue(QUEUE.into()))
    .allow(&queue_actions, ResourceRef::Dlq(QUEUE.into()))
    .allow(
        &[
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
        ],
        ResourceRef::Table(TABLE.into()),
    )
    .allow(
        &["s3:PutObject", "s3:GetObject"],
        ResourceRef::BucketObjects(BUCKET.into()),
    )
    .allow(&["events:PutEvents"], ResourceRef::Bus)
    // Task tokens are not scoped to a state machine, so these three take resource `*`.
    .allow(
        &[
            "states:SendTaskSuccess",
            "states:SendTaskFailure",
            "states:SendTaskHeartbeat",
        ],
        ResourceRef::TaskTokens,
    );

    Service::new("simulation")
        .with(
            Queue::new(QUEUE)
                .with_visibility_timeout(Duration::from_secs(60))
                .with_dlq(5),
        )
        .with(Table::new(TABLE, Key::string("jobId")).with_ttl("expiresAt"))
        .with(Bucket::new(BUCKET))
        .with(worker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_is_valid() {
        let topology = fleet(&Stage::default());
        topology
            .validate()
            .expect("fleet() must be a valid topology");
        let queues: Vec<_> = topology.queues().map(|q| q.name.as_str()).collect();
        assert_eq!(queues, ["failures", "simulation"]);
        let tables: Vec<_> = topology.tables().map(|t| t.name.as_str()).collect();
        assert_eq!(tables, ["simulation-jobs"]);
    }

    #[test]
    fn dead_letters_name_their_source() {
        let topology = fleet(&Stage::default());
        let dead = topology.dead_letters();
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!(dead[0].queue, "fleet-dev-simulation-dlq");
        assert_eq!(dead[0].service, "simulation");
    }
}
