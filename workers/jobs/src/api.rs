//! The HTTP API: `POST /jobs`, `GET /jobs/{id}`, `GET /jobs?status=`.
//!
//! Every route needs a bearer token; a job belongs to its token's `sub`, and another
//! caller's job answers 404 exactly like a job that does not exist.

use std::collections::HashMap;
use std::sync::Arc;

use auth::Claims;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use contracts::jobs::{JobAccepted, JobPage, JobRequested, JobStatus};
use contracts::{Envelope, JobEvent, JobId, Received};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::store::{Claim, Created, Cursor, NewJob};
use crate::{Deps, PRODUCER};

/// The header naming a client's retry-safe request.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 100;
const MAX_KEY_LEN: usize = 255;

/// The jobs HTTP API. On AWS it runs under `lambda_http::run`; tests and the local host
/// drive it directly.
pub fn app(deps: Arc<Deps>) -> Router {
    Router::new()
        .route("/jobs", post(create_job).get(list_jobs))
        .route("/jobs/{id}", get(get_job))
        .fallback(|| async { ApiError::NotFound })
        .with_state(deps)
}

/// The verified caller.
struct Caller(Claims);

impl FromRequestParts<Arc<Deps>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, deps: &Arc<Deps>) -> Result<Self, ApiError> {
        let Some(verifier) = &deps.verifier else {
            tracing::error!(
                "the API has no token verifier: check JWT_ISSUER, JWT_AUDIENCE, JWKS_URL"
            );
            return Err(ApiError::Internal);
        };
        let header = match parts.headers.get(header::AUTHORIZATION) {
            None => None,
            Some(value) => Some(value.to_str().map_err(|_| ApiError::Unauthorized)?),
        };
        match verifier.verify_header(header).await {
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
    State(deps): State<Arc<Deps>>,
    Caller(claims): Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (model, params) = parse_body(&body)?;
    let key = idempotency_key(&headers)?;
    let Some(publisher) = &deps.publisher else {
        tracing::error!("the API has no publisher: check BUS");
        return Err(ApiError::Internal);
    };
    let store = deps.store();
    let sub = claims.sub;
    let job_id = JobId::generate();

    if let Some(key) = &key {
        match store
            .claim_key(&sub, key, &job_id)
            .await
            .map_err(unavailable)?
        {
            Claim::Claimed => {}
            Claim::Taken(existing) => {
                tracing::info!(job_id = %existing, requested_by = %sub, "idempotent retry");
                return Ok(accepted(&existing));
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
            if let Some(key) = &key
                && let Err(e) = store.release_key(&sub, key).await
            {
                tracing::warn!(job_id = %job_id, error = %e, "could not release the idempotency key");
            }
            return Err(unavailable(e));
        }
    };
    if created == Created::AlreadyThere {
        // A fresh v7 id never exists already; if it does, something is badly wrong.
        tracing::error!(job_id = %job_id, "a freshly generated job id already has a row");
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
        // handler writes the row back.
        if let Err(e) = store.delete(&job_id).await {
            tracing::warn!(job_id = %job_id, error = %e, "could not delete the unpublished job");
        }
        if let Some(key) = &key
            && let Err(e) = store.release_key(&sub, key).await
        {
            tracing::warn!(job_id = %job_id, error = %e, "could not release the idempotency key");
        }
        return Err(ApiError::Unavailable);
    }
    tracing::info!(job_id = %job_id, requested_by = %sub, "job requested");
    Ok(accepted(&job_id))
}

async fn get_job(
    State(deps): State<Arc<Deps>>,
    Caller(claims): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job_id = JobId::parse(&id).map_err(|_| ApiError::NotFound)?;
    match deps.store().get(&job_id).await.map_err(unavailable)? {
        Some(job) if job.requested_by == claims.sub => Ok(Json(job.view()).into_response()),
        _ => Err(ApiError::NotFound),
    }
}

async fn list_jobs(
    State(deps): State<Arc<Deps>>,
    Caller(claims): Caller,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::BadRequest(format!("invalid request: query string: {e}")))?;
    let status = match query.get("status") {
        Some(s) => Some(s.parse::<JobStatus>().map_err(|e| ApiError::invalid(&e))?),
        None => None,
    };
    let limit = match query.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                ApiError::field(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_LIMIT}"),
                )
            })?,
        None => DEFAULT_LIMIT,
    };
    let cursor = match query.get("nextToken") {
        Some(token) => Some(
            Cursor::decode(token)
                .ok_or_else(|| ApiError::field("nextToken", "is not a token this API returned"))?,
        ),
        None => None,
    };
    let (jobs, next) = deps
        .store()
        .list(&claims.sub, status, limit, cursor.as_ref())
        .await
        .map_err(unavailable)?;
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
    let invalid = || {
        ApiError::BadRequest(format!(
            "invalid request: header `Idempotency-Key`: use 1 to {MAX_KEY_LEN} printable ASCII characters"
        ))
    };
    let key = value.to_str().map_err(|_| invalid())?.trim();
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key.chars().all(|c| c.is_ascii_graphic() || c == ' ');
    if ok {
        Ok(Some(key.to_string()))
    } else {
        Err(invalid())
    }
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

/// A dependency (DynamoDB) failed: logged in full, answered as 503.
fn unavailable(error: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %error, "request failed");
    ApiError::Unavailable
}
