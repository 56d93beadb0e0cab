//! The scheduler service's part of the fleet's topology: its resources, functions, rules and
//! permissions, declared here, in the service's own folder. `provision::fleet` assembles
//! the fleet from every service's [`topology`].

use contracts::jobs::SOURCE as JOBS_SOURCE;
use contracts::schedules as sc;
use lambda_shell::{Context, Handler, ShellError};
use serde_json::json;
use topology::{Function, ResourceRef, Rule, Service, Sources, StateMachine, Target, ValueRef};

/// The service's Lambda functions with their dependencies: what each `bootstrap` binary
/// runs on AWS and what the local host registers.
pub const FUNCTIONS: &[lambda_shell::Function] = &[REQUESTED, CANCELLED];

/// `scheduler-requested`: [`crate::handle_requested`].
pub const REQUESTED: lambda_shell::Function = lambda_shell::Function {
    name: "scheduler-requested",
    build: build_requested,
};

/// `scheduler-cancelled`: [`crate::handle_cancelled`].
pub const CANCELLED: lambda_shell::Function = lambda_shell::Function {
    name: "scheduler-cancelled",
    build: build_cancelled,
};

fn deps(ctx: &Context) -> Result<crate::Deps, ShellError> {
    Ok(crate::Deps::new(
        ctx.sdk(),
        ctx.var(topology::env::STATE_MACHINE_ARN)?,
    ))
}

fn build_requested(ctx: &Context) -> Result<Handler, ShellError> {
    Ok(Handler::events(deps(ctx)?, |event, deps| async move {
        crate::handle_requested(event, &deps).await
    }))
}

fn build_cancelled(ctx: &Context) -> Result<Handler, ShellError> {
    Ok(Handler::events(deps(ctx)?, |event, deps| async move {
        crate::handle_cancelled(event, &deps).await
    }))
}

/// The scheduler service (crate `workers/scheduler`): `ScheduleRequested` from any
/// source starts a `schedule` execution named after its key, which waits until the time
/// and publishes the event; `ScheduleCancelled` stops it.
pub fn topology() -> Service {
    const MACHINE: &str = "schedule";
    let requested = Function::asynchronous(REQUESTED.name)
        .env(topology::env::STAGE, ValueRef::Stage)
        .env(
            topology::env::STATE_MACHINE_ARN,
            ValueRef::StateMachineArn(MACHINE.into()),
        )
        .allow(
            &["states:StartExecution"],
            ResourceRef::StateMachine(MACHINE.into()),
        );
    let cancelled = Function::asynchronous(CANCELLED.name)
        .env(topology::env::STAGE, ValueRef::Stage)
        .env(
            topology::env::STATE_MACHINE_ARN,
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
            .target(Target::Function(REQUESTED.name.into())),
        )
        .with(
            Rule::new(
                "schedule-cancelled",
                json!({ "source": [{ "prefix": "" }], "detail-type": [sc::CANCELLED] }),
            )
            .target(Target::Function(CANCELLED.name.into())),
        )
}
