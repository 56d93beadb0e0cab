//! JSON Schemas of every contract, generated from the Rust types and committed under
//! `shared/contracts/schemas/` (a test fails when they are stale).

use schemars::JsonSchema;
use serde_json::Value;

use crate::envelope::Meta;
use crate::frames::{ClientMessage, Frame};
use crate::jobs::{JobFailed, JobProgress, JobRequested, JobStarted, JobSucceeded, JobView};
use crate::tasks::{SimulationTask, TaskOutput};

/// `(file stem, schema)` for every contract.
pub fn all() -> Vec<(&'static str, Value)> {
    vec![
        ("Meta", schema::<Meta>()),
        ("JobRequested", schema::<JobRequested>()),
        ("JobStarted", schema::<JobStarted>()),
        ("JobProgress", schema::<JobProgress>()),
        ("JobSucceeded", schema::<JobSucceeded>()),
        ("JobFailed", schema::<JobFailed>()),
        ("JobView", schema::<JobView>()),
        ("SimulationTask", schema::<SimulationTask>()),
        ("TaskOutput", schema::<TaskOutput>()),
        ("Frame", schema::<Frame>()),
        ("ClientMessage", schema::<ClientMessage>()),
    ]
}

fn schema<T: JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null)
}
