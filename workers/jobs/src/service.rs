//! The jobs service's part of the fleet's topology: its resources, functions, rules and
//! permissions, declared here, in the service's own folder. `provision::fleet` assembles
//! the fleet from every service's [`topology`].

use contracts::jobs as jb;
use contracts::jobs::SOURCE as JOBS_SOURCE;
use serde_json::json;
use topology::{
    Function, Gsi, Key, Method, ResourceRef, Route, Rule, Service, Sources, StateMachine, Table,
    Target, ValueRef,
};

/// The environment variable names this service's functions read (besides
/// `topology::env`'s): written once, here, for the topology and the binaries.
pub mod env {
    /// `JOBS_TABLE`.
    pub const JOBS_TABLE: &str = "JOBS_TABLE";
}

/// The jobs service: the jobs table, the simulation-job state machine, and three Lambda
/// functions (crate `workers/jobs`, one binary each).
///
/// - `jobs-api` serves `POST /jobs`, `GET /jobs` and `GET /jobs/{id}`, and publishes
///   `JobRequested`. Its token settings (`JWT_ISSUER`, `JWT_AUDIENCE`, `JWKS_URL`) belong
///   to the deployment's identity provider, not to the topology: they are parameters of
///   the service's stack ([`ValueRef::Token`]).
/// - `jobs-requested` turns every `JobRequested` on the bus, from any source (upstream
///   services request jobs too), into one execution named after the job id.
/// - `jobs-view` applies the other job events to the table.
///
/// The state machine hands each job to the simulation queue (owned by `simulation`,
/// defined before this service) and publishes the outcome; it does not write the table.
pub fn topology() -> Service {
    const TABLE: &str = "jobs";
    const MACHINE: &str = "simulation-job";
    const QUEUE: &str = "simulation";
    let table = || ResourceRef::Table(TABLE.into());

    let api = Function::http(
        "jobs-api",
        vec![
            Route::new(Method::Post, "/jobs"),
            Route::new(Method::Get, "/jobs"),
            Route::new(Method::Get, "/jobs/{id}"),
        ],
    )
    .env(topology::env::STAGE, ValueRef::Stage)
    .env(env::JOBS_TABLE, ValueRef::TableName(TABLE.into()))
    .env(topology::env::BUS, ValueRef::BusName)
    .with_token_settings()
    // Put: the QUEUED row and idempotency keys; Get: reads and key lookups; Delete:
    // undoing a job whose JobRequested could not be published.
    .allow(
        &[
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:DeleteItem",
        ],
        table(),
    )
    .allow(&["dynamodb:Query"], ResourceRef::TableIndexes(TABLE.into()))
    .publish(Sources::Only(vec![JOBS_SOURCE]));

    let requested = Function::asynchronous("jobs-requested")
        .env(topology::env::STAGE, ValueRef::Stage)
        .env(env::JOBS_TABLE, ValueRef::TableName(TABLE.into()))
        .env(
            topology::env::STATE_MACHINE_ARN,
            ValueRef::StateMachineArn(MACHINE.into()),
        )
        .allow(&["dynamodb:GetItem", "dynamodb:PutItem"], table())
        .allow(
            &["states:StartExecution"],
            ResourceRef::StateMachine(MACHINE.into()),
        );

    let view = Function::asynchronous("jobs-view")
        .env(topology::env::STAGE, ValueRef::Stage)
        .env(env::JOBS_TABLE, ValueRef::TableName(TABLE.into()))
        .allow(&["dynamodb:GetItem", "dynamodb:UpdateItem"], table());

    Service::new("jobs")
        .with(
            Table::new(TABLE, Key::string("jobId"))
                // Idempotency-key items expire; job rows carry no `expiresAt`.
                .with_ttl("expiresAt")
                .with_gsi(
                    Gsi::new("byRequester", Key::string("requestedBy"))
                        .with_sort_key(Key::string("createdAt")),
                ),
        )
        .with(
            StateMachine::new(MACHINE, "simulation-job.asl.json")
                .substitute("SimulationQueueUrl", ValueRef::QueueUrl(QUEUE.into()))
                .substitute("EventBusName", ValueRef::BusName)
                .allow(&["sqs:SendMessage"], ResourceRef::Queue(QUEUE.into()))
                .publish(Sources::Only(vec![JOBS_SOURCE])),
        )
        .with(api)
        .with(requested)
        .with(view)
        .with(
            // Any source: upstream services request jobs with their own `source`.
            Rule::new(
                "job-requested",
                json!({ "source": [{ "prefix": "" }], "detail-type": [jb::REQUESTED] }),
            )
            .target(Target::Function("jobs-requested".into())),
        )
        .with(
            Rule::new(
                "job-view",
                json!({
                    "source": [JOBS_SOURCE],
                    "detail-type": [jb::STARTED, jb::PROGRESS, jb::SUCCEEDED, jb::FAILED],
                }),
            )
            .target(Target::Function("jobs-view".into())),
        )
}
