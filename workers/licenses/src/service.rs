//! The licenses service's part of the fleet's topology: its resources, functions, rules and
//! permissions, declared here, in the service's own folder. `provision::fleet` assembles
//! the fleet from every service's [`topology`].

use contracts::{licenses as li, schedules as sc};
use lambda_shell::{Context, Handler, ShellError};
use serde_json::json;
use topology::{Function, Key, ResourceRef, Rule, Service, Sources, Table, Target, ValueRef};

/// The environment variable names this service's functions read (besides
/// `topology::env`'s): written once, here, for the topology and the binaries.
pub mod env {
    /// `LICENSES_TABLE`.
    pub const LICENSES_TABLE: &str = "LICENSES_TABLE";
}

/// The service's Lambda functions with their dependencies: what each `bootstrap` binary
/// runs on AWS and what the local host registers.
pub const FUNCTIONS: &[lambda_shell::Function] = &[CANCELLED, DEACTIVATE];

/// `licenses-cancelled`: [`crate::handle_subscription_cancelled`].
pub const CANCELLED: lambda_shell::Function = lambda_shell::Function {
    name: "licenses-cancelled",
    build: build_cancelled,
};

/// `licenses-deactivate`: [`crate::handle_deactivation_due`].
pub const DEACTIVATE: lambda_shell::Function = lambda_shell::Function {
    name: "licenses-deactivate",
    build: build_deactivate,
};

fn deps(ctx: &Context) -> Result<crate::Deps, ShellError> {
    Ok(crate::Deps::new(
        ctx.sdk(),
        ctx.var(env::LICENSES_TABLE)?,
        ctx.var(topology::env::BUS)?,
    ))
}

fn build_cancelled(ctx: &Context) -> Result<Handler, ShellError> {
    Ok(Handler::events(deps(ctx)?, |event, deps| async move {
        crate::handle_subscription_cancelled(event, &deps).await
    }))
}

fn build_deactivate(ctx: &Context) -> Result<Handler, ShellError> {
    Ok(Handler::events(deps(ctx)?, |event, deps| async move {
        crate::handle_deactivation_due(event, &deps).await
    }))
}

/// The licenses service (crate `workers/licenses`): a cancelled subscription keeps its
/// license until the period's end, then the scheduler's `LicenseDeactivationDue`
/// deactivates it.
pub fn topology() -> Service {
    const TABLE: &str = "licenses";
    let cancelled = Function::asynchronous(CANCELLED.name)
        .env(topology::env::STAGE, ValueRef::Stage)
        .env(env::LICENSES_TABLE, ValueRef::TableName(TABLE.into()))
        .env(topology::env::BUS, ValueRef::BusName)
        .allow(&["dynamodb:UpdateItem"], ResourceRef::Table(TABLE.into()))
        // ScheduleRequested for the deactivation.
        .publish(Sources::Only(vec![sc::SOURCE]));
    let deactivate = Function::asynchronous(DEACTIVATE.name)
        .env(topology::env::STAGE, ValueRef::Stage)
        .env(env::LICENSES_TABLE, ValueRef::TableName(TABLE.into()))
        .env(topology::env::BUS, ValueRef::BusName)
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
            .target(Target::Function(CANCELLED.name.into())),
        )
        .with(
            Rule::new(
                "license-deactivation-due",
                json!({ "source": [li::SOURCE], "detail-type": [li::DEACTIVATION_DUE] }),
            )
            .target(Target::Function(DEACTIVATE.name.into())),
        )
}
