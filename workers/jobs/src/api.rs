//! The HTTP API: `POST /jobs`, `GET /jobs/{id}`, `GET /jobs/{id}/result`,
//! `POST /jobs/{id}/cancel` ([`crate::cancel`]), `GET /jobs?status=`, `GET /models`.
//!
//! Every route needs a bearer token; a job belongs to its token's `sub`, and another
//! caller's job answers 404 exactly like a job that does not exist (its result too).
//!
//! The params of a built-in model (`contracts::models`) are checked before anything is
//! written: `400` naming the field and the fix. Other model names are accepted: they
//! may be `exec` models of the workers' deployment, which the workers check.
//!
//! Every input is bounded before anything is written: the body ([`MAX_BODY_BYTES`]) and
//! its `params` ([`contracts::jobs::MAX_PARAMS_BYTES`]) answer `413`; the
//! `Idempotency-Key` ([`contracts::jobs::MAX_IDEMPOTENCY_KEY_LEN`]), the token's `sub`
//! ([`contracts::jobs::MAX_REQUESTER_LEN`]), the query string ([`MAX_QUERY_BYTES`]),
//! `nextToken` ([`MAX_NEXT_TOKEN_LEN`]), `limit` ([`MAX_PAGE_SIZE`]) and the job id in
//! the path ([`contracts::jobs::MAX_JOB_ID_LEN`]) answer `400`. Every refusal names the
//! field, and one for a limit names the limit too (`field` and `limit` in the body).

use std::collections::HashMap;
use std::sync::Arc;

use auth::Claims;
use aws_sdk_s3::presigning::PresigningConfig;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use contracts::jobs::{
    JobAccepted, JobPage, JobRequested, JobStatus, MAX_IDEMPOTENCY_KEY_LEN, MAX_PARAMS_BYTES,
    MAX_REQUESTER_LEN, check_idempotency_key, params_bytes,
};
use contracts::{Envelope, JobEvent, JobId, Received};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::store::{Claim, ClaimState, Created, Cursor, JobRecord, NewJob, StoreError};
use crate::{ApiDeps, PRODUCER};

/// The header naming a client's retry-safe request.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The largest `POST /jobs` body, in bytes: room for [`MAX_PARAMS_BYTES`] of params
/// written with some whitespace, and the model. A larger body answers `413` unread.
pub const MAX_BODY_BYTES: usize = 128 * 1024;
/// The longest query string of `GET /jobs`, in bytes (`400` beyond).
pub const MAX_QUERY_BYTES: usize = 1024;
/// The longest `nextToken`, in characters: the tokens this API returns are about 170.
pub const MAX_NEXT_TOKEN_LEN: usize = 512;
/// The page size of `GET /jobs` without `limit`.
pub const DEFAULT_PAGE_SIZE: usize = 20;
/// The largest `limit` of `GET /jobs`.
pub const MAX_PAGE_SIZE: usize = 100;
/// Codes of a publish that fails the same way every time: a request the bus refuses as
/// malformed, too large or not allowed. Every input is bounded before publishing, so one
/// of these is the service's fault (500), not the client's and not transient.
const PERMANENT_PUBLISH_CODES: [&str; 6] = [
    "EntryTooLarge",
    "ValidationException",
    "InvalidArgument",
    "MalformedDetail",
    "AccessDeniedException",
    "NotAuthorizedForSourceException",
];

/// The jobs HTTP API. On AWS it runs under `lambda_http::run`; tests and the local host
/// drive it directly.
pub fn app(deps: Arc<ApiDeps>) -> Router {
    Router::new()
        .route("/jobs", post(create_job).get(list_jobs))
        .route("/jobs/{id}", get(get_job))
        .route("/jobs/{id}/result", get(get_result))
        .route("/jobs/{id}/cancel", post(crate::cancel::cancel_job))
        .route("/models", get(list_models))
        .fallback(|| async { ApiError::NotFound })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(deps)
}

/// The verified caller.
pub(crate) struct Caller(pub(crate) Claims);

impl FromRequestParts<Arc<ApiDeps>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, deps: &Arc<ApiDeps>) -> Result<Self, ApiError> {
        let verifier = &deps.verifier;
        let header = match parts.headers.get(header::AUTHORIZATION) {
            None => None,
            Some(value) => Some(value.to_str().map_err(|_| ApiError::Unauthorized)?),
        };
        match verifier.verify_header(header).await {
            // The subject keys the caller's items in the table and travels in every
            // JobRequested: bounded like the events bound `requestedBy`.
            Ok(claims) if claims.sub.len() > MAX_REQUESTER_LEN => Err(ApiError::over_limit(
                StatusCode::BAD_REQUEST,
                "sub",
                "MAX_REQUESTER_LEN",
                MAX_REQUESTER_LEN,
                claims.sub.len(),
                "bytes (the token's subject)",
            )),
            Ok(claims) => Ok(Caller(claims)),
            Err(e) if e.is_server_error() => {
                tracing::error!(error = %e, "cannot verify tokens");
                Err(ApiError::Unavailable)
            }
            Err(e) => {
                tracing::info!(reason = %e, "request refused");
                Err(ApiError::Unauthorized)
            }
        }
    }
}

async fn create_job(
    State(deps): State<Arc<ApiDeps>>,
    Caller(claims): Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // Everything the client sent is checked before anything is written.
    let body = body.map_err(|e| body_refused(&e, &headers))?;
    let (model, params) = parse_body(&body)?;
    check_params(&model, &params)?;
    let key = idempotency_key(&headers)?;
    let publisher = &deps.publisher;
    let store = deps.jobs.store();
    let sub = claims.sub;
    let mut job_id = JobId::generate();
    // A request with this key died part-way (its claim's lease passed): this one carries
    // it on under its job id, whose row it may have written already.
    let mut resumed = false;

    if let Some(key) = &key {
        match store
            .claim_key(&sub, key, &job_id, ClaimState::Pending)
            .await
            .map_err(store_failed)?
        {
            Claim::Claimed => {}
            Claim::Resumed(previous) => {
                tracing::info!(job_id = %previous, requested_by = %sub, "resuming a request that died before it was published");
                job_id = previous;
                resumed = true;
            }
            Claim::Taken(existing) => {
                tracing::info!(job_id = %existing, requested_by = %sub, "idempotent retry");
                return Ok(accepted(&existing));
            }
            // The request holding the key may still fail and release it: its job id is
            // not an answer until it is published.
            Claim::InProgress => {
                tracing::info!(requested_by = %sub, "idempotent retry while the first request is in progress");
                return Err(ApiError::InProgress);
            }
        }
    }
    let created = store
        .create(&NewJob {
            job_id: job_id.clone(),
            requested_by: sub.clone(),
            model: model.clone(),
            params: params.clone(),
            idempotency_key: key.clone(),
            created_at: OffsetDateTime::now_utc(),
        })
        .await;
    let created = match created {
        Ok(created) => created,
        Err(e) => {
            // The key must not keep pointing at a job that was never recorded.
            release(&deps, &sub, key.as_deref(), &job_id).await;
            return Err(store_failed(e));
        }
    };
    if created == Created::AlreadyThere && !resumed {
        // A fresh v7 id never exists already; if it does, something is badly wrong.
        tracing::error!(job_id = %job_id, "a freshly generated job id already has a row");
        release(&deps, &sub, key.as_deref(), &job_id).await;
        return Err(ApiError::Internal);
    }

    let event = JobEvent::Requested(JobRequested {
        model,
        params,
        job_id: Some(job_id.clone()),
        idempotency_key: key.clone(),
        requested_by: Some(sub.clone()),
    });
    if let Err(e) = publisher.publish(&Envelope::new(event, PRODUCER)).await {
        tracing::error!(job_id = %job_id, error = %e, "JobRequested not published; undoing the job");
        // Undo so that the job does not sit QUEUED forever and a retry with the same key
        // can try again. If the event did get through after all, the JobRequested
        // handler writes the row back and commits the claim (which a release then leaves).
        if let Err(e) = store.delete(&job_id).await {
            tracing::warn!(job_id = %job_id, error = %e, "could not delete the unpublished job");
        }
        release(&deps, &sub, key.as_deref(), &job_id).await;
        return Err(publish_failed(&e));
    }
    if let Some(key) = &key
        && let Err(e) = store.commit_key(&sub, key, &job_id).await
    {
        // The job exists; the JobRequested handler commits the claim as well, and until
        // one of them does, retries are told to wait.
        tracing::warn!(job_id = %job_id, error = %e, "could not commit the idempotency key");
    }
    tracing::info!(job_id = %job_id, requested_by = %sub, "job requested");
    Ok(accepted(&job_id))
}

/// Gives back `requester`'s claim of `key` for `job_id` after a failure, logging a
/// failure to (the claim's lease then frees it).
async fn release(deps: &ApiDeps, requester: &str, key: Option<&str>, job_id: &JobId) {
    if let Some(key) = key
        && let Err(e) = deps.jobs.store().release_key(requester, key, job_id).await
    {
        tracing::warn!(job_id = %job_id, error = %e, "could not release the idempotency key");
    }
}

async fn get_job(
    State(deps): State<Arc<ApiDeps>>,
    Caller(claims): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = owned_job(&deps, &claims, &id).await?;
    Ok(Json(job.view()).into_response())
}

/// The caller's job `id`; another caller's job is [`ApiError::NotFound`], as one that
/// does not exist.
pub(crate) async fn owned_job(
    deps: &ApiDeps,
    claims: &Claims,
    id: &str,
) -> Result<JobRecord, ApiError> {
    let job_id = JobId::parse(id).map_err(|e| match e {
        contracts::ContractError::Invalid { message, .. } => ApiError::field("id", message),
        other => ApiError::field("id", other),
    })?;
    match deps.jobs.store().get(&job_id).await.map_err(store_failed)? {
        Some(job) if job.requested_by == claims.sub => Ok(job),
        _ => Err(ApiError::NotFound),
    }
}

/// `GET /jobs/{id}/result`: `303 See Other` to a presigned `GetObject` link of the result
/// that works for [`crate::RESULT_URL_TTL`]; `409` while the job has none.
async fn get_result(
    State(deps): State<Arc<ApiDeps>>,
    Caller(claims): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = owned_job(&deps, &claims, &id).await?;
    let location = match (job.status, &job.result) {
        (JobStatus::Succeeded, Some(result)) => &result.location,
        (JobStatus::Failed, _) => {
            return Err(ApiError::NoResult(format!(
                "job {} failed, so it has no result: see its `error` in GET /jobs/{}",
                job.job_id, job.job_id
            )));
        }
        (JobStatus::Succeeded, None) => {
            tracing::error!(job_id = %job.job_id, "a succeeded job has no result location");
            return Err(ApiError::Internal);
        }
        (status, _) => {
            return Err(ApiError::NoResult(format!(
                "job {} is {}: its result exists once it has SUCCEEDED; poll GET /jobs/{} until then",
                job.job_id,
                status.as_str(),
                job.job_id
            )));
        }
    };
    let ttl = deps.results.url_ttl.min(crate::RESULT_URL_TTL);
    let config = PresigningConfig::expires_in(ttl).map_err(|e| {
        tracing::error!(error = %e, "invalid presigning configuration");
        ApiError::Internal
    })?;
    let presigned = deps
        .results
        .s3
        .get_object()
        .bucket(&location.bucket)
        .key(&location.key)
        .presigned(config)
        .await
        .map_err(|e| {
            tracing::error!(job_id = %job.job_id, error = %e, "cannot presign the result");
            ApiError::Internal
        })?;
    let url = HeaderValue::from_str(presigned.uri()).map_err(|_| {
        tracing::error!(job_id = %job.job_id, "the presigned link is not a header value");
        ApiError::Internal
    })?;
    tracing::info!(job_id = %job.job_id, requested_by = %claims.sub, expires_in_secs = ttl.as_secs(), "result link handed out");
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, url),
            // The link is a credential for a few minutes: no cache keeps it.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response())
}

/// `GET /models`: the built-in models' parameters and pictures.
async fn list_models(Caller(_): Caller) -> Response {
    Json(contracts::models::catalog()).into_response()
}

/// The params of a built-in model, checked as the worker will check them.
fn check_params(model: &str, params: &Map<String, Value>) -> Result<(), ApiError> {
    // A clone of at most MAX_PARAMS_BYTES, already bounded by `parse_body`.
    match contracts::models::check(model, &Value::Object(params.clone())) {
        Some(Err(e)) => Err(ApiError::param(e)),
        Some(Ok(())) | None => Ok(()),
    }
}

async fn list_jobs(
    State(deps): State<Arc<ApiDeps>>,
    Caller(claims): Caller,
    uri: Uri,
) -> Result<Response, ApiError> {
    let length = uri.query().map_or(0, str::len);
    if length > MAX_QUERY_BYTES {
        return Err(ApiError::over_limit(
            StatusCode::BAD_REQUEST,
            "(query string)",
            "MAX_QUERY_BYTES",
            MAX_QUERY_BYTES,
            length,
            "bytes",
        ));
    }
    let Query(query) = Query::<HashMap<String, String>>::try_from_uri(&uri)
        .map_err(|e| ApiError::BadRequest(format!("invalid request: query string: {e}")))?;
    let status = match query.get("status") {
        Some(s) => Some(s.parse::<JobStatus>().map_err(|e| ApiError::invalid(&e))?),
        None => None,
    };
    let limit = match query.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_PAGE_SIZE).contains(l))
            .ok_or_else(|| {
                ApiError::field(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_PAGE_SIZE} (MAX_PAGE_SIZE)"),
                )
            })?,
        None => DEFAULT_PAGE_SIZE,
    };
    let cursor = match query.get("nextToken") {
        Some(token) if token.len() > MAX_NEXT_TOKEN_LEN => {
            return Err(ApiError::over_limit(
                StatusCode::BAD_REQUEST,
                "nextToken",
                "MAX_NEXT_TOKEN_LEN",
                MAX_NEXT_TOKEN_LEN,
                token.len(),
                "characters",
            ));
        }
        Some(token) => Some(
            Cursor::decode(token, MAX_NEXT_TOKEN_LEN).ok_or_else(|| {
                ApiError::field(
                    "nextToken",
                    "is not a token this API returned: pass the `nextToken` of the previous page unchanged",
                )
            })?,
        ),
        None => None,
    };
    let (jobs, next) = deps
        .jobs
        .store()
        .list(&claims.sub, status, limit, cursor.as_ref())
        .await
        .map_err(store_failed)?;
    let page = JobPage {
        jobs: jobs.iter().map(|j| j.view()).collect(),
        next_token: next.map(|next| next.encode()),
    };
    Ok(Json(page).into_response())
}

/// The model and params of a `POST /jobs` body, checked by the `JobRequested` contract
/// so that errors name the field exactly as the event would.
fn parse_body(body: &[u8]) -> Result<(String, Map<String, Value>), ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid request: the body is not JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(ApiError::field(
            "(body)",
            "must be a JSON object like {\"model\": \"sir\", \"params\": {...}}",
        ));
    };
    // The size bound answers 413, so it is checked before the contract's own check
    // (which says the same as a 400).
    if let Some(Value::Object(params)) = fields.get("params") {
        let size = params_bytes(params);
        if size > MAX_PARAMS_BYTES {
            return Err(ApiError::over_limit(
                StatusCode::PAYLOAD_TOO_LARGE,
                "params",
                "MAX_PARAMS_BYTES",
                MAX_PARAMS_BYTES,
                size,
                "bytes as compact JSON",
            ));
        }
    }
    // Only these two come from the client; the job id, requester and key are the API's.
    let mut detail = Map::new();
    for field in ["model", "params"] {
        if let Some(v) = fields.get(field) {
            detail.insert(field.to_string(), v.clone());
        }
    }
    let received = Received {
        id: "http",
        source: PRODUCER,
        time: None,
    };
    let envelope = JobEvent::decode("JobRequested", &Value::Object(detail), &received)
        .map_err(|e| ApiError::invalid(&e))?;
    match envelope.event {
        JobEvent::Requested(r) => Ok((r.model, r.params)),
        _ => Err(ApiError::Internal),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let invalid = |message: String| {
        ApiError::BadRequest(format!(
            "invalid request: field `Idempotency-Key` (header): {message}"
        ))
    };
    let key = value
        .to_str()
        .map_err(|_| {
            invalid(format!(
                "use 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters"
            ))
        })?
        .trim();
    if key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(ApiError::over_limit(
            StatusCode::BAD_REQUEST,
            "Idempotency-Key",
            "MAX_IDEMPOTENCY_KEY_LEN",
            MAX_IDEMPOTENCY_KEY_LEN,
            key.len(),
            "characters",
        ));
    }
    check_idempotency_key(key).map_err(invalid)?;
    Ok(Some(key.to_string()))
}

/// Why the body could not be read: over [`MAX_BODY_BYTES`] (413), or a broken upload.
fn body_refused(rejection: &BytesRejection, headers: &HeaderMap) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        return match declared {
            Some(length) => ApiError::over_limit(
                StatusCode::PAYLOAD_TOO_LARGE,
                "(body)",
                "MAX_BODY_BYTES",
                MAX_BODY_BYTES,
                length,
                "bytes",
            ),
            None => ApiError::OverLimit {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                field: "(body)".to_string(),
                limit: MAX_BODY_BYTES,
                message: format!(
                    "invalid request: field `(body)`: is more than the limit of {MAX_BODY_BYTES} bytes (MAX_BODY_BYTES)"
                ),
            },
        };
    }
    ApiError::BadRequest(format!(
        "invalid request: field `(body)`: could not be read: {}",
        rejection.body_text()
    ))
}

fn accepted(job_id: &JobId) -> Response {
    let mut response = (
        StatusCode::ACCEPTED,
        Json(JobAccepted {
            job_id: job_id.clone(),
        }),
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/jobs/{job_id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// The table failed: logged in full, answered as 503 if a retry can help, else 500.
pub(crate) fn store_failed(error: StoreError) -> ApiError {
    tracing::error!(error = %error, transient = error.is_transient(), "request failed");
    if error.is_transient() {
        ApiError::Unavailable
    } else {
        ApiError::Internal
    }
}

/// The bus refused the job's event: 503 unless it always will (see
/// [`PERMANENT_PUBLISH_CODES`]).
pub(crate) fn publish_failed(error: &bus::PublishError) -> ApiError {
    let bus::PublishError::Rejected { code, .. } = error;
    if PERMANENT_PUBLISH_CODES.contains(&code.as_str()) {
        ApiError::Internal
    } else {
        ApiError::Unavailable
    }
}

#[cfg(test)]
mod tests {
    // Tests may panic on what they did not expect: that is how they fail.
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    /// Any JSON value, a few levels deep (integers only: every one round-trips exactly).
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".{0,8}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn any_params() -> impl Strategy<Value = Map<String, Value>> {
        prop::collection::btree_map("[a-zA-Z]{1,8}", any_json(), 0..6)
            .prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        #[test]
        fn no_bytes_panic_the_body_parser(body in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_body(&body);
        }

        #[test]
        fn no_json_panics_the_body_parser(body in any_json()) {
            let _ = parse_body(body.to_string().as_bytes());
            let _ = parse_body(json!({"model": body.clone(), "params": body}).to_string().as_bytes());
        }

        #[test]
        fn valid_bodies_round_trip(
            model in "[a-z0-9_-]{1,64}",
            params in any_params(),
            extra in prop::option::of(any_json()),
        ) {
            let mut body = json!({"model": model, "params": params});
            if let Some(extra) = extra {
                // Fields a client may not set are dropped, not refused.
                body["jobId"] = extra;
            }
            let (got_model, got_params) = parse_body(body.to_string().as_bytes()).unwrap();
            prop_assert_eq!(got_model, model);
            prop_assert_eq!(got_params, params);
        }

        #[test]
        fn invalid_bodies_are_400s_or_413s(body in any_json()) {
            if let Err(e) = parse_body(body.to_string().as_bytes()) {
                let status = e.status();
                prop_assert!(
                    status == StatusCode::BAD_REQUEST || status == StatusCode::PAYLOAD_TOO_LARGE,
                    "{status}: {}", e.message()
                );
                prop_assert!(e.message().starts_with("invalid request: "), "{}", e.message());
            }
        }
    }

    #[test]
    fn params_over_the_limit_are_413_naming_the_field_and_the_limit() {
        let body = json!({"model": "sir", "params": {"x": "a".repeat(MAX_PARAMS_BYTES - 7)}});
        let error = parse_body(body.to_string().as_bytes()).unwrap_err();
        assert_eq!(error.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let ApiError::OverLimit { field, limit, .. } = &error else {
            panic!("expected OverLimit, got {error:?}");
        };
        assert_eq!((field.as_str(), *limit), ("params", MAX_PARAMS_BYTES));
        let body = json!({"model": "sir", "params": {"x": "a".repeat(MAX_PARAMS_BYTES - 8)}});
        assert!(parse_body(body.to_string().as_bytes()).is_ok());
    }

    #[test]
    fn only_transient_failures_are_503() {
        let publish = |code: &str| {
            publish_failed(&bus::PublishError::Rejected {
                code: code.to_string(),
                message: String::new(),
            })
        };
        assert_eq!(publish("ThrottlingException"), ApiError::Unavailable);
        assert_eq!(publish("CallFailed"), ApiError::Unavailable);
        assert_eq!(publish("EntryTooLarge"), ApiError::Internal);
        assert_eq!(publish("ValidationException"), ApiError::Internal);
        let store = |transient| {
            store_failed(StoreError::Dynamo {
                operation: "PutItem",
                table: "t".to_string(),
                message: String::new(),
                transient,
            })
        };
        assert_eq!(store(true), ApiError::Unavailable);
        assert_eq!(store(false), ApiError::Internal);
        let corrupt = store_failed(StoreError::Corrupt {
            job_id: "j".to_string(),
            attribute: "status",
            problem: String::new(),
        });
        assert_eq!(corrupt, ApiError::Internal);
    }
}
