//! The notifier service's part of the fleet's topology: its resources, functions, rules and
//! permissions, declared here, in the service's own folder. `provision::fleet` assembles
//! the fleet from every service's [`topology`].

use contracts::jobs as jb;
use contracts::jobs::SOURCE as JOBS_SOURCE;
use serde_json::json;
use topology::{Function, Key, ResourceRef, Rule, Service, Table, Target, ValueRef};

/// The environment variable names this service's functions read (besides
/// `topology::env`'s): written once, here, for the topology and the binaries.
pub mod env {
    /// `CONNECTIONS_ENDPOINT`.
    pub const CONNECTIONS_ENDPOINT: &str = "CONNECTIONS_ENDPOINT";
    /// `NOTIFIER_TABLE`.
    pub const NOTIFIER_TABLE: &str = "NOTIFIER_TABLE";
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
pub fn topology() -> Service {
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
        f.env(topology::env::STAGE, ValueRef::Stage)
            .env(env::NOTIFIER_TABLE, ValueRef::TableName(TABLE.into()))
            .env(
                env::CONNECTIONS_ENDPOINT,
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
