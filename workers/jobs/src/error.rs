//! The handlers' errors: event handlers say whether a retry can help; the HTTP API says
//! only what the client may know.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use contracts::ContractError;
use contracts::http::ErrorBody;

use crate::store::StoreError;

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
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("StartExecution for job {job_id} failed: {message}")]
    StartExecution { job_id: String, message: String },
    /// A deployment mistake: the function lacks a setting its handler needs.
    #[error("misconfigured: {0}")]
    Misconfigured(&'static str),
}

impl HandlerError {
    /// Whether delivering the same event again can succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, HandlerError::InvalidEvent(_))
    }

    /// A stable name: `Jobs.InvalidEvent` is not retryable, the others are.
    pub fn error_type(&self) -> &'static str {
        match self {
            HandlerError::InvalidEvent(_) => "Jobs.InvalidEvent",
            HandlerError::UnknownJob { .. } => "Jobs.UnknownJob",
            HandlerError::Store(_) => "Jobs.Transient",
            HandlerError::StartExecution { .. } => "Jobs.Transient",
            HandlerError::Misconfigured(_) => "Jobs.Misconfigured",
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

/// An HTTP error answer: `{"error": "..."}`. Only [`ApiError::BadRequest`] carries detail,
/// and that detail is about the client's own request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    Unauthorized,
    BadRequest(String),
    NotFound,
    /// A dependency (the bus, the JWKS) is down; the client may retry.
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

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::BadRequest(message) => message,
            ApiError::NotFound => "not found",
            ApiError::Unavailable => "unavailable, try again later",
            ApiError::Internal => "internal error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(ErrorBody::new(self.message()))).into_response();
        if self == ApiError::Unauthorized {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
