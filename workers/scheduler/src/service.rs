//! The scheduler service's part of the fleet's topology: its resources, functions, rules and
//! permissions, declared here, in the service's own folder. `provision::fleet` assembles
//! the fleet from every service's [`topology`].

use contracts::jobs::SOURCE as JOBS_SOURCE;
use contracts::schedules as sc;
use serde_json::json;
use topology::{Function, ResourceRef, Rule, Service, Sources, StateMachine, Target, ValueRef};

/// The scheduler service (crate `workers/scheduler`): `ScheduleRequested` from any
/// source starts a `schedule` execution named after its key, which waits until the time
/// and publishes the event; `ScheduleCancelled` stops it.
pub fn topology() -> Service {
    const MACHINE: &str = "schedule";
    let requested = Function::asynchronous("scheduler-requested")
        .env(topology::env::STAGE, ValueRef::Stage)
        .env(
            topology::env::STATE_MACHINE_ARN,
            ValueRef::StateMachineArn(MACHINE.into()),
        )
        .allow(
            &["states:StartExecution"],
            ResourceRef::StateMachine(MACHINE.into()),
        );
    let cancelled = Function::asynchronous("scheduler-cancelled")
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
