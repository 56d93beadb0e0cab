//! The callbacks service's part of the fleet's topology: its resources, functions, rules and
//! permissions, declared here, in the service's own folder. `provision::fleet` assembles
//! the fleet from every service's [`topology`].

use contracts::callbacks as cb;
use lambda_shell::{Context, Handler, ShellError};
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
    /// `CALLBACK_SECRETS_DIR`: secrets as files `<dir>/<provider>`, when there is no SSM
    /// prefix (self-hosting outside AWS).
    pub const CALLBACK_SECRETS_DIR: &str = "CALLBACK_SECRETS_DIR";
    /// `CALLBACK_SECRET_<PROVIDER>`: a secret in the environment, when there is neither.
    pub const CALLBACK_SECRET_PREFIX: &str = "CALLBACK_SECRET_";
}

/// The stack parameter listing the webhook providers accepted.
pub const PARAM_PROVIDERS: &str = "CallbackProviders";

/// The service's Lambda functions with their dependencies: what each `bootstrap` binary
/// runs on AWS and what the local host registers.
pub const FUNCTIONS: &[lambda_shell::Function] = &[AWAITED, WEBHOOK];

/// `callbacks-awaited`: [`crate::handle_awaited`].
pub const AWAITED: lambda_shell::Function = lambda_shell::Function {
    name: "callbacks-awaited",
    build: build_awaited,
};

/// `callbacks-webhook`: the providers' webhooks ([`crate::app`]).
pub const WEBHOOK: lambda_shell::Function = lambda_shell::Function {
    name: "callbacks-webhook",
    build: build_webhook,
};

fn store(ctx: &Context) -> Result<crate::Store, ShellError> {
    Ok(crate::Store::new(
        aws_sdk_dynamodb::Client::new(ctx.sdk()),
        ctx.var(env::CALLBACKS_TABLE)?,
    ))
}

fn build_awaited(ctx: &Context) -> Result<Handler, ShellError> {
    Ok(Handler::events(store(ctx)?, |event, store| async move {
        crate::handle_awaited(event, &store).await
    }))
}

/// Where the per-provider secrets are, the first that is set of:
/// `CALLBACK_SECRETS_SSM_PREFIX` (SSM Parameter Store, SecureString `<prefix>/<provider>`,
/// which the topology sets to `/fleet/<stage>/callbacks`), `CALLBACK_SECRETS_DIR` (a file
/// per provider), or `CALLBACK_SECRET_<PROVIDER>` variables (provider upper-cased, `-` as
/// `_`; these also list the providers when `CALLBACK_PROVIDERS` is not set).
fn secrets(ctx: &Context) -> crate::SecretSource {
    if let Some(prefix) = ctx.optional(env::CALLBACK_SECRETS_SSM_PREFIX) {
        crate::SecretSource::ssm(aws_sdk_ssm::Client::new(ctx.sdk()), prefix)
    } else if let Some(dir) = ctx.optional(env::CALLBACK_SECRETS_DIR) {
        crate::SecretSource::files(dir)
    } else {
        crate::SecretSource::memory(
            ctx.vars_with_prefix(env::CALLBACK_SECRET_PREFIX)
                .map(|(provider, value)| {
                    (
                        provider.to_ascii_lowercase().replace('_', "-"),
                        crate::Secret::new(value),
                    )
                })
                .collect(),
        )
    }
}

fn build_webhook(ctx: &Context) -> Result<Handler, ShellError> {
    let secrets = secrets(ctx);
    let listed = secrets.listed_providers().is_some();
    let mut deps = crate::Deps::new(ctx.sdk(), ctx.var(env::CALLBACKS_TABLE)?, secrets);
    match ctx.optional(env::CALLBACK_PROVIDERS) {
        Some(list) => {
            let providers =
                crate::parse_providers(&list).map_err(|reason| ShellError::Invalid {
                    name: env::CALLBACK_PROVIDERS.to_owned(),
                    reason,
                })?;
            let config = crate::Config {
                providers,
                ..deps.config.clone()
            };
            deps = deps.with_config(config);
        }
        // Without a list, every webhook would be refused: say so at start, not per request.
        None if !listed => {
            return Err(ShellError::Invalid {
                name: env::CALLBACK_PROVIDERS.to_owned(),
                reason: "not set: list the providers webhooks are accepted from, e.g. `acme,bigco=1048576`".to_owned(),
            });
        }
        None => {}
    }
    let providers: Vec<&String> = deps.config.providers.keys().collect();
    tracing::info!(secrets = ?deps.secrets, providers = ?providers, "callbacks-webhook configured");
    Ok(Handler::http(crate::app(std::sync::Arc::new(deps))))
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
    let awaited = Function::asynchronous(AWAITED.name)
        .env(topology::env::STAGE, ValueRef::Stage)
        .env(env::CALLBACKS_TABLE, ValueRef::TableName(TABLE.into()))
        .allow(&["dynamodb:PutItem"], ResourceRef::Table(TABLE.into()));
    let webhook = Function::http(
        WEBHOOK.name,
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
            parameter: PARAM_PROVIDERS,
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
            .target(Target::Function(AWAITED.name.into())),
        )
}
