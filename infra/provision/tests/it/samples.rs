//! Test-only topologies using every resource kind, including those `fleet()` does not
//! use yet (state machines, functions, rules, cross-stack references).

use std::path::{Path, PathBuf};
use std::time::Duration;

use provision::{
    Bucket, BusRef, Function, Gsi, Key, Method, Queue, ResourceRef, Route, Rule, Service, Sources,
    Stage, StateMachine, Table, Target, Topic, Topology, ValueRef, core,
};
use serde_json::json;

/// The folder of test-only state machine definitions.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `core`, an `orders` service with every kind of resource, and an `audit` service that
/// uses `orders`' resources across stacks.
pub fn all_kinds(stage: &Stage) -> Topology {
    let orders = Service::new("orders")
        .with(
            Queue::new("requests")
                .with_visibility_timeout(Duration::from_secs(120))
                .with_dlq(3),
        )
        .with(Queue::new("inbox"))
        .with(
            Table::new("orders", Key::string("orderId"))
                .with_sort_key(Key::number("createdAt"))
                .with_ttl("expiresAt")
                .with_gsi(
                    Gsi::new("by-customer", Key::string("customerId"))
                        .with_sort_key(Key::number("createdAt")),
                ),
        )
        .with(Bucket::new("archive"))
        .with(
            StateMachine::new("order-flow", "order-flow.asl.json")
                .substitute("RequestsQueueUrl", ValueRef::QueueUrl("requests".into()))
                .substitute("EventBusName", ValueRef::BusName)
                .substitute("OrdersTable", ValueRef::TableName("orders".into()))
                .allow(&["sqs:SendMessage"], ResourceRef::Queue("requests".into()))
                .allow(&["dynamodb:PutItem"], ResourceRef::Table("orders".into()))
                .publish(Sources::Only(vec!["acme.orders"])),
        )
        .with(
            Function::asynchronous("on-order")
                .env("TABLE", ValueRef::TableName("orders".into()))
                .allow(
                    &["dynamodb:Query"],
                    ResourceRef::TableIndexes("orders".into()),
                ),
        )
        .with(
            Function::sqs("process-request", "requests", 10)
                .with_timeout(Duration::from_secs(60))
                .env("DLQ_URL", ValueRef::DlqUrl("requests".into())),
        )
        .with(
            Function::http(
                "orders-api",
                vec![
                    Route::new(Method::Get, "/orders/{id}"),
                    Route::new(Method::Post, "/orders"),
                ],
            )
            .with_memory_mb(512)
            .env("MACHINE", ValueRef::StateMachineArn("order-flow".into()))
            .allow(
                &["states:StartExecution"],
                ResourceRef::StateMachine("order-flow".into()),
            )
            .allow(
                &["states:DescribeExecution"],
                ResourceRef::Executions("order-flow".into()),
            ),
        )
        .with(
            Rule::new(
                "order-placed",
                json!({ "source": ["fleet.orders"], "detail-type": ["OrderPlaced"] }),
            )
            .target(Target::Queue("inbox".into()))
            .target(Target::StateMachine("order-flow".into()))
            .target(Target::Function("on-order".into())),
        );
    let audit = Service::new("audit")
        .with(Queue::new("audit"))
        .with(Topic::new("audit-alerts").subscribe("inbox"))
        .with(
            Rule::new("audit-all", json!({ "source": [{ "prefix": "fleet." }] }))
                .target(Target::Queue("audit".into())),
        )
        .with(
            Rule::new("executions", json!({ "source": ["aws.states"] }))
                .on_bus(BusRef::Default)
                .target(Target::Queue("audit".into())),
        )
        .with(
            Function::sqs("audit-writer", "audit", 5)
                .env("ARCHIVE", ValueRef::BucketName("archive".into()))
                .allow(
                    &["s3:PutObject"],
                    ResourceRef::BucketObjects("archive".into()),
                ),
        );
    let mut topology = Topology::new(stage, vec![core(), orders, audit]);
    topology.definitions_dir = fixtures();
    topology
}

/// `core` and a `probe` service whose rule sends `fleet.test` events to a queue.
pub fn probe(stage: &Stage) -> Topology {
    let probe = Service::new("probe").with(Queue::new("probe")).with(
        Rule::new("probe", json!({ "source": ["fleet.test"] }))
            .target(Target::Queue("probe".into())),
    );
    Topology::new(stage, vec![core(), probe])
}
