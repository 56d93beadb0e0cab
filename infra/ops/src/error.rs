//! What can go wrong in an operation, and the one-line text of a failed AWS call.

use std::fmt;

use aws_smithy_types::error::display::DisplayErrorContext;

/// Why an operation failed. [`OpsError::Invalid`] is the caller's mistake (the CLI exits
/// with code 2 on it); everything else is the endpoint's or the environment's.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The request names something the stage does not have, or is malformed; the
    /// message says what to ask for instead.
    #[error("{0}")]
    Invalid(String),
    /// An AWS call failed: the operation, what it was about, and the error's chain of
    /// causes (for a service error, its code and message), then a hint when one helps.
    #[error("{operation} on {about} failed: {detail}{hint}")]
    Aws {
        operation: String,
        about: String,
        detail: String,
        /// Empty, or a sentence in parentheses starting with a space.
        hint: String,
    },
    /// The endpoint cannot do what was asked (e.g. moto lacks `RedriveExecution`),
    /// answered something the operation cannot use, or a step other than one AWS call
    /// failed; the message says which.
    #[error("{0}")]
    Failed(String),
    /// The resources an operation needs are not there (the stage is not deployed).
    #[error("{0}")]
    Missing(String),
    /// An operation failed, and cleaning up what it had created failed too.
    #[error("and cleaning up failed too: {cleanup}")]
    CleanupFailed {
        cleanup: String,
        #[source]
        error: Box<OpsError>,
    },
    /// A step that failed, with what it was doing.
    #[error("{context}")]
    Context {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Scheduler(#[from] scheduler::SchedulerError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl OpsError {
    /// Whether the caller asked for something wrong (rather than something failing).
    pub fn is_invalid(&self) -> bool {
        matches!(self, OpsError::Invalid(_))
    }
}

/// An AWS call that failed, without the SDK's debug dump; `FLEET_LOG=debug` logs that.
pub(crate) fn aws_error<E>(operation: &str, about: impl fmt::Display, error: E) -> OpsError
where
    E: std::error::Error + Send + Sync + 'static,
{
    tracing::debug!(operation, error = %DisplayErrorContext(&error), "AWS call failed");
    OpsError::Aws {
        operation: operation.to_owned(),
        about: about.to_string(),
        detail: error_chain(&error),
        hint: String::new(),
    }
}

/// An error and its sources joined by `: `, each distinct text once.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chains_read_as_one_line() {
        #[derive(Debug, thiserror::Error)]
        #[error("service error")]
        struct Outer(#[source] Inner);
        #[derive(Debug, thiserror::Error)]
        #[error("ResourceNotFoundException: Function not found")]
        struct Inner;
        let e = aws_error("Invoke", "function f", Outer(Inner));
        assert_eq!(
            e.to_string(),
            "Invoke on function f failed: service error: ResourceNotFoundException: Function not found"
        );
    }
}
