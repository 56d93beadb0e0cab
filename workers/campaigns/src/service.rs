//! The campaigns service's part of the fleet's topology: its resources, functions, rules and
//! permissions, declared here, in the service's own folder. `provision::fleet` assembles
//! the fleet from every service's [`topology`].

use contracts::campaigns as cp;
use lambda_shell::{Context, Handler, ShellError};
use serde_json::json;
use topology::{
    Function, Key, ResourceRef, Rule, Service, Sources, StateMachine, Table, Target, ValueRef,
};

/// The environment variable names this service's functions read (besides
/// `topology::env`'s): written once, here, for the topology and the binaries.
pub mod env {
    /// `CAMPAIGNS_TABLE`.
    pub const CAMPAIGNS_TABLE: &str = "CAMPAIGNS_TABLE";
    /// `PROVIDER_NAME`: the email provider's name, as in its webhook path.
    pub const PROVIDER_NAME: &str = "PROVIDER_NAME";
    /// `PROVIDER_URL`: the email provider's API base URL.
    pub const PROVIDER_URL: &str = "PROVIDER_URL";
}

/// The stack parameter naming the email provider (locally, `fleet dev`'s fake one).
pub const PARAM_PROVIDER_NAME: &str = "EmailProviderName";
/// The stack parameter with the email provider's API base URL.
pub const PARAM_PROVIDER_URL: &str = "EmailProviderUrl";

/// The service's Lambda functions with their dependencies: what each `bootstrap` binary
/// runs on AWS and what the local host registers.
pub const FUNCTIONS: &[lambda_shell::Function] = &[REQUESTED, SEND, OUTCOME];

/// `campaigns-requested`: [`crate::handle_requested`].
pub const REQUESTED: lambda_shell::Function = lambda_shell::Function {
    name: "campaigns-requested",
    build: build_requested,
};

/// `campaigns-send`: [`crate::handle_send_requested`].
pub const SEND: lambda_shell::Function = lambda_shell::Function {
    name: "campaigns-send",
    build: build_send,
};

/// `campaigns-outcome`: [`crate::handle_outcome`].
pub const OUTCOME: lambda_shell::Function = lambda_shell::Function {
    name: "campaigns-outcome",
    build: build_outcome,
};

fn campaigns(ctx: &Context) -> Result<crate::Campaigns, ShellError> {
    Ok(crate::Campaigns::new(
        ctx.sdk(),
        ctx.var(env::CAMPAIGNS_TABLE)?,
    ))
}

fn build_requested(ctx: &Context) -> Result<Handler, ShellError> {
    let deps = crate::RequestedDeps::new(
        ctx.sdk(),
        campaigns(ctx)?,
        ctx.var(topology::env::STATE_MACHINE_ARN)?,
        ctx.var(env::PROVIDER_NAME)?,
    );
    Ok(Handler::events(deps, |event, deps| async move {
        crate::handle_requested(event, &deps).await
    }))
}

fn build_send(ctx: &Context) -> Result<Handler, ShellError> {
    let deps = crate::SendDeps::new(ctx.sdk(), campaigns(ctx)?, ctx.var(env::PROVIDER_URL)?);
    Ok(Handler::events(deps, |event, deps| async move {
        crate::handle_send_requested(event, &deps).await
    }))
}

fn build_outcome(ctx: &Context) -> Result<Handler, ShellError> {
    Ok(Handler::events(
        campaigns(ctx)?,
        |event, campaigns| async move { crate::handle_outcome(event, &campaigns).await },
    ))
}

/// The campaigns service (crate `workers/campaigns`): the campaign-delivery state machine
/// and its three functions. The email provider belongs to the deployment (locally,
/// `fleet dev` runs a fake one): its name and URL are stack parameters.
pub fn topology() -> Service {
    const TABLE: &str = "campaigns";
    const MACHINE: &str = "campaign-delivery";
    let table = || ResourceRef::Table(TABLE.into());
    let requested = Function::asynchronous(REQUESTED.name)
        .env(topology::env::STAGE, ValueRef::Stage)
        .env(env::CAMPAIGNS_TABLE, ValueRef::TableName(TABLE.into()))
        .env(
            topology::env::STATE_MACHINE_ARN,
            ValueRef::StateMachineArn(MACHINE.into()),
        )
        .env(env::PROVIDER_NAME, provider_name())
        .allow(&["dynamodb:PutItem"], table())
        .allow(
            &["states:StartExecution"],
            ResourceRef::StateMachine(MACHINE.into()),
        );
    let send = Function::asynchronous(SEND.name)
        .env(topology::env::STAGE, ValueRef::Stage)
        .env(env::CAMPAIGNS_TABLE, ValueRef::TableName(TABLE.into()))
        .env(
            env::PROVIDER_URL,
            ValueRef::Setting {
                parameter: PARAM_PROVIDER_URL,
                description: "The email provider's API base URL (campaigns are POSTed to <url>/campaigns).",
            },
        )
        .allow(&["dynamodb:UpdateItem"], table())
        .allow(
            &["states:SendTaskSuccess", "states:SendTaskFailure"],
            ResourceRef::TaskTokens,
        );
    let outcome = Function::asynchronous(OUTCOME.name)
        .env(topology::env::STAGE, ValueRef::Stage)
        .env(env::CAMPAIGNS_TABLE, ValueRef::TableName(TABLE.into()))
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
            .target(Target::Function(REQUESTED.name.into())),
        )
        .with(
            Rule::new(
                "campaign-send-requested",
                json!({ "source": [cp::SOURCE], "detail-type": [cp::SEND_REQUESTED] }),
            )
            .target(Target::Function(SEND.name.into())),
        )
        .with(
            Rule::new(
                "campaign-outcome",
                json!({ "source": [cp::SOURCE], "detail-type": [cp::SENT, cp::FAILED] }),
            )
            .target(Target::Function(OUTCOME.name.into())),
        )
}

fn provider_name() -> ValueRef {
    ValueRef::Setting {
        parameter: PARAM_PROVIDER_NAME,
        description: "The email provider's name, as in its webhook path /callbacks/<name>.",
    }
}
