//! The callbacks service's part of the fleet's topology: its resources, functions, rules and
//! permissions, declared here, in the service's own folder. `provision::fleet` assembles
//! the fleet from every service's [`topology`].

use contracts::callbacks as cb;
use serde_json::json;
use topology::{Function, Key, Method, ResourceRef, Route, Rule, Service, Table, Target, ValueRef};

/// The environment variable names this service's functions read (besides
/// `topology::env`'s): written once, here, for the topology and the binaries.
pub mod env {
    /// `CALLBACKS_TABLE`.
    pub const CALLBACKS_TABLE: &str = "CALLBACKS_TABLE";
    /// `CALLBACK_PROVIDERS`.
    pub const CALLBACK_PROVIDERS: &str = "CALLBACK_PROVIDERS";
    /// `CALLBACK_SECRETS_SSM_PREFIX`.
    pub const CALLBACK_SECRETS_SSM_PREFIX: &str = "CALLBACK_SECRETS_SSM_PREFIX";
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
pub fn topology() -> Service {
    const TABLE: &str = "callbacks";
    let awaited = Function::asynchronous("callbacks-awaited")
        .env(topology::env::STAGE, ValueRef::Stage)
        .env(env::CALLBACKS_TABLE, ValueRef::TableName(TABLE.into()))
        .allow(&["dynamodb:PutItem"], ResourceRef::Table(TABLE.into()));
    let webhook = Function::http(
        "callbacks-webhook",
        vec![Route::new(Method::Post, "/callbacks/{provider}")],
    )
    .env(topology::env::STAGE, ValueRef::Stage)
    .env(env::CALLBACKS_TABLE, ValueRef::TableName(TABLE.into()))
    .env(
        env::CALLBACK_SECRETS_SSM_PREFIX,
        ValueRef::ParameterPath("callbacks".into()),
    )
    // Webhooks from any other provider name are refused without a secret lookup.
    .env(
        env::CALLBACK_PROVIDERS,
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
