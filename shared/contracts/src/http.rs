//! What the HTTP APIs (jobs, callbacks) answer besides their resources.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The body of every 4xx and 5xx answer: `{"error": "..."}`. The message names the
/// field at fault and the fix when the request was invalid; otherwise it is short
/// (`unauthorized`, `not found`, `unavailable, try again later`).
///
/// A request refused for a size or length limit (`413`, some `400`s) also names the
/// field (`field`, e.g. `params` or `Idempotency-Key`) and the limit (`limit`, in bytes
/// or characters as the message says), so that a client can act on them without parsing
/// the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub error: String,
    /// The field, header or query parameter at fault, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The limit the request went over, when it went over one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

impl ErrorBody {
    pub fn new(error: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: error.into(),
            field: None,
            limit: None,
        }
    }

    /// An answer about `field`, which went over `limit`.
    pub fn over_limit(error: impl Into<String>, field: impl Into<String>, limit: u64) -> ErrorBody {
        ErrorBody {
            error: error.into(),
            field: Some(field.into()),
            limit: Some(limit),
        }
    }
}
