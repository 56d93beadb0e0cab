//! The campaigns service's part of the fleet's topology: its resources, functions, rules and
//! permissions, declared here, in the service's own folder. `provision::fleet` assembles
//! the fleet from every service's [`topology`].

use contracts::campaigns as cp;
use serde_json::json;
use topology::{
    Function, Key, ResourceRef, Rule, Service, Sources, StateMachine, Table, Target, ValueRef,
};

/// The environment variable names this service's functions read (besides
/// `topology::env`'s): written once, here, for the topology and the binaries.
pub mod env {
    /// `CAMPAIGNS_TABLE`.
    pub const CAMPAIGNS_TABLE: &str = "CAMPAIGNS_TABLE";
}

/// The campaigns service (crate `workers/campaigns`): the campaign-delivery state machine
/// and its three functions. `campaigns-send` calls the email provider at `PROVIDER_URL`,
/// which belongs to the deployment (locally, `fleet dev` runs a fake provider); it is not
/// set here.
pub fn topology() -> Service {
    const TABLE: &str = "campaigns";
    const MACHINE: &str = "campaign-delivery";
    let table = || ResourceRef::Table(TABLE.into());
    let requested = Function::asynchronous("campaigns-requested")
        .env(topology::env::STAGE, ValueRef::Stage)
        .env(env::CAMPAIGNS_TABLE, ValueRef::TableName(TABLE.into()))
        .env(
            topology::env::STATE_MACHINE_ARN,
            ValueRef::StateMachineArn(MACHINE.into()),
        )
        .allow(&["dynamodb:PutItem"], table())
        .allow(
            &["states:StartExecution"],
            ResourceRef::StateMachine(MACHINE.into()),
        );
    let send = Function::asynchronous("campaigns-send")
        .env(topology::env::STAGE, ValueRef::Stage)
        .env(env::CAMPAIGNS_TABLE, ValueRef::TableName(TABLE.into()))
        .allow(&["dynamodb:UpdateItem"], table())
        .allow(
            &["states:SendTaskSuccess", "states:SendTaskFailure"],
            ResourceRef::TaskTokens,
        );
    let outcome = Function::asynchronous("campaigns-outcome")
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
