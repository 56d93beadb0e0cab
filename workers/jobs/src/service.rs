//! The jobs service's part of the fleet's topology: its resources, functions, rules and
//! permissions, declared here, in the service's own folder. `provision::fleet` assembles
//! the fleet from every service's [`topology`].

use contracts::jobs as jb;
use contracts::jobs::SOURCE as JOBS_SOURCE;
use lambda_shell::{Context, Handler, ShellError};
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

/// The service's Lambda functions with their dependencies: what each `bootstrap` binary
/// runs on AWS and what the local host registers.
pub const FUNCTIONS: &[lambda_shell::Function] = &[API, REQUESTED, VIEW];

/// `jobs-api`: the HTTP API ([`crate::app`]).
pub const API: lambda_shell::Function = lambda_shell::Function {
    name: "jobs-api",
    build: build_api,
};

/// `jobs-requested`: [`crate::handle_job_requested`].
pub const REQUESTED: lambda_shell::Function = lambda_shell::Function {
    name: "jobs-requested",
    build: build_requested,
};

/// `jobs-view`: [`crate::handle_job_event`].
pub const VIEW: lambda_shell::Function = lambda_shell::Function {
    name: "jobs-view",
    build: build_view,
};

fn jobs(ctx: &Context) -> Result<crate::Jobs, ShellError> {
    Ok(crate::Jobs::new(ctx.sdk(), ctx.var(env::JOBS_TABLE)?))
}

fn build_api(ctx: &Context) -> Result<Handler, ShellError> {
    let publisher = bus::Publisher::from_sdk(ctx.sdk(), ctx.var(topology::env::BUS)?);
    let deps = crate::ApiDeps::new(
        jobs(ctx)?,
        publisher,
        ctx.verifier()?,
        crate::Results::new(ctx.sdk()),
        crate::Executions::new(ctx.sdk(), ctx.var(topology::env::STATE_MACHINE_ARN)?),
    );
    Ok(Handler::http(crate::app(std::sync::Arc::new(deps))))
}

fn build_requested(ctx: &Context) -> Result<Handler, ShellError> {
    let deps = crate::RequestedDeps::new(
        ctx.sdk(),
        jobs(ctx)?,
        ctx.var(topology::env::STATE_MACHINE_ARN)?,
    );
    Ok(Handler::events(deps, |event, deps| async move {
        crate::handle_job_requested(event, &deps).await
    }))
}

fn build_view(ctx: &Context) -> Result<Handler, ShellError> {
    Ok(Handler::events(jobs(ctx)?, |event, jobs| async move {
        crate::handle_job_event(event, &jobs).await
    }))
}

/// The jobs service: the jobs table, the simulation-job state machine, and three Lambda
/// functions (crate `workers/jobs`, one binary each).
///
/// - `jobs-api` serves `POST /jobs`, `GET /jobs`, `GET /jobs/{id}`, `GET /jobs/{id}/result`
///   (a presigned link of the result, so it may read the results bucket's objects),
///   `POST /jobs/{id}/cancel` (it marks the row and stops the execution) and
///   `GET /models`, and publishes `JobRequested` and `JobCancelled`. Its token settings (`JWT_ISSUER`, `JWT_AUDIENCE`, `JWKS_URL`) belong
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
    // The simulation service's, defined before this one.
    const RESULTS_BUCKET: &str = "results";
    let table = || ResourceRef::Table(TABLE.into());

    let api = Function::http(
        API.name,
        vec![
            Route::new(Method::Post, "/jobs"),
            Route::new(Method::Get, "/jobs"),
            Route::new(Method::Get, "/jobs/{id}"),
            Route::new(Method::Get, "/jobs/{id}/result"),
            Route::new(Method::Post, "/jobs/{id}/cancel"),
            Route::new(Method::Get, "/models"),
        ],
    )
    .env(topology::env::STAGE, ValueRef::Stage)
    .env(env::JOBS_TABLE, ValueRef::TableName(TABLE.into()))
    .env(topology::env::BUS, ValueRef::BusName)
    .env(
        topology::env::STATE_MACHINE_ARN,
        ValueRef::StateMachineArn(MACHINE.into()),
    )
    .with_token_settings()
    // Put: the QUEUED row and idempotency keys; Get: reads and key lookups; Delete:
    // undoing a job whose JobRequested could not be published; Update: a cancel.
    .allow(
        &[
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:DeleteItem",
            "dynamodb:UpdateItem",
        ],
        table(),
    )
    .allow(
        &["states:DescribeExecution", "states:StopExecution"],
        ResourceRef::Executions(MACHINE.into()),
    )
    .allow(&["dynamodb:Query"], ResourceRef::TableIndexes(TABLE.into()))
    // Presigned links of results: the link is signed with this role, so the role must
    // be allowed to read what the link reads (and nothing else of the bucket).
    .allow(
        &["s3:GetObject"],
        ResourceRef::BucketObjects(RESULTS_BUCKET.into()),
    )
    .publish(Sources::Only(vec![JOBS_SOURCE]));

    let requested = Function::asynchronous(REQUESTED.name)
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
        )
        // A job cancelled while its execution started.
        .allow(
            &["states:StopExecution"],
            ResourceRef::Executions(MACHINE.into()),
        );

    let view = Function::asynchronous(VIEW.name)
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
            .target(Target::Function(REQUESTED.name.into())),
        )
        .with(
            Rule::new(
                "job-view",
                json!({
                    "source": [JOBS_SOURCE],
                    "detail-type": contracts::JobEvent::AFTER_REQUEST,
                }),
            )
            .target(Target::Function(VIEW.name.into())),
        )
}
