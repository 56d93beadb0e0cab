//! The notifier service's part of the fleet's topology: its resources, functions, rules and
//! permissions, declared here, in the service's own folder. `provision::fleet` assembles
//! the fleet from every service's [`topology`].

use contracts::jobs as jb;
use contracts::jobs::SOURCE as JOBS_SOURCE;
use lambda_shell::{Context, Handler, ShellError};
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

/// The service's Lambda functions with their dependencies: what each `bootstrap` binary
/// runs on AWS and what the local host registers.
pub const FUNCTIONS: &[lambda_shell::Function] = &[WS, EVENTS];

/// `notifier-ws`: the WebSocket API's routes ([`crate::handle_ws`]).
pub const WS: lambda_shell::Function = lambda_shell::Function {
    name: "notifier-ws",
    build: build_ws,
};

/// `notifier-events`: [`crate::handle_event`].
pub const EVENTS: lambda_shell::Function = lambda_shell::Function {
    name: "notifier-events",
    build: build_events,
};

/// The handlers' dependencies. The `@connections` client is the one provided, if any
/// (the local host's in-process one), else one for `CONNECTIONS_ENDPOINT` per pushing
/// task.
fn deps(ctx: &Context) -> Result<crate::Deps, ShellError> {
    let deps = crate::Deps::new(
        ctx.sdk(),
        ctx.var(env::NOTIFIER_TABLE)?,
        &ctx.var(env::CONNECTIONS_ENDPOINT)?,
        crate::NotifierConfig::default(),
    );
    Ok(
        match ctx.provided::<aws_sdk_apigatewaymanagement::Client>() {
            Some(client) => deps.with_connections(move || client.clone()),
            None => deps,
        },
    )
}

fn build_ws(ctx: &Context) -> Result<Handler, ShellError> {
    let deps = deps(ctx)?.with_verifier(ctx.verifier()?);
    Ok(Handler::events(deps, |request, deps| async move {
        crate::handle_ws(request, &deps).await
    }))
}

fn build_events(ctx: &Context) -> Result<Handler, ShellError> {
    Ok(Handler::events(deps(ctx)?, |event, deps| async move {
        crate::handle_event(event, &deps).await
    }))
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
        WS.name,
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
    let events = with_access(Function::asynchronous(EVENTS.name));

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
            .target(Target::Function(EVENTS.name.into())),
        )
        .with(
            Rule::new(
                "notifier-job-events",
                json!({
                    "source": [JOBS_SOURCE],
                    "detail-type": contracts::JobEvent::AFTER_REQUEST,
                }),
            )
            .target(Target::Function(EVENTS.name.into())),
        )
}
