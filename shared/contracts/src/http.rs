//! What the HTTP APIs (jobs, callbacks) answer besides their resources.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The body of every 4xx and 5xx answer: `{"error": "..."}`. The message names the
/// field at fault and the fix when the request was invalid; otherwise it is short
/// (`unauthorized`, `not found`, `unavailable, try again later`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub error: String,
}

impl ErrorBody {
    pub fn new(error: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: error.into(),
        }
    }
}
