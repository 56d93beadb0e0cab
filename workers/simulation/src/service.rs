//! The simulation service's part of the fleet's topology: its resources, functions, rules and
//! permissions, declared here, in the service's own folder. `provision::fleet` assembles
//! the fleet from every service's [`topology`].

use std::time::Duration;

use contracts::jobs::SOURCE as JOBS_SOURCE;
use topology::{
    Bucket, BucketCors, FargateService, Key, Queue, ResourceRef, Scaling, Service, Sources, Table,
    ValueRef,
};

/// The environment variable names this service's functions read (besides
/// `topology::env`'s): written once, here, for the topology and the binaries.
pub mod env {
    /// `BUCKET`.
    pub const BUCKET: &str = "BUCKET";
    /// `QUEUE_URL`.
    pub const QUEUE_URL: &str = "QUEUE_URL";
    /// `TABLE`.
    pub const TABLE: &str = "TABLE";
}

/// The simulation workers: a queue with its DLQ, an idempotency table, a results bucket
/// and a Fargate service scaled on the queue's backlog.
pub fn topology() -> Service {
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
    .env(topology::env::STAGE, ValueRef::Stage)
    .env(env::QUEUE_URL, ValueRef::QueueUrl(QUEUE.into()))
    .env(env::TABLE, ValueRef::TableName(TABLE.into()))
    .env(env::BUCKET, ValueRef::BucketName(BUCKET.into()))
    .env(topology::env::BUS, ValueRef::BusName)
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
    // JobStarted and JobProgress of the jobs it runs.
    .publish(Sources::Only(vec![JOBS_SOURCE]))
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
        // Results are read by browsers through the short-lived links of
        // `GET /jobs/{id}/result` (the dashboard draws them): any page may read the answer
        // of a link it holds, since the link's signature, not the page's origin, is what
        // grants the read (SECURITY.md).
        .with(Bucket::new(BUCKET).with_cors(BucketCors {
            allowed_origins: vec!["*".to_owned()],
            max_age_secs: 300,
        }))
        .with(worker)
}
