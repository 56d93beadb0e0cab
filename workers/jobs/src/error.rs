//! The handlers' errors: event handlers say whether a retry can help; the HTTP API says
//! only what the client may know.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use contracts::ContractError;
use contracts::http::ErrorBody;

use crate::store::StoreError;

/// The `Retry-After` (seconds) of a `409` for an idempotency key in use.
const IN_PROGRESS_RETRY_AFTER: &str = "1";

/// Why an event handler failed. [`HandlerError::error_type`] is what Lambda records
/// (and what reaches the failures topic for dead-lettered events).
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event is malformed: retrying delivers the same bytes, so it never succeeds.
    #[error(transparent)]
    InvalidEvent(#[from] ContractError),
    /// The event is about a job whose row does not exist (yet): a later delivery may find it.
    #[error("job {job_id} has no row in the jobs table yet")]
    UnknownJob { job_id: String },
    /// A time in the event that the jobs table cannot hold (e.g. `meta.occurredAt` in
    /// year 10000 UTC): the event is at fault, for good.
    #[error("invalid job event: field `{field}`: {message}")]
    InvalidTime {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Store(StoreError),
    /// Another request with the same idempotency key has not published its job yet.
    #[error("idempotency key `{key}` of {requested_by} is claimed by a request in progress")]
    KeyInProgress { requested_by: String, key: String },
    #[error("StartExecution for job {job_id} failed: {message}")]
    StartExecution { job_id: String, message: String },
    #[error(transparent)]
    Execution(#[from] crate::executions::ExecutionError),
}

impl HandlerError {
    /// Whether delivering the same event again can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            HandlerError::InvalidEvent(_) | HandlerError::InvalidTime { .. } => false,
            HandlerError::Store(e) => e.is_transient(),
            _ => true,
        }
    }

    /// A stable name: `Jobs.InvalidEvent` and `Jobs.StoreRefused` are not retryable, the
    /// others are.
    pub fn error_type(&self) -> &'static str {
        match self {
            HandlerError::InvalidEvent(_) | HandlerError::InvalidTime { .. } => "Jobs.InvalidEvent",
            HandlerError::UnknownJob { .. } => "Jobs.UnknownJob",
            HandlerError::Store(e) if e.is_transient() => "Jobs.Transient",
            HandlerError::Store(_) => "Jobs.StoreRefused",
            HandlerError::KeyInProgress { .. } => "Jobs.Transient",
            HandlerError::StartExecution { .. } | HandlerError::Execution(_) => "Jobs.Transient",
        }
    }
}

impl From<StoreError> for HandlerError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::OutOfRange { field, message } => {
                HandlerError::InvalidTime { field, message }
            }
            other => HandlerError::Store(other),
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

/// An HTTP error answer: `{"error": "..."}`. Only [`ApiError::BadRequest`],
/// [`ApiError::InvalidParam`], [`ApiError::OverLimit`], [`ApiError::NoResult`] and [`ApiError::Ended`] carry
/// detail, and that detail is about the client's own request or job.
///
/// Only [`ApiError::Unavailable`] (503) and [`ApiError::InProgress`] (409) tell the client
/// to retry the same request: a request that cannot succeed as sent is a 4xx, a fault of
/// the service that a retry does not cure is a 500.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    Unauthorized,
    BadRequest(String),
    /// A request over a documented limit: `413` for the body and its fields, `400` for
    /// headers, the query string and the path.
    OverLimit {
        status: StatusCode,
        field: String,
        limit: usize,
        message: String,
    },
    /// A parameter a built-in model refuses (`400`, with `field` in the body).
    InvalidParam {
        field: String,
        message: String,
    },
    NotFound,
    /// The job exists but has no result to give (still running, or failed): `409`, the
    /// message says why.
    NoResult(String),
    /// A cancel of a job that has ended: `409`, the message says how it ended.
    Ended(String),
    /// Another request with the same `Idempotency-Key` is still being handled; the
    /// client retries after a moment and then gets its outcome.
    InProgress,
    /// A dependency (the bus, the table, the JWKS) is down or throttling; the client may
    /// retry.
    Unavailable,
    Internal,
}

impl ApiError {
    /// `invalid request: field `<field>`: <message>` for a contract violation.
    pub(crate) fn invalid(error: &ContractError) -> ApiError {
        match error {
            ContractError::Invalid { field, message, .. } => {
                ApiError::BadRequest(format!("invalid request: field `{field}`: {message}"))
            }
            other => ApiError::BadRequest(format!("invalid request: {other}")),
        }
    }

    pub(crate) fn field(field: &str, message: impl std::fmt::Display) -> ApiError {
        ApiError::BadRequest(format!("invalid request: field `{field}`: {message}"))
    }

    /// `params.<name>` refused by the model's check.
    pub(crate) fn param(error: contracts::models::ParamError) -> ApiError {
        ApiError::InvalidParam {
            message: format!("invalid request: field `{}`: {}", error.field, error.reason),
            field: error.field,
        }
    }

    /// `field` is `actual` long, over `limit` (`unit` says of what: bytes, characters).
    pub(crate) fn over_limit(
        status: StatusCode,
        field: &str,
        constant: &str,
        limit: usize,
        actual: usize,
        unit: &str,
    ) -> ApiError {
        ApiError::OverLimit {
            status,
            field: field.to_string(),
            limit,
            message: format!(
                "invalid request: field `{field}`: is {actual} {unit}, more than the limit of {limit} ({constant})"
            ),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::OverLimit { status, .. } => *status,
            ApiError::InvalidParam { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::NoResult(_) | ApiError::Ended(_) => StatusCode::CONFLICT,
            ApiError::InProgress => StatusCode::CONFLICT,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::BadRequest(message) => message,
            ApiError::OverLimit { message, .. } => message,
            ApiError::InvalidParam { message, .. } => message,
            ApiError::NotFound => "not found",
            ApiError::NoResult(message) | ApiError::Ended(message) => message,
            ApiError::InProgress => {
                "a request with this Idempotency-Key is in progress: retry after a moment to get its outcome"
            }
            ApiError::Unavailable => "unavailable, try again later",
            ApiError::Internal => "internal error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match &self {
            ApiError::OverLimit {
                field,
                limit,
                message,
                ..
            } => ErrorBody::over_limit(
                message.clone(),
                field.clone(),
                u64::try_from(*limit).unwrap_or(u64::MAX),
            ),
            ApiError::InvalidParam { field, message } => ErrorBody {
                field: Some(field.clone()),
                ..ErrorBody::new(message.clone())
            },
            other => ErrorBody::new(other.message()),
        };
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthorized => {
                headers.insert(
                    axum::http::header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Bearer"),
                );
            }
            ApiError::InProgress => {
                headers.insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from_static(IN_PROGRESS_RETRY_AFTER),
                );
            }
            _ => {}
        }
        response
    }
}
