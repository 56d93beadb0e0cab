//! The Step Functions calls the handlers make, behind [`Executions`]: the SDK adapter is
//! [`Deps`](crate::Deps) itself, and [`MemoryExecutions`] is the in-memory twin unit tests
//! use, with Step Functions' rules for execution names.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};

use aws_sdk_sfn::error::DisplayErrorContext;
use aws_sdk_sfn::types::ExecutionStatus;

use crate::{Deps, SchedulerError};

/// What a start came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The execution runs: started now, or already running with the same input (Step
    /// Functions answers a repeated start as the first).
    Started,
    /// An execution of that name exists with another input, or has ended: names are
    /// single-use, so nothing was started.
    NameTaken,
}

/// Executions of the `schedule` state machine, by name.
pub trait Executions: Send + Sync {
    /// Starts execution `name` with `input`.
    fn start(
        &self,
        name: &str,
        input: &str,
    ) -> impl Future<Output = Result<Start, SchedulerError>> + Send;

    /// The status of execution `name`; `None` when there is none.
    fn status(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<ExecutionStatus>, SchedulerError>> + Send;

    /// Stops execution `name` as cancelled; `false` when there is none.
    fn stop(&self, name: &str) -> impl Future<Output = Result<bool, SchedulerError>> + Send;
}

impl Executions for Deps {
    async fn start(&self, name: &str, input: &str) -> Result<Start, SchedulerError> {
        let out = self
            .sfn
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(name)
            .input(input)
            .send()
            .await;
        match out {
            Ok(_) => Ok(Start::Started),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_execution_already_exists()) =>
            {
                Ok(Start::NameTaken)
            }
            Err(e) => Err(sfn_error("StartExecution", &e)),
        }
    }

    async fn status(&self, name: &str) -> Result<Option<ExecutionStatus>, SchedulerError> {
        let described = self
            .sfn
            .describe_execution()
            .execution_arn(self.execution_arn(name))
            .send()
            .await;
        match described {
            Ok(d) => Ok(Some(d.status)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_execution_does_not_exist()) =>
            {
                Ok(None)
            }
            Err(e) => Err(sfn_error("DescribeExecution", &e)),
        }
    }

    async fn stop(&self, name: &str) -> Result<bool, SchedulerError> {
        let out = self
            .sfn
            .stop_execution()
            .execution_arn(self.execution_arn(name))
            .error("Schedule.Cancelled")
            .cause("ScheduleCancelled")
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_execution_does_not_exist()) =>
            {
                Ok(false)
            }
            Err(e) => Err(sfn_error("StopExecution", &e)),
        }
    }
}

fn sfn_error<E: std::error::Error>(operation: &'static str, e: &E) -> SchedulerError {
    SchedulerError::StepFunctions {
        operation,
        message: DisplayErrorContext(e).to_string(),
    }
}

/// One execution of [`MemoryExecutions`].
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryExecution {
    pub name: String,
    pub input: String,
    pub status: ExecutionStatus,
}

/// Executions in memory, named as Step Functions names them: the twin of the SDK adapter.
#[derive(Debug, Default)]
pub struct MemoryExecutions {
    executions: Mutex<BTreeMap<String, MemoryExecution>>,
}

impl MemoryExecutions {
    /// Every execution ever started, by name.
    pub fn executions(&self) -> Vec<MemoryExecution> {
        self.lock().values().cloned().collect()
    }

    /// Ends execution `name` with `status`, as its state machine would (the schedule
    /// fired, or failed); `false` when there is none.
    pub fn end(&self, name: &str, status: ExecutionStatus) -> bool {
        match self.lock().get_mut(name) {
            Some(execution) => {
                execution.status = status;
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, MemoryExecution>> {
        // Every change is one assignment to one entry: a panic elsewhere while the lock
        // was held leaves the map whole.
        self.executions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Executions for MemoryExecutions {
    async fn start(&self, name: &str, input: &str) -> Result<Start, SchedulerError> {
        let mut executions = self.lock();
        match executions.get(name) {
            Some(e) if e.status == ExecutionStatus::Running && e.input == input => {
                Ok(Start::Started)
            }
            Some(_) => Ok(Start::NameTaken),
            None => {
                executions.insert(
                    name.to_string(),
                    MemoryExecution {
                        name: name.to_string(),
                        input: input.to_string(),
                        status: ExecutionStatus::Running,
                    },
                );
                Ok(Start::Started)
            }
        }
    }

    async fn status(&self, name: &str) -> Result<Option<ExecutionStatus>, SchedulerError> {
        Ok(self.lock().get(name).map(|e| e.status.clone()))
    }

    async fn stop(&self, name: &str) -> Result<bool, SchedulerError> {
        let mut executions = self.lock();
        let Some(execution) = executions.get_mut(name) else {
            return Ok(false);
        };
        // Stopping an execution that has ended leaves it as it ended.
        if execution.status == ExecutionStatus::Running {
            execution.status = ExecutionStatus::Aborted;
        }
        Ok(true)
    }
}
