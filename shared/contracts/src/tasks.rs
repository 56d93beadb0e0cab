//! What the simulation-job state machine is started with, what it hands a worker through
//! the `simulation` queue, and what the worker hands back through the task token.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ContractError, from_value};
use crate::jobs::{JobId, ResultLocation};

/// The input of a `simulation-job` execution (named after the job id), started by the
/// jobs service for each `JobRequested`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SimulationJobInput {
    pub job_id: JobId,
    pub model: String,
    pub params: Map<String, Value>,
    pub requested_by: String,
}

/// The body of a message on the `simulation` queue, sent by the state machine with
/// `sqs:sendMessage.waitForTaskToken`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SimulationTask {
    /// The Step Functions task token the execution waits on.
    pub task_token: String,
    pub job_id: JobId,
    pub model: String,
    pub params: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// Which hand-out of the job this task is (`$$.State.RetryCount`): 0 for the first,
    /// one more each time the state machine hands the job out again. Absent in tasks of
    /// older definitions, which means 0.
    #[serde(default)]
    pub handout: u32,
}

impl SimulationTask {
    /// Parses a queue message body, naming the offending field on error.
    pub fn from_body(body: &str) -> Result<SimulationTask, ContractError> {
        let value: Value = serde_json::from_str(body).map_err(|e| ContractError::Invalid {
            what: "simulation task".to_string(),
            field: "(body)".to_string(),
            message: format!("not JSON: {e}"),
        })?;
        let task: SimulationTask = from_value("simulation task", &value)?;
        if task.task_token.is_empty() {
            return Err(ContractError::Invalid {
                what: "simulation task".to_string(),
                field: "taskToken".to_string(),
                message: "must not be empty".to_string(),
            });
        }
        Ok(task)
    }
}

/// The output a worker sends with `SendTaskSuccess`: a summary and the result's location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskOutput {
    pub summary: Value,
    pub result: ResultLocation,
    pub worker: String,
}

/// Error names a worker sends with `SendTaskFailure`; state machines' `Retry` and
/// `Catch` match on them.
pub mod errors {
    /// The model ran and failed. Not retried: the same input fails the same way.
    pub const MODEL_FAILED: &str = "Model.Failed";
    /// The job's parameters are invalid.
    pub const INVALID_PARAMS: &str = "Model.InvalidParams";
    /// No model of that name is installed on the worker.
    pub const UNKNOWN_MODEL: &str = "Model.UnknownModel";
    /// Storing the result or another dependency failed; retrying can help.
    pub const WORKER_TRANSIENT: &str = "Worker.Transient";
}
