//! The licenses service's part of the fleet's topology: its resources, functions, rules and
//! permissions, declared here, in the service's own folder. `provision::fleet` assembles
//! the fleet from every service's [`topology`].

use contracts::{licenses as li, schedules as sc};
use serde_json::json;
use topology::{Function, Key, ResourceRef, Rule, Service, Sources, Table, Target, ValueRef};

/// The environment variable names this service's functions read (besides
/// `topology::env`'s): written once, here, for the topology and the binaries.
pub mod env {
    /// `LICENSES_TABLE`.
    pub const LICENSES_TABLE: &str = "LICENSES_TABLE";
}

/// The licenses service (crate `workers/licenses`): a cancelled subscription keeps its
/// license until the period's end, then the scheduler's `LicenseDeactivationDue`
/// deactivates it.
pub fn topology() -> Service {
    const TABLE: &str = "licenses";
    let cancelled = Function::asynchronous("licenses-cancelled")
        .env(topology::env::STAGE, ValueRef::Stage)
        .env(env::LICENSES_TABLE, ValueRef::TableName(TABLE.into()))
        .env(topology::env::BUS, ValueRef::BusName)
        .allow(&["dynamodb:UpdateItem"], ResourceRef::Table(TABLE.into()))
        // ScheduleRequested for the deactivation.
        .publish(Sources::Only(vec![sc::SOURCE]));
    let deactivate = Function::asynchronous("licenses-deactivate")
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
