//! The console's JSON API under `/ops/api`: each endpoint bounds its input, makes one
//! `fleet-ops` call and answers its data, or `{error, field?}`. Every change (redrive,
//! purge, a task answered) is logged with the caller's `sub`.

use std::sync::Arc;

use auth::Claims;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fleet_ops::OpsError;
use fleet_ops::dlq::{self, Filter, RedriveOptions};
use fleet_ops::{live, runs, tokens};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Console;
use super::limits::{
    DEFAULT_REDRIVE_RATE, MAX_CAUSE_LEN, MAX_ERROR_LEN, MAX_EXECUTION_LEN, MAX_FILTER_LEN,
    MAX_LIST, MAX_NAME_LEN, MAX_PEEK, MAX_REDRIVE, MAX_REDRIVE_RATE, MAX_TASK_TOKEN_LEN,
};

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/live", get(live))
        .route("/dlqs", get(dlqs))
        .route("/dlqs/{name}/messages", get(messages))
        .route("/dlqs/{name}/redrive", post(redrive).get(redrive_progress))
        .route("/dlqs/{name}/purge", post(purge))
        .route("/runs", get(list_runs))
        .route("/runs/{execution}", get(show_run))
        .route("/tokens", get(list_tokens))
        .route("/tokens/succeed", post(succeed))
        .route("/tokens/fail", post(fail))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
}

/// An answer other than success: `{error, field?}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: String,
    field: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            field: None,
        }
    }

    fn field(status: StatusCode, field: &'static str, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            field: Some(field),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.error });
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        (self.status, Json(body)).into_response()
    }
}

/// The operator asked for something the stage lacks (400), the stage is not deployed
/// (404), or AWS failed (502). Only ops users get here, and they see what the CLI shows.
impl From<OpsError> for ApiError {
    fn from(error: OpsError) -> ApiError {
        let status = match &error {
            OpsError::Invalid(_) => StatusCode::BAD_REQUEST,
            OpsError::Missing(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_GATEWAY,
        };
        if status == StatusCode::BAD_GATEWAY {
            tracing::warn!(error = %error, "ops console: an operation failed");
        }
        ApiError::new(status, error.to_string())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, rejection.body_text())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        ApiError::new(rejection.status(), rejection.body_text())
    }
}

type Answer = Result<Json<Value>, ApiError>;

fn answer(value: impl serde::Serialize) -> Answer {
    serde_json::to_value(value)
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Refuses `value` over `max` bytes, naming `field`.
fn bounded(field: &'static str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.len() > max {
        return Err(ApiError::field(
            StatusCode::PAYLOAD_TOO_LARGE,
            field,
            format!("{field} is {} bytes, more than {max}", value.len()),
        ));
    }
    Ok(())
}

/// A count between 1 and `max`, or `default`.
fn count(
    field: &'static str,
    value: Option<usize>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match value {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            field,
            format!("{field} is {n}; give 1 to {max}"),
        )),
    }
}

async fn whoami(Extension(claims): Extension<Claims>) -> Answer {
    answer(json!({ "sub": claims.sub, "groups": claims.groups }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LiveQuery {
    jobs: Option<usize>,
}

async fn live(
    State(console): State<Console>,
    query: Result<Query<LiveQuery>, QueryRejection>,
) -> Answer {
    let Query(query) = query?;
    let jobs = count("jobs", query.jobs, 50, MAX_LIST)?;
    answer(live::live(&console.ops, jobs).await?)
}

async fn dlqs(State(console): State<Console>) -> Answer {
    answer(dlq::list(&console.ops).await?)
}

async fn resolve(console: &Console, name: &str) -> Result<dlq::DeadLetterQueue, ApiError> {
    bounded("name", name, MAX_NAME_LEN)?;
    Ok(dlq::resolve(&console.ops, name).await?)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeekQuery {
    limit: Option<usize>,
}

async fn messages(
    State(console): State<Console>,
    Path(name): Path<String>,
    query: Result<Query<PeekQuery>, QueryRejection>,
) -> Answer {
    let Query(query) = query?;
    let limit = count("limit", query.limit, 10, MAX_PEEK)?;
    let queue = resolve(&console, &name).await?;
    answer(json!({
        "queue": queue,
        "messages": dlq::show(&console.ops, &queue, limit).await?,
    }))
}

/// `POST /ops/api/dlqs/{name}/redrive`. `confirm` must repeat the queue's full name
/// (except on a dry run): the page asks before sending it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RedriveRequest {
    confirm: Option<String>,
    /// Only this message (`messageId` as the messages list gives it).
    message_id: Option<String>,
    /// An event pattern (a JSON object) or a substring of the body.
    filter: Option<String>,
    max: Option<usize>,
    rate: Option<u32>,
    #[serde(default)]
    dry_run: bool,
    function: Option<String>,
}

async fn redrive(
    State(console): State<Console>,
    Extension(claims): Extension<Claims>,
    Path(name): Path<String>,
    body: Result<Json<RedriveRequest>, JsonRejection>,
) -> Answer {
    let Json(request) = body?;
    for (field, value, max) in [
        ("confirm", &request.confirm, MAX_NAME_LEN),
        ("messageId", &request.message_id, MAX_NAME_LEN),
        ("filter", &request.filter, MAX_FILTER_LEN),
        ("function", &request.function, MAX_NAME_LEN),
    ] {
        if let Some(value) = value {
            bounded(field, value, max)?;
        }
    }
    let max = count("max", request.max, MAX_REDRIVE, MAX_REDRIVE)?;
    let rate = match request.rate {
        None => DEFAULT_REDRIVE_RATE,
        Some(r) if (1..=MAX_REDRIVE_RATE).contains(&r) => r,
        Some(r) => {
            return Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "rate",
                format!("rate is {r}; give 1 to {MAX_REDRIVE_RATE} messages per second"),
            ));
        }
    };
    let filter = match (&request.message_id, &request.filter) {
        (Some(_), Some(_)) => {
            return Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "filter",
                "give messageId or filter, not both",
            ));
        }
        (Some(id), None) => Some(Filter::MessageId(id.clone())),
        (None, Some(text)) => Some(
            Filter::parse(text)
                .map_err(|e| ApiError::field(StatusCode::BAD_REQUEST, "filter", e.to_string()))?,
        ),
        (None, None) => None,
    };
    let queue = resolve(&console, &name).await?;
    // A dry run changes nothing, so it needs neither the confirmation nor the queue.
    let tracker = if request.dry_run {
        None
    } else {
        confirmed(&request.confirm, &queue.name)?;
        let Some(tracker) = console.redrives.begin(&queue.name) else {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("a redrive of {} is running; wait for it to end", queue.name),
            ));
        };
        Some(Arc::new(tracker))
    };
    let options = RedriveOptions {
        // One message by id: stop once it is sent.
        max: Some(if request.message_id.is_some() { 1 } else { max }),
        filter,
        rate: Some(f64::from(rate)),
        dry_run: request.dry_run,
        function: request.function.clone(),
        progress: tracker.map(|t| t as Arc<dyn dlq::Progress>),
    };
    let report = dlq::redrive(&console.ops, &queue, &options).await?;
    if !request.dry_run {
        tracing::info!(
            sub = %claims.sub,
            queue = %queue.name,
            redriven = report.redriven,
            failed = report.failed.len(),
            "ops console: redrive"
        );
    }
    answer(report)
}

/// `GET /ops/api/dlqs/{name}/redrive`: how far the queue's latest redrive from the
/// console has got (`{}` if none ran since the console started).
async fn redrive_progress(State(console): State<Console>, Path(name): Path<String>) -> Answer {
    let queue = resolve(&console, &name).await?;
    match console.redrives.get(&queue.name) {
        Some(progress) => answer(progress),
        None => answer(json!({})),
    }
}

fn confirmed(confirm: &Option<String>, name: &str) -> Result<(), ApiError> {
    if confirm.as_deref() == Some(name) {
        return Ok(());
    }
    Err(ApiError::field(
        StatusCode::BAD_REQUEST,
        "confirm",
        format!("confirm with the queue's full name, {name}"),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    confirm: Option<String>,
}

async fn purge(
    State(console): State<Console>,
    Extension(claims): Extension<Claims>,
    Path(name): Path<String>,
    body: Result<Json<PurgeRequest>, JsonRejection>,
) -> Answer {
    let Json(request) = body?;
    if let Some(confirm) = &request.confirm {
        bounded("confirm", confirm, MAX_NAME_LEN)?;
    }
    let queue = resolve(&console, &name).await?;
    confirmed(&request.confirm, &queue.name)?;
    let url = dlq::queue_url(&console.ops, &queue.name).await?;
    let (visible, in_flight) = dlq::depth(&console.ops, &url).await?;
    dlq::purge(&console.ops, &url, &queue.name).await?;
    tracing::info!(sub = %claims.sub, queue = %queue.name, purged = visible + in_flight, "ops console: purge");
    answer(json!({ "queue": queue.name, "purged": visible + in_flight }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    machine: Option<String>,
    status: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
}

async fn list_runs(
    State(console): State<Console>,
    query: Result<Query<RunsQuery>, QueryRejection>,
) -> Answer {
    let Query(query) = query?;
    let limit = count("limit", query.limit, 50, MAX_LIST)?;
    if let Some(machine) = &query.machine {
        bounded("machine", machine, MAX_NAME_LEN)?;
    }
    let status = query
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(crate::cmd::runs::parse_status)
        .transpose()
        .map_err(|e| ApiError::field(StatusCode::BAD_REQUEST, "status", e))?;
    let since = query
        .since
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| fleet_ops::parse_since(s, time::OffsetDateTime::now_utc()))
        .transpose()
        .map_err(|e| ApiError::field(StatusCode::BAD_REQUEST, "since", e.to_string()))?;
    let machine = query.machine.as_deref().filter(|m| !m.is_empty());
    answer(runs::list(&console.ops, machine, status, since, limit).await?)
}

async fn show_run(State(console): State<Console>, Path(execution): Path<String>) -> Answer {
    bounded("execution", &execution, MAX_EXECUTION_LEN)?;
    let arn = runs::resolve_execution(&console.ops, &execution).await?;
    answer(runs::show(&console.ops, &arn).await?)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensQuery {
    machine: Option<String>,
}

async fn list_tokens(
    State(console): State<Console>,
    query: Result<Query<TokensQuery>, QueryRejection>,
) -> Answer {
    let Query(query) = query?;
    if let Some(machine) = &query.machine {
        bounded("machine", machine, MAX_NAME_LEN)?;
    }
    let machine = query.machine.as_deref().filter(|m| !m.is_empty());
    answer(tokens::list(&console.ops, machine).await?)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SucceedRequest {
    token: String,
    /// The task's output, a JSON value (default `{}`).
    output: Option<Value>,
}

async fn succeed(
    State(console): State<Console>,
    Extension(claims): Extension<Claims>,
    body: Result<Json<SucceedRequest>, JsonRejection>,
) -> Answer {
    let Json(request) = body?;
    bounded("token", &request.token, MAX_TASK_TOKEN_LEN)?;
    let output = request.output.unwrap_or_else(|| json!({})).to_string();
    tokens::succeed(&console.ops, &request.token, &output).await?;
    tracing::info!(sub = %claims.sub, token = %fleet_ops::redact(&request.token), "ops console: task succeeded");
    answer(json!({ "answered": "succeeded" }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailRequest {
    token: String,
    error: Option<String>,
    cause: Option<String>,
}

async fn fail(
    State(console): State<Console>,
    Extension(claims): Extension<Claims>,
    body: Result<Json<FailRequest>, JsonRejection>,
) -> Answer {
    let Json(request) = body?;
    bounded("token", &request.token, MAX_TASK_TOKEN_LEN)?;
    if let Some(error) = &request.error {
        bounded("error", error, MAX_ERROR_LEN)?;
    }
    if let Some(cause) = &request.cause {
        bounded("cause", cause, MAX_CAUSE_LEN)?;
    }
    tokens::fail(
        &console.ops,
        &request.token,
        request.error.as_deref(),
        request.cause.as_deref(),
    )
    .await?;
    tracing::info!(sub = %claims.sub, token = %fleet_ops::redact(&request.token), "ops console: task failed");
    answer(json!({ "answered": "failed" }))
}
