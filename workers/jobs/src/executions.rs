//! The simulation-job executions, one per job and named after its id: started by
//! `jobs-requested`, stopped by a cancel (`jobs-api`, and `jobs-requested` when a cancel
//! overtook the start).

use aws_sdk_sfn::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_sfn::types::ExecutionStatus;
use contracts::JobId;

/// The simulation-job state machine's executions.
#[derive(Debug, Clone)]
pub struct Executions {
    pub sfn: aws_sdk_sfn::Client,
    pub state_machine_arn: String,
}

/// A Step Functions call that failed; every one may be retried.
#[derive(Debug, thiserror::Error)]
#[error("{operation} for job {job_id} failed: {message}")]
pub struct ExecutionError {
    pub operation: &'static str,
    pub job_id: String,
    pub message: String,
}

/// What starting a job's execution came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    Started {
        execution_arn: String,
    },
    /// An execution of that name exists: a redelivered request.
    AlreadyExists,
}

impl Executions {
    pub fn new(sdk: &aws_config::SdkConfig, state_machine_arn: impl Into<String>) -> Executions {
        Executions {
            sfn: aws_sdk_sfn::Client::new(sdk),
            state_machine_arn: state_machine_arn.into(),
        }
    }

    /// The ARN of job `job_id`'s execution, started or not.
    pub fn execution_arn(&self, job_id: &JobId) -> String {
        format!(
            "{}:{}",
            self.state_machine_arn
                .replacen(":stateMachine:", ":execution:", 1),
            job_id.as_str()
        )
    }

    pub async fn start(&self, job_id: &JobId, input: String) -> Result<Start, ExecutionError> {
        let result = self
            .sfn
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(job_id.as_str())
            .input(input)
            .send()
            .await;
        match result {
            Ok(output) => Ok(Start::Started {
                execution_arn: output.execution_arn().to_string(),
            }),
            Err(e) if e.code() == Some("ExecutionAlreadyExists") => Ok(Start::AlreadyExists),
            Err(e) => Err(failed("StartExecution", job_id, &e)),
        }
    }

    /// The status of the job's execution; `None` while it has not started.
    pub async fn status(&self, job_id: &JobId) -> Result<Option<ExecutionStatus>, ExecutionError> {
        let described = self
            .sfn
            .describe_execution()
            .execution_arn(self.execution_arn(job_id))
            .send()
            .await;
        match described {
            Ok(d) => Ok(Some(d.status)),
            Err(e) if e.code() == Some("ExecutionDoesNotExist") => Ok(None),
            Err(e) => Err(failed("DescribeExecution", job_id, &e)),
        }
    }

    /// Stops the job's execution as cancelled by `by`. Stopping one that has not started
    /// or has ended already changes nothing, and is no error.
    pub async fn stop(&self, job_id: &JobId, by: &str) -> Result<(), ExecutionError> {
        let stopped = self
            .sfn
            .stop_execution()
            .execution_arn(self.execution_arn(job_id))
            .error(crate::store::CANCELLED_ERROR)
            .cause(format!("cancelled by {by}"))
            .send()
            .await;
        match stopped {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ExecutionDoesNotExist") => Ok(()),
            Err(e) => Err(failed("StopExecution", job_id, &e)),
        }
    }
}

fn failed<E: std::error::Error>(operation: &'static str, job_id: &JobId, e: &E) -> ExecutionError {
    ExecutionError {
        operation,
        job_id: job_id.to_string(),
        message: DisplayErrorContext(e).to_string(),
    }
}
