//! `POST /callbacks/{provider}`: verify, deduplicate, resume the waiting task. The
//! answers are listed in the crate documentation.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use contracts::callbacks::signature::{self, SignatureError};
use contracts::callbacks::{
    CallbackResult, PROVIDER_ERROR, WebhookAnswer, WebhookDelivery, WebhookOutcome,
};
use contracts::http::ErrorBody;
use serde_json::Value;
use time::OffsetDateTime;

use crate::Deps;
use crate::store::Claim;

/// The webhook router (also what the `callbacks-webhook` Lambda runs).
pub fn app(deps: Arc<Deps>) -> Router {
    Router::new()
        .route("/callbacks/{provider}", post(receive))
        .fallback(|| async { not_found() })
        .with_state(deps)
}

fn answer(status: StatusCode, body: impl serde::Serialize) -> Response {
    (status, axum::Json(body)).into_response()
}

fn outcome(outcome: WebhookOutcome) -> Response {
    answer(StatusCode::OK, WebhookAnswer { outcome })
}

fn error(status: StatusCode, message: &'static str) -> Response {
    answer(status, ErrorBody::new(message))
}

fn unauthorized(reason: &'static str) -> Response {
    error(StatusCode::UNAUTHORIZED, reason)
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not found")
}

fn unavailable() -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "unavailable")
}

/// How Step Functions answered.
enum Sent {
    Ok,
    /// The token is finished, expired or unknown to Step Functions.
    Gone,
    Failed(String),
}

async fn receive(
    State(deps): State<Arc<Deps>>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let secret = match deps.secrets.secret(&provider).await {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            tracing::warn!(provider = %provider, "webhook for a provider without a secret");
            return unauthorized("invalid signature");
        }
        Err(e) => {
            tracing::error!(provider = %provider, error = %e, "webhook secret unavailable");
            return unavailable();
        }
    };
    let Some(header) = headers.get(signature::HEADER).and_then(|v| v.to_str().ok()) else {
        tracing::warn!(provider = %provider, "webhook without a signature header");
        return unauthorized("invalid signature");
    };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    match signature::verify(secret.expose(), header, &body, now) {
        Ok(_) => {}
        Err(e @ SignatureError::Stale { .. }) => {
            tracing::warn!(provider = %provider, error = %e, "webhook refused");
            return unauthorized("stale timestamp");
        }
        Err(e) => {
            tracing::warn!(provider = %provider, error = %e, "webhook refused");
            return unauthorized("invalid signature");
        }
    }
    let delivery: WebhookDelivery = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(provider = %provider, error = %e, "webhook body is not a delivery");
            return error(StatusCode::BAD_REQUEST, "invalid body");
        }
    };
    let bounded = |s: &str| !s.is_empty() && s.len() <= 256;
    if !bounded(&delivery.delivery_id) || !bounded(&delivery.external_id) {
        return error(StatusCode::BAD_REQUEST, "invalid body");
    }
    match apply(&deps, &provider, &delivery).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(provider = %provider, delivery_id = %delivery.delivery_id, error = %e, "webhook failed");
            unavailable()
        }
    }
}

async fn apply(
    deps: &Deps,
    provider: &str,
    delivery: &WebhookDelivery,
) -> Result<Response, crate::StoreError> {
    let store = &deps.store;
    let id = &delivery.delivery_id;
    if store.delivery_done(provider, id).await? {
        tracing::info!(provider, delivery_id = %id, "duplicate delivery refused");
        return Ok(outcome(WebhookOutcome::Duplicate));
    }
    let Some(token) = store.token(provider, &delivery.external_id).await? else {
        tracing::info!(provider, delivery_id = %id, external_id = %delivery.external_id, "no task waits on this id");
        return Ok(not_found());
    };
    let now = OffsetDateTime::now_utc();
    let lease_until = now + deps.config.claim_lease;
    let expires = now + deps.config.delivery_retention;
    match store.claim(provider, id, lease_until, expires).await? {
        Claim::Claimed => {}
        Claim::Done => return Ok(outcome(WebhookOutcome::Duplicate)),
        Claim::Busy => {
            return Ok(error(StatusCode::CONFLICT, "in progress"));
        }
    }
    let heartbeat = delivery.status == "heartbeat";
    match send(deps, &token, delivery).await {
        Sent::Ok => {
            if !heartbeat {
                // The token is spent: a later delivery must wait for the next one.
                store
                    .delete_token(provider, &delivery.external_id, &token)
                    .await?;
            }
            store.complete(provider, id, expires).await?;
            tracing::info!(provider, delivery_id = %id, external_id = %delivery.external_id, status = %delivery.status, "delivery applied");
            Ok(outcome(WebhookOutcome::Accepted))
        }
        Sent::Gone => {
            store
                .delete_token(provider, &delivery.external_id, &token)
                .await?;
            store.release(provider, id).await?;
            tracing::info!(provider, delivery_id = %id, "the task behind this id is gone");
            Ok(not_found())
        }
        Sent::Failed(message) => {
            store.release(provider, id).await?;
            tracing::error!(provider, delivery_id = %id, error = %message, "Step Functions refused the delivery");
            Ok(unavailable())
        }
    }
}

async fn send(deps: &Deps, token: &str, delivery: &WebhookDelivery) -> Sent {
    use aws_sdk_sfn::error::DisplayErrorContext;
    let data = delivery.data.clone().unwrap_or(Value::Null);
    let outcome = match delivery.status.as_str() {
        "heartbeat" => deps
            .sfn
            .send_task_heartbeat()
            .task_token(token)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                (
                    gone(e.as_service_error().map(|e| {
                        e.is_task_does_not_exist() || e.is_invalid_token() || e.is_task_timed_out()
                    })),
                    DisplayErrorContext(&e).to_string(),
                )
            }),
        "error" => {
            let cause = data
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("the provider reported an error")
                .to_string();
            deps.sfn
                .send_task_failure()
                .task_token(token)
                .error(PROVIDER_ERROR)
                .cause(cause)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    (
                        gone(e.as_service_error().map(|e| {
                            e.is_task_does_not_exist()
                                || e.is_invalid_token()
                                || e.is_task_timed_out()
                        })),
                        DisplayErrorContext(&e).to_string(),
                    )
                })
        }
        _ => {
            let output = CallbackResult {
                external_id: delivery.external_id.clone(),
                status: delivery.status.clone(),
                delivery_id: delivery.delivery_id.clone(),
                data,
            };
            let output = serde_json::to_string(&output).unwrap_or_else(|_| "{}".to_string());
            deps.sfn
                .send_task_success()
                .task_token(token)
                .output(output)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    (
                        gone(e.as_service_error().map(|e| {
                            e.is_task_does_not_exist()
                                || e.is_invalid_token()
                                || e.is_task_timed_out()
                        })),
                        DisplayErrorContext(&e).to_string(),
                    )
                })
        }
    };
    match outcome {
        Ok(()) => Sent::Ok,
        Err((true, _)) => Sent::Gone,
        Err((false, message)) => Sent::Failed(message),
    }
}

fn gone(is_gone: Option<bool>) -> bool {
    is_gone.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    //! The refusals that happen before any AWS call, driven in-process. The ones that
    //! need the table and Step Functions (unknown id, replay) are end-to-end tests in
    //! `tests/it/callbacks.rs`.

    use axum::body::Body;
    use axum::http::Request;
    use serde_json::json;
    use tower::ServiceExt as _;

    use super::*;
    use crate::{Secret, SecretSource};

    const SECRET: &[u8] = b"whsec_unit";

    fn deps() -> Arc<Deps> {
        // Never called on these paths: the clients only need to exist.
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        Arc::new(Deps::new(
            &sdk,
            "unused",
            SecretSource::single("acme", Secret::new(SECRET)),
        ))
    }

    async fn check(provider: &str, header: Option<String>, body: &str, expected: (u16, Value)) {
        let mut request = Request::post(format!("/callbacks/{provider}"));
        if let Some(header) = header {
            request = request.header(signature::HEADER, header);
        }
        let response = app(deps())
            .oneshot(
                request
                    .body(Body::from(body.to_string()))
                    .unwrap_or_default(),
            )
            .await
            .unwrap_or_else(|e| match e {});
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert_eq!((status, body), expected);
    }

    fn now() -> i64 {
        OffsetDateTime::now_utc().unix_timestamp()
    }

    #[tokio::test]
    async fn refusals_before_any_lookup() {
        let body = r#"{"deliveryId":"d1","externalId":"x","status":"sent"}"#;
        let unauthorized = |e: &str| (401, json!({ "error": e }));
        check("acme", None, body, unauthorized("invalid signature")).await;
        check(
            "acme",
            Some("t=1,v1=zz".into()),
            body,
            unauthorized("invalid signature"),
        )
        .await;
        check(
            "acme",
            Some(signature::sign(b"wrong", now(), body.as_bytes())),
            body,
            unauthorized("invalid signature"),
        )
        .await;
        // An unknown provider looks exactly like a bad signature.
        check(
            "nobody",
            Some(signature::sign(SECRET, now(), body.as_bytes())),
            body,
            unauthorized("invalid signature"),
        )
        .await;
        check(
            "acme",
            Some(signature::sign(SECRET, now() - 301, body.as_bytes())),
            body,
            unauthorized("stale timestamp"),
        )
        .await;
        check(
            "acme",
            Some(signature::sign(SECRET, now() + 301, body.as_bytes())),
            body,
            unauthorized("stale timestamp"),
        )
        .await;
        let not_a_delivery = r#"{"hello":"world"}"#;
        check(
            "acme",
            Some(signature::sign(SECRET, now(), not_a_delivery.as_bytes())),
            not_a_delivery,
            (400, json!({"error": "invalid body"})),
        )
        .await;
    }
}
