//! THE definition of the fleet: one function per service. Adding a service means adding a
//! function returning [`Service`] and listing it in [`fleet`].

use std::time::Duration;

use serde_json::json;

use contracts::jobs::SOURCE as JOBS_SOURCE;
use contracts::{callbacks as cb, campaigns as cp, jobs as jb, licenses as li, schedules as sc};
use topology::Stage;
use topology::{
    Bucket, FargateService, Function, Gsi, Key, Method, Queue, ResourceRef, Route, Rule, Scaling,
    Service, Sources, StateMachine, Table, Target, Topology, ValueRef, core,
};

/// The fleet for `stage`.
pub fn fleet(stage: &Stage) -> Topology {
    Topology::new(
        stage,
        vec![
            core(),
            simulation(),
            jobs(),
            notifier(),
            callbacks(),
            campaigns(),
            scheduler(),
            licenses(),
        ],
    )
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
        .with(Bucket::new(BUCKET))
        .with(worker)
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
pub fn jobs() -> Service {
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
    .env("STAGE", ValueRef::Stage)
    .env("JOBS_TABLE", ValueRef::TableName(TABLE.into()))
    .env("BUS", ValueRef::BusName)
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
        .env("STAGE", ValueRef::Stage)
        .env("JOBS_TABLE", ValueRef::TableName(TABLE.into()))
        .env(
            "STATE_MACHINE_ARN",
            ValueRef::StateMachineArn(MACHINE.into()),
        )
        .allow(&["dynamodb:GetItem", "dynamodb:PutItem"], table())
        .allow(
            &["states:StartExecution"],
            ResourceRef::StateMachine(MACHINE.into()),
        );

    let view = Function::asynchronous("jobs-view")
        .env("STAGE", ValueRef::Stage)
        .env("JOBS_TABLE", ValueRef::TableName(TABLE.into()))
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

/// The notifier: pushes job frames to WebSocket clients (crate `workers/notifier`).
///
/// - `notifier-ws` serves every route of the service's WebSocket API: `$connect`
///   (authorizes the token from the query string), `$disconnect`, and the actions
///   `subscribe`, `unsubscribe`, `ping` (`$default` answers unknown actions).
/// - `notifier-events` keeps the job → owner projection from `JobRequested` and pushes
///   every other job event to the subscribers of `job:<id>` and `user:<owner>`.
///
/// One table holds connections, subscriptions, channel histories and the projection
/// (`pk`/`sk`, TTL on `expiresAt`). `notifier-ws` takes the token settings as
/// `jobs-api` does.
pub fn notifier() -> Service {
    const TABLE: &str = "notifier";
    const SERVICE: &str = "notifier";
    let table_actions = [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:Query",
        "dynamodb:BatchGetItem",
    ];
    let with_access = |f: Function| {
        f.env("STAGE", ValueRef::Stage)
            .env("NOTIFIER_TABLE", ValueRef::TableName(TABLE.into()))
            .env(
                "CONNECTIONS_ENDPOINT",
                ValueRef::ConnectionsEndpoint(SERVICE.into()),
            )
            .allow(&table_actions, ResourceRef::Table(TABLE.into()))
            .allow(
                &["execute-api:ManageConnections"],
                ResourceRef::Connections(SERVICE.into()),
            )
    };
    let ws = with_access(Function::websocket(
        "notifier-ws",
        &[
            "$connect",
            "$disconnect",
            "$default",
            "subscribe",
            "unsubscribe",
            "ping",
        ],
    ))
    .with_token_settings();
    let events = with_access(Function::asynchronous("notifier-events"));

    Service::new(SERVICE)
        .with(
            Table::new(TABLE, Key::string("pk"))
                .with_sort_key(Key::string("sk"))
                .with_ttl("expiresAt"),
        )
        .with(ws)
        .with(events)
        .with(
            // Owners come only from the jobs service's own JobRequested (`POST /jobs`):
            // anyone may publish a JobRequested, and an owner is who may watch a job.
            Rule::new(
                "notifier-requested",
                json!({ "source": [JOBS_SOURCE], "detail-type": [jb::REQUESTED] }),
            )
            .target(Target::Function("notifier-events".into())),
        )
        .with(
            Rule::new(
                "notifier-job-events",
                json!({
                    "source": [JOBS_SOURCE],
                    "detail-type": [jb::STARTED, jb::PROGRESS, jb::SUCCEEDED, jb::FAILED],
                }),
            )
            .target(Target::Function("notifier-events".into())),
        )
}

/// The callbacks service (crate `workers/callbacks`): any state machine waits on an
/// external system by publishing `CallbackAwaited` with `events:putEvents.waitForTaskToken`;
/// `callbacks-awaited` stores the token under (provider, external id), and
/// `callbacks-webhook` serves the providers' signed `POST /callbacks/{provider}`. One
/// table holds the tokens and the delivery ids, both expiring through `expiresAt`.
///
/// The webhook's secrets live in SSM Parameter Store as SecureStrings
/// `/fleet/<stage>/callbacks/<provider>` (created out of band; the binary's
/// `CALLBACK_SECRETS_SSM_PREFIX`).
pub fn callbacks() -> Service {
    const TABLE: &str = "callbacks";
    let awaited = Function::asynchronous("callbacks-awaited")
        .env("STAGE", ValueRef::Stage)
        .env("CALLBACKS_TABLE", ValueRef::TableName(TABLE.into()))
        .allow(&["dynamodb:PutItem"], ResourceRef::Table(TABLE.into()));
    let webhook = Function::http(
        "callbacks-webhook",
        vec![Route::new(Method::Post, "/callbacks/{provider}")],
    )
    .env("STAGE", ValueRef::Stage)
    .env("CALLBACKS_TABLE", ValueRef::TableName(TABLE.into()))
    .env(
        "CALLBACK_SECRETS_SSM_PREFIX",
        ValueRef::ParameterPath("callbacks".into()),
    )
    // Webhooks from any other provider name are refused without a secret lookup.
    .env(
        "CALLBACK_PROVIDERS",
        ValueRef::Setting {
            parameter: "CallbackProviders",
            description: "The webhook providers accepted, comma-separated `name` or `name=<max body bytes>` (default 262144), e.g. `acme,bigco=1048576`.",
        },
    )
    .allow(
        &["ssm:GetParameter"],
        ResourceRef::Parameters("callbacks".into()),
    )
    .allow(
        &[
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:DeleteItem",
        ],
        ResourceRef::Table(TABLE.into()),
    )
    .allow(
        &[
            "states:SendTaskSuccess",
            "states:SendTaskFailure",
            "states:SendTaskHeartbeat",
        ],
        ResourceRef::TaskTokens,
    );
    Service::new("callbacks")
        .with(Table::new(TABLE, Key::string("pk")).with_ttl("expiresAt"))
        .with(awaited)
        .with(webhook)
        .with(
            // Any source: every service's state machines wait through this one.
            Rule::new(
                "callback-awaited",
                json!({ "source": [{ "prefix": "" }], "detail-type": [cb::AWAITED] }),
            )
            .target(Target::Function("callbacks-awaited".into())),
        )
}

/// The campaigns service (crate `workers/campaigns`): the campaign-delivery state machine
/// and its three functions. `campaigns-send` calls the email provider at `PROVIDER_URL`,
/// which belongs to the deployment (locally, `fleet dev` runs a fake provider); it is not
/// set here.
pub fn campaigns() -> Service {
    const TABLE: &str = "campaigns";
    const MACHINE: &str = "campaign-delivery";
    let table = || ResourceRef::Table(TABLE.into());
    let requested = Function::asynchronous("campaigns-requested")
        .env("STAGE", ValueRef::Stage)
        .env("CAMPAIGNS_TABLE", ValueRef::TableName(TABLE.into()))
        .env(
            "STATE_MACHINE_ARN",
            ValueRef::StateMachineArn(MACHINE.into()),
        )
        .allow(&["dynamodb:PutItem"], table())
        .allow(
            &["states:StartExecution"],
            ResourceRef::StateMachine(MACHINE.into()),
        );
    let send = Function::asynchronous("campaigns-send")
        .env("STAGE", ValueRef::Stage)
        .env("CAMPAIGNS_TABLE", ValueRef::TableName(TABLE.into()))
        .allow(&["dynamodb:UpdateItem"], table())
        .allow(
            &["states:SendTaskSuccess", "states:SendTaskFailure"],
            ResourceRef::TaskTokens,
        );
    let outcome = Function::asynchronous("campaigns-outcome")
        .env("STAGE", ValueRef::Stage)
        .env("CAMPAIGNS_TABLE", ValueRef::TableName(TABLE.into()))
        .allow(&["dynamodb:UpdateItem"], table());
    Service::new("campaigns")
        .with(Table::new(TABLE, Key::string("pk")))
        .with(
            StateMachine::new(MACHINE, "campaign-delivery.asl.json")
                .substitute("EventBusName", ValueRef::BusName)
                .publish(Sources::Only(vec![cp::SOURCE])),
        )
        .with(requested)
        .with(send)
        .with(outcome)
        .with(
            Rule::new(
                "campaign-requested",
                json!({ "source": [{ "prefix": "" }], "detail-type": [cp::REQUESTED] }),
            )
            .target(Target::Function("campaigns-requested".into())),
        )
        .with(
            Rule::new(
                "campaign-send-requested",
                json!({ "source": [cp::SOURCE], "detail-type": [cp::SEND_REQUESTED] }),
            )
            .target(Target::Function("campaigns-send".into())),
        )
        .with(
            Rule::new(
                "campaign-outcome",
                json!({ "source": [cp::SOURCE], "detail-type": [cp::SENT, cp::FAILED] }),
            )
            .target(Target::Function("campaigns-outcome".into())),
        )
}

/// The scheduler service (crate `workers/scheduler`): `ScheduleRequested` from any
/// source starts a `schedule` execution named after its key, which waits until the time
/// and publishes the event; `ScheduleCancelled` stops it.
pub fn scheduler() -> Service {
    const MACHINE: &str = "schedule";
    let requested = Function::asynchronous("scheduler-requested")
        .env("STAGE", ValueRef::Stage)
        .env(
            "STATE_MACHINE_ARN",
            ValueRef::StateMachineArn(MACHINE.into()),
        )
        .allow(
            &["states:StartExecution"],
            ResourceRef::StateMachine(MACHINE.into()),
        );
    let cancelled = Function::asynchronous("scheduler-cancelled")
        .env("STAGE", ValueRef::Stage)
        .env(
            "STATE_MACHINE_ARN",
            ValueRef::StateMachineArn(MACHINE.into()),
        )
        .allow(
            &["states:DescribeExecution", "states:StopExecution"],
            ResourceRef::Executions(MACHINE.into()),
        );
    Service::new("scheduler")
        .with(
            StateMachine::new(MACHINE, "schedule.asl.json")
                .substitute("EventBusName", ValueRef::BusName)
                // It publishes what any service scheduled, so never as the jobs service.
                .publish(Sources::AnyBut(vec![JOBS_SOURCE])),
        )
        .with(requested)
        .with(cancelled)
        .with(
            Rule::new(
                "schedule-requested",
                json!({ "source": [{ "prefix": "" }], "detail-type": [sc::REQUESTED] }),
            )
            .target(Target::Function("scheduler-requested".into())),
        )
        .with(
            Rule::new(
                "schedule-cancelled",
                json!({ "source": [{ "prefix": "" }], "detail-type": [sc::CANCELLED] }),
            )
            .target(Target::Function("scheduler-cancelled".into())),
        )
}

/// The licenses service (crate `workers/licenses`): a cancelled subscription keeps its
/// license until the period's end, then the scheduler's `LicenseDeactivationDue`
/// deactivates it.
pub fn licenses() -> Service {
    const TABLE: &str = "licenses";
    let cancelled = Function::asynchronous("licenses-cancelled")
        .env("STAGE", ValueRef::Stage)
        .env("LICENSES_TABLE", ValueRef::TableName(TABLE.into()))
        .env("BUS", ValueRef::BusName)
        .allow(&["dynamodb:UpdateItem"], ResourceRef::Table(TABLE.into()))
        // ScheduleRequested for the deactivation.
        .publish(Sources::Only(vec![sc::SOURCE]));
    let deactivate = Function::asynchronous("licenses-deactivate")
        .env("STAGE", ValueRef::Stage)
        .env("LICENSES_TABLE", ValueRef::TableName(TABLE.into()))
        .env("BUS", ValueRef::BusName)
        .allow(&["dynamodb:UpdateItem"], ResourceRef::Table(TABLE.into()));
    Service::new("licenses")
        .with(Table::new(TABLE, Key::string("licenseId")))
        .with(cancelled)
        .with(deactivate)
        .with(
            Rule::new(
                "subscription-cancelled",
                json!({ "source": [{ "prefix": "" }], "detail-type": [li::SUBSCRIPTION_CANCELLED] }),
            )
            .target(Target::Function("licenses-cancelled".into())),
        )
        .with(
            Rule::new(
                "license-deactivation-due",
                json!({ "source": [li::SOURCE], "detail-type": [li::DEACTIVATION_DUE] }),
            )
            .target(Target::Function("licenses-deactivate".into())),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use topology::{DeadLetterSource, FAILURES};

    #[test]
    fn the_fleet_is_valid() {
        let topology = fleet(&Stage::default());
        topology
            .validate()
            .expect("fleet() must be a valid topology");
        let queues: Vec<_> = topology.queues().map(|q| q.name.as_str()).collect();
        assert_eq!(queues, ["failures", "simulation"]);
        let tables: Vec<_> = topology.tables().map(|t| t.name.as_str()).collect();
        assert_eq!(tables[..3], ["simulation-jobs", "jobs", "notifier"]);
        let services: Vec<_> = topology.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(services[..4], ["core", "simulation", "jobs", "notifier"]);
        assert_eq!(
            services[4..],
            ["callbacks", "campaigns", "scheduler", "licenses"]
        );
        assert_eq!(tables[3..], ["callbacks", "campaigns", "licenses"]);
    }

    #[test]
    fn dead_letters_name_their_source() {
        let topology = fleet(&Stage::default());
        let dead = topology.dead_letters();
        assert_eq!(dead.len(), 2, "{dead:?}");
        assert_eq!(dead[0].queue, "fleet-dev-failures");
        assert_eq!(dead[0].service, "core");
        assert_eq!(
            dead[0].source,
            DeadLetterSource::Functions {
                name: FAILURES.into(),
                topic: FAILURES.into(),
                functions: topology
                    .functions()
                    .filter(|f| f.dead_letter.is_some())
                    .map(|f| f.name.clone())
                    .collect(),
            }
        );
        let DeadLetterSource::Functions { functions, .. } = &dead[0].source else {
            unreachable!("checked above");
        };
        assert!(functions.starts_with(&["jobs-requested".into(), "jobs-view".into()]));
        assert!(functions.contains(&"notifier-events".to_owned()));
        assert_eq!(dead[1].queue, "fleet-dev-simulation-dlq");
        assert_eq!(dead[1].service, "simulation");
    }
}
