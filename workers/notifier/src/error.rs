//! The handlers' errors.

use contracts::ContractError;

/// A DynamoDB call failed.
#[derive(Debug, thiserror::Error)]
#[error("notifier table: {operation} failed: {message}")]
pub struct StoreError {
    pub operation: &'static str,
    pub message: String,
}

impl StoreError {
    pub(crate) fn new(operation: &'static str, error: impl std::fmt::Display) -> StoreError {
        StoreError {
            operation,
            message: error.to_string(),
        }
    }
}

/// Why a handler failed. [`HandlerError::error_type`] is what Lambda records (and what
/// reaches the failures topic for dead-lettered events).
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event is malformed: retrying delivers the same bytes, so it never succeeds.
    #[error(transparent)]
    InvalidEvent(#[from] ContractError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request is not one API Gateway sends (no connection id).
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
}

impl HandlerError {
    /// Whether delivering the same event again can succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, HandlerError::InvalidEvent(_))
    }

    /// A stable name: `Notifier.InvalidEvent` is not retryable, the others are.
    pub fn error_type(&self) -> &'static str {
        match self {
            HandlerError::InvalidEvent(_) => "Notifier.InvalidEvent",
            HandlerError::Store(_) => "Notifier.Transient",
            HandlerError::InvalidRequest(_) => "Notifier.InvalidRequest",
        }
    }
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(error: HandlerError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: error.error_type().to_string(),
            error_message: error.to_string(),
        }
    }
}
