//! `POST /callbacks/{provider}`: verify, deduplicate, resume the waiting task. The
//! answers, the order of the checks and the limits are in the crate documentation.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use contracts::callbacks::signature::{self, SignatureError};
use contracts::callbacks::{
    CallbackResult, PROVIDER_ERROR, WebhookAnswer, WebhookDelivery, WebhookOutcome,
};
use contracts::http::ErrorBody;
use futures::StreamExt as _;
use serde_json::Value;
use time::OffsetDateTime;

use crate::store::{Claim, Delivery};
use crate::{
    Deps, MAX_DELIVERY_ID_LEN, MAX_EXTERNAL_ID_LEN, MAX_FAILURE_CAUSE_CHARS, MAX_STATUS_LEN,
    MAX_TASK_OUTPUT_BYTES, bounded_id,
};

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

fn error(status: StatusCode, message: impl Into<String>) -> Response {
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

fn too_large(what: &str, limit: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("{what} too large: at most {limit} bytes"),
    )
}

fn invalid_body(message: String) -> Response {
    error(StatusCode::BAD_REQUEST, format!("invalid body: {message}"))
}

/// What a delivery asks of Step Functions.
enum Action {
    Heartbeat,
    Failure { cause: String },
    Success { output: String },
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
    body: Body,
) -> Response {
    // The provider first: a name not configured costs no secret look-up.
    let Some(settings) = deps.config.providers.get(&provider).copied() else {
        tracing::warn!(provider = %provider.escape_debug(), "webhook for an unknown provider");
        return unauthorized("invalid signature");
    };
    // The header's shape next: a malformed one costs no MAC and no body.
    let Some(header) = headers.get(signature::HEADER).and_then(|v| v.to_str().ok()) else {
        tracing::warn!(provider = %provider, "webhook without a signature header");
        return unauthorized("invalid signature");
    };
    if let Err(e) = signature::Header::parse(header) {
        tracing::warn!(provider = %provider, error = %e, "webhook refused");
        return unauthorized("invalid signature");
    }
    let limit = settings.max_body_bytes;
    let body = match read_capped(&headers, body, limit).await {
        Ok(body) => body,
        Err(Capped::TooLarge) => {
            tracing::warn!(provider = %provider, limit, "webhook body too large");
            return too_large("body", limit);
        }
        Err(Capped::Broken(e)) => {
            tracing::warn!(provider = %provider, error = %e, "webhook body unreadable");
            return invalid_body("unreadable".to_string());
        }
    };
    let secret = match deps.secrets.secret(&provider).await {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            tracing::error!(provider = %provider, "webhook for a configured provider without a secret");
            return unavailable();
        }
        Err(e) => {
            tracing::error!(provider = %provider, error = %e, "webhook secret unavailable");
            return unavailable();
        }
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
            return invalid_body("not a delivery: expected `deliveryId`, `externalId`, `status` and an optional `data`".to_string());
        }
    };
    if let Err(message) = check_fields(&delivery) {
        tracing::warn!(provider = %provider, error = %message, "webhook body out of bounds");
        return invalid_body(message);
    }
    let Some(action) = action(&delivery) else {
        tracing::warn!(provider = %provider, delivery_id = %delivery.delivery_id, "webhook result too large for a task output");
        return too_large("the task's output", MAX_TASK_OUTPUT_BYTES);
    };
    match apply(&deps, &provider, &delivery, &action).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(provider = %provider, delivery_id = %delivery.delivery_id, error = %e, "webhook failed");
            unavailable()
        }
    }
}

enum Capped {
    TooLarge,
    Broken(axum::Error),
}

/// The body, read no further than `limit` bytes; a declared `Content-Length` over it is
/// refused before a byte is read.
async fn read_capped(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, Capped> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| usize::try_from(len).map_or(true, |len| len > limit)) {
        return Err(Capped::TooLarge);
    }
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(Capped::Broken)?;
        if chunk.len() > limit.saturating_sub(bytes.len()) {
            return Err(Capped::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The delivery's fields within their bounds, or which is not and what it must be.
fn check_fields(delivery: &WebhookDelivery) -> Result<(), String> {
    let fields = [
        ("deliveryId", &delivery.delivery_id, MAX_DELIVERY_ID_LEN),
        ("externalId", &delivery.external_id, MAX_EXTERNAL_ID_LEN),
        ("status", &delivery.status, MAX_STATUS_LEN),
    ];
    for (field, value, max) in fields {
        if !bounded_id(value, max) {
            return Err(format!(
                "`{field}` must be 1 to {max} bytes without control characters"
            ));
        }
    }
    Ok(())
}

/// What to send for `delivery`; `None` when its result would exceed a task's output.
fn action(delivery: &WebhookDelivery) -> Option<Action> {
    let data = delivery.data.clone().unwrap_or(Value::Null);
    match delivery.status.as_str() {
        "heartbeat" => Some(Action::Heartbeat),
        "error" => {
            let reason = data
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("the provider reported an error");
            // Step Functions refuses a longer cause; the start of it says enough.
            let cause = reason.chars().take(MAX_FAILURE_CAUSE_CHARS).collect();
            Some(Action::Failure { cause })
        }
        _ => {
            let output = CallbackResult {
                external_id: delivery.external_id.clone(),
                status: delivery.status.clone(),
                delivery_id: delivery.delivery_id.clone(),
                data,
            };
            let output = serde_json::to_string(&output).unwrap_or_else(|_| "{}".to_string());
            (output.len() <= MAX_TASK_OUTPUT_BYTES).then_some(Action::Success { output })
        }
    }
}

/// Applies a verified delivery; see "A delivery is bound to one wait" in the crate
/// documentation.
async fn apply(
    deps: &Deps,
    provider: &str,
    delivery: &WebhookDelivery,
    action: &Action,
) -> Result<Response, crate::StoreError> {
    let store = &deps.store;
    let id = &delivery.delivery_id;
    let external_id = &delivery.external_id;
    let now = OffsetDateTime::now_utc();
    // The config's durations are the operator's, not input; an absurd one saturates.
    let lease_until = now
        .checked_add(
            deps.config
                .claim_lease
                .try_into()
                .unwrap_or(time::Duration::MAX),
        )
        .unwrap_or(now);
    let expires = now
        .checked_add(
            deps.config
                .delivery_retention
                .try_into()
                .unwrap_or(time::Duration::MAX),
        )
        .unwrap_or(now);
    let (token, retaken) = match store.delivery(provider, id).await? {
        Some(Delivery::Done) => {
            tracing::info!(provider, delivery_id = %id, "duplicate delivery refused");
            return Ok(outcome(WebhookOutcome::Duplicate));
        }
        Some(Delivery::Claimed {
            lease_until: held, ..
        }) if held >= now.unix_timestamp() => {
            return Ok(error(StatusCode::CONFLICT, "in progress"));
        }
        Some(Delivery::Claimed { token: None, .. }) => {
            // An abandoned claim from before claims named their wait: which wait it was
            // for is unknown, so it reaches none.
            store.complete(provider, id, expires).await?;
            tracing::warn!(provider, delivery_id = %id, "abandoned unbound claim closed");
            return Ok(outcome(WebhookOutcome::Duplicate));
        }
        Some(Delivery::Claimed {
            token: Some(token), ..
        }) => {
            if !store
                .retake(provider, id, &token, lease_until, expires)
                .await?
            {
                return Ok(error(StatusCode::CONFLICT, "in progress"));
            }
            tracing::info!(provider, delivery_id = %id, "abandoned claim retaken, bound to its wait");
            (token, true)
        }
        None => {
            let Some(token) = store.token(provider, external_id).await? else {
                tracing::info!(provider, delivery_id = %id, external_id = %external_id, "no task waits on this id");
                return Ok(not_found());
            };
            match store
                .claim(provider, id, &token, lease_until, expires)
                .await?
            {
                Claim::Claimed => (token, false),
                Claim::Done => return Ok(outcome(WebhookOutcome::Duplicate)),
                Claim::Busy => return Ok(error(StatusCode::CONFLICT, "in progress")),
            }
        }
    };
    match send(deps, &token, action).await {
        Sent::Ok => {
            store.complete(provider, id, expires).await?;
            if !matches!(action, Action::Heartbeat) {
                // The token is spent: a later delivery must wait for the next one. A
                // spent token left behind is harmless (Step Functions refuses it, and the
                // delivery that finds it deletes it), so this answer stands either way.
                if let Err(e) = store.delete_token(provider, external_id, &token).await {
                    tracing::warn!(provider, delivery_id = %id, error = %e, "spent token not deleted");
                }
            }
            tracing::info!(provider, delivery_id = %id, external_id = %external_id, status = %delivery.status, "delivery applied");
            Ok(outcome(WebhookOutcome::Accepted))
        }
        Sent::Gone if retaken => {
            // The earlier attempt may have applied it, or the wait timed out: either
            // way this delivery's wait is over, and it must not reach the next one.
            store.complete(provider, id, expires).await?;
            tracing::info!(provider, delivery_id = %id, "the wait this delivery was bound to has ended");
            Ok(outcome(WebhookOutcome::Duplicate))
        }
        Sent::Gone => {
            // Refused outright: nothing was applied, so the retry may find the next wait.
            // The claim is given back first: should the token's delete fail after it,
            // the retry finds the spent token, is refused again and ends here again;
            // the other way round, a failed release would leave the claim bound to a
            // finished wait, and the delivery would be dropped.
            store.release(provider, id, &token).await?;
            store.delete_token(provider, external_id, &token).await?;
            tracing::info!(provider, delivery_id = %id, "the task behind this id is gone");
            Ok(not_found())
        }
        Sent::Failed(message) => {
            // Maybe applied (a timeout after Step Functions took it): the claim stays
            // bound to this token, and the retry may try that token again at once.
            store.end_lease(provider, id, &token, expires).await?;
            tracing::error!(provider, delivery_id = %id, error = %message, "Step Functions refused the delivery");
            Ok(unavailable())
        }
    }
}

async fn send(deps: &Deps, token: &str, action: &Action) -> Sent {
    use aws_sdk_sfn::error::DisplayErrorContext;
    let outcome = match action {
        Action::Heartbeat => deps
            .sfn
            .send_task_heartbeat()
            .task_token(token)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                let gone = e.as_service_error().is_some_and(|e| {
                    e.is_task_does_not_exist() || e.is_invalid_token() || e.is_task_timed_out()
                });
                (gone, DisplayErrorContext(&e).to_string())
            }),
        Action::Failure { cause } => deps
            .sfn
            .send_task_failure()
            .task_token(token)
            .error(PROVIDER_ERROR)
            .cause(cause)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                let gone = e.as_service_error().is_some_and(|e| {
                    e.is_task_does_not_exist() || e.is_invalid_token() || e.is_task_timed_out()
                });
                (gone, DisplayErrorContext(&e).to_string())
            }),
        Action::Success { output } => deps
            .sfn
            .send_task_success()
            .task_token(token)
            .output(output)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                let gone = e.as_service_error().is_some_and(|e| {
                    e.is_task_does_not_exist() || e.is_invalid_token() || e.is_task_timed_out()
                });
                (gone, DisplayErrorContext(&e).to_string())
            }),
    };
    match outcome {
        Ok(()) => Sent::Ok,
        Err((true, _)) => Sent::Gone,
        Err((false, message)) => Sent::Failed(message),
    }
}

#[cfg(test)]
mod tests {
    //! The refusals that happen before any AWS call, driven in-process, and what they
    //! cost. The ones that need the table and Step Functions (unknown id, replay, a
    //! retry after a partial failure) are in `tests/it.rs` and `tests/it/callbacks.rs`.

    use std::collections::BTreeMap;

    use axum::body::Body;
    use axum::http::Request;
    use proptest::prelude::*;
    use serde_json::json;
    use tower::ServiceExt as _;

    use super::*;
    use crate::{Config, DEFAULT_MAX_BODY_BYTES, ProviderConfig, Secret, SecretSource};

    const SECRET: &[u8] = b"whsec_unit";

    fn deps_with(secrets: SecretSource, config: Config) -> Arc<Deps> {
        // Never called on these paths: the clients only need to exist.
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        Arc::new(Deps::new(&sdk, "unused", secrets).with_config(config))
    }

    fn deps() -> Arc<Deps> {
        deps_with(
            SecretSource::single("acme", Secret::new(SECRET)),
            Config::default().with_provider("acme", ProviderConfig::default()),
        )
    }

    /// Posts `body` to `/callbacks/{provider}` with the signature `header`; returns the
    /// answer and how many MACs it cost.
    async fn post(
        deps: &Arc<Deps>,
        provider: &str,
        header: Option<&str>,
        body: Vec<u8>,
    ) -> ((u16, Value), u64) {
        let mut request = Request::post(format!("/callbacks/{provider}"));
        if let Some(header) = header {
            request = request.header(signature::HEADER, header);
        }
        let request = request.body(Body::from(body)).unwrap_or_default();
        let before = signature::mac_computations();
        let response = app(deps.clone())
            .oneshot(request)
            .await
            .unwrap_or_else(|e| match e {});
        let macs = signature::mac_computations() - before;
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        ((status, body), macs)
    }

    async fn check(provider: &str, header: Option<String>, body: &str, expected: (u16, Value)) {
        let (answer, _) = post(&deps(), provider, header.as_deref(), body.into()).await;
        assert_eq!(answer, expected);
    }

    fn now() -> i64 {
        OffsetDateTime::now_utc().unix_timestamp()
    }

    fn unauthorized(e: &str) -> (u16, Value) {
        (401, json!({ "error": e }))
    }

    #[tokio::test]
    async fn refusals_before_any_lookup() {
        let body = r#"{"deliveryId":"d1","externalId":"x","status":"sent"}"#;
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
        let (answer, _) = post(
            &deps(),
            "acme",
            Some(&signature::sign(SECRET, now(), not_a_delivery.as_bytes())),
            not_a_delivery.into(),
        )
        .await;
        assert_eq!(answer.0, 400);
    }

    /// The attack of issue 18: thousands of (empty) candidates and a megabyte of body.
    #[tokio::test]
    async fn a_webhook_request_costs_at_most_one_mac_whatever_its_header() {
        let deps = deps();
        let megabyte = vec![b'x'; 1 << 20];
        let small = br#"{"deliveryId":"d1","externalId":"x","status":"sent"}"#.to_vec();
        let wrong = "ab".repeat(32);
        let t = now();
        let many_empty = format!("t={t}{}", ",v1=".repeat(5_000));
        let many_full = format!("t={t}{}", format!(",v1={wrong}").repeat(5_000));
        let six = format!("t={t}{}", format!(",v1={wrong}").repeat(6));
        let five = format!("t={t}{}", format!(",v1={wrong}").repeat(5));
        let short = format!("t={t},v1={}", "ab".repeat(31));
        let long = format!("t={t},v1={}", "ab".repeat(33));
        let not_hex = format!("t={t},v1={}", "zz".repeat(32));
        let garbage = "x".repeat(64 * 1024);
        let mut good_among_wrong = format!("t={t}{}", format!(",v1={wrong}").repeat(4));
        let not_a_delivery = b"{}".to_vec();
        let signed = signature::sign(SECRET, t, &not_a_delivery);
        good_among_wrong.push_str(&signed[signed.find(",v1=").unwrap_or(0)..]);
        let cases: Vec<(&str, &str, Vec<u8>, u16, u64)> = vec![
            (
                "5000 empty candidates, 1 MB",
                &many_empty,
                megabyte.clone(),
                401,
                0,
            ),
            (
                "5000 candidates, 1 MB",
                &many_full,
                megabyte.clone(),
                401,
                0,
            ),
            ("6 candidates", &six, small.clone(), 401, 0),
            ("63-byte candidate", &short, small.clone(), 401, 0),
            ("65-byte candidate", &long, small.clone(), 401, 0),
            ("non-hex candidate", &not_hex, small.clone(), 401, 0),
            ("64 KiB of garbage", &garbage, small.clone(), 401, 0),
            ("5 wrong candidates, 1 MB", &five, megabyte, 413, 0),
            ("5 wrong candidates", &five, small, 401, 1),
            (
                "the right one among 4 wrong",
                &good_among_wrong,
                not_a_delivery,
                400,
                1,
            ),
        ];
        for (case, header, body, status, macs) in cases {
            let ((answer, _), cost) = post(&deps, "acme", Some(header), body).await;
            assert_eq!((answer, cost), (status, macs), "{case}");
            assert!(cost <= 1, "{case}: {cost} MACs");
        }
    }

    #[tokio::test]
    async fn unknown_providers_cost_no_secret_lookup() {
        let secrets = SecretSource::single("acme", Secret::new(SECRET));
        let deps = deps_with(
            secrets,
            Config::default().with_provider("acme", ProviderConfig::default()),
        );
        let body = br#"{"deliveryId":"d1","externalId":"x","status":"sent"}"#.to_vec();
        for i in 0..200 {
            let provider = format!("made-up-{i}");
            let header = signature::sign(SECRET, now(), &body);
            let (answer, macs) = post(&deps, &provider, Some(&header), body.clone()).await;
            assert_eq!(answer, unauthorized("invalid signature"), "{provider}");
            assert_eq!(macs, 0);
        }
        assert_eq!(deps.secrets.backend_reads(), 0);
    }

    #[tokio::test]
    async fn a_configured_provider_without_a_secret_is_looked_up_once() {
        let dir = std::env::temp_dir().join(format!("callbacks-no-secret-{}", std::process::id()));
        tokio::fs::create_dir_all(&dir).await.ok();
        let deps = deps_with(
            SecretSource::files(dir.clone()),
            Config::default().with_provider("acme", ProviderConfig::default()),
        );
        let body = br#"{"deliveryId":"d1","externalId":"x","status":"sent"}"#.to_vec();
        for _ in 0..50 {
            let header = signature::sign(SECRET, now(), &body);
            let ((status, _), _) = post(&deps, "acme", Some(&header), body.clone()).await;
            assert_eq!(status, 503);
        }
        assert_eq!(deps.secrets.backend_reads(), 1, "the miss is cached");
        tokio::fs::remove_dir_all(&dir).await.ok();
    }

    #[tokio::test]
    async fn an_empty_secret_verifies_nothing() {
        let deps = deps_with(
            SecretSource::single("acme", Secret::new("")),
            Config::default().with_provider("acme", ProviderConfig::default()),
        );
        let body = br#"{"deliveryId":"d1","externalId":"x","status":"sent"}"#.to_vec();
        let header = signature::sign(b"", now(), &body);
        let ((status, _), macs) = post(&deps, "acme", Some(&header), body).await;
        assert_eq!((status, macs), (503, 0));
    }

    #[tokio::test]
    async fn bodies_over_the_providers_limit_are_refused_before_verification() {
        let limit = 1024;
        let deps = deps_with(
            SecretSource::memory(BTreeMap::from([
                ("acme".to_string(), Secret::new(SECRET)),
                ("roomy".to_string(), Secret::new(SECRET)),
            ])),
            Config::default()
                .with_provider(
                    "acme",
                    ProviderConfig {
                        max_body_bytes: limit,
                    },
                )
                .with_provider("roomy", ProviderConfig::default()),
        );
        let over = vec![b' '; limit + 1];
        let header = signature::sign(SECRET, now(), &over);
        let (answer, macs) = post(&deps, "acme", Some(&header), over.clone()).await;
        assert_eq!(
            answer,
            (413, json!({"error": "body too large: at most 1024 bytes"}))
        );
        assert_eq!(macs, 0);
        // At the limit, it is verified (and, being blank, is no delivery).
        let at = vec![b' '; limit];
        let header = signature::sign(SECRET, now(), &at);
        let ((status, _), macs) = post(&deps, "acme", Some(&header), at).await;
        assert_eq!((status, macs), (400, 1));
        // Another provider keeps the default.
        let ((status, _), _) = post(&deps, "roomy", Some(&header), over).await;
        assert_eq!(status, 401, "verified, not refused for its size");
        let default = vec![b' '; DEFAULT_MAX_BODY_BYTES + 1];
        let header = signature::sign(SECRET, now(), &default);
        let ((status, body), macs) = post(&deps, "roomy", Some(&header), default).await;
        assert_eq!((status, macs), (413, 0));
        assert_eq!(
            body["error"],
            format!("body too large: at most {DEFAULT_MAX_BODY_BYTES} bytes")
        );
    }

    #[tokio::test]
    async fn a_streamed_body_is_read_no_further_than_the_limit() {
        // No Content-Length: the cap holds on the bytes themselves.
        let chunks = (0..64).map(|_| Ok::<_, std::io::Error>(vec![b' '; 16 * 1024]));
        let request = Request::post("/callbacks/acme")
            .header(
                signature::HEADER,
                format!("t={},v1={}", now(), "ab".repeat(32)),
            )
            .body(Body::from_stream(futures::stream::iter(chunks)))
            .unwrap_or_default();
        let before = signature::mac_computations();
        let response = app(deps())
            .oneshot(request)
            .await
            .unwrap_or_else(|e| match e {});
        assert_eq!(response.status().as_u16(), 413);
        assert_eq!(signature::mac_computations(), before);
    }

    #[tokio::test]
    async fn delivery_fields_out_of_bounds_are_refused_naming_the_field() {
        let cases = [
            (
                "deliveryId",
                json!({"deliveryId": "d".repeat(MAX_DELIVERY_ID_LEN + 1), "externalId": "x", "status": "sent"}),
            ),
            (
                "deliveryId",
                json!({"deliveryId": "", "externalId": "x", "status": "sent"}),
            ),
            (
                "externalId",
                json!({"deliveryId": "d", "externalId": "x".repeat(MAX_EXTERNAL_ID_LEN + 1), "status": "sent"}),
            ),
            (
                "externalId",
                json!({"deliveryId": "d", "externalId": "a\u{0}b", "status": "sent"}),
            ),
            (
                "status",
                json!({"deliveryId": "d", "externalId": "x", "status": "s".repeat(MAX_STATUS_LEN + 1)}),
            ),
        ];
        for (field, body) in cases {
            let body = body.to_string().into_bytes();
            let header = signature::sign(SECRET, now(), &body);
            let ((status, answer), _) = post(&deps(), "acme", Some(&header), body).await;
            assert_eq!(status, 400, "{field}");
            let message = answer["error"].as_str().unwrap_or_default();
            assert!(message.contains(&format!("`{field}`")), "{message}");
        }
    }

    #[test]
    fn an_oversized_result_or_cause_is_bounded() {
        let delivery = |status: &str, data: Value| WebhookDelivery {
            delivery_id: "d".into(),
            external_id: "x".into(),
            status: status.into(),
            data: Some(data),
        };
        let big = "x".repeat(MAX_TASK_OUTPUT_BYTES);
        assert!(action(&delivery("sent", json!({ "blob": big }))).is_none());
        assert!(matches!(
            action(&delivery("sent", json!({"small": 1}))),
            Some(Action::Success { .. })
        ));
        match action(&delivery("error", json!({ "reason": big }))) {
            Some(Action::Failure { cause }) => {
                assert_eq!(cause.chars().count(), MAX_FAILURE_CAUSE_CHARS);
            }
            _ => panic!("an error delivery is a failure"),
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("a test runtime: {e}"))
    }

    proptest! {
        /// Whatever reaches the boundary, the answer is a refusal, never a panic, and
        /// costs at most one MAC.
        #[test]
        fn no_webhook_request_panics_or_costs_more_than_one_mac(
            provider in "[a-z0-9_-]{0,70}|[A-Za-z0-9%._~-]{0,20}",
            header in proptest::option::of(prop_oneof![
                ".{0,700}",
                "t=[0-9]{1,12}(,v1=[0-9a-f]{0,70}){0,8}",
            ]),
            body in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            let deps = deps();
            let ((status, _), macs) = runtime().block_on(post(&deps, &provider, header.as_deref(), body));
            prop_assert!(macs <= 1, "{macs} MACs");
            prop_assert!([400, 401, 404, 405, 413].contains(&status), "status {status}");
        }

        /// A well-formed delivery with random fields, correctly signed: verified once,
        /// then refused for its fields exactly when they are out of bounds.
        #[test]
        fn signed_deliveries_are_checked_field_by_field(
            delivery_id in ".{0,300}",
            external_id in ".{0,300}",
            status in "heartbeat|error|sent|.{0,80}",
        ) {
            let delivery = WebhookDelivery { delivery_id, external_id, status, data: None };
            if check_fields(&delivery).is_ok() {
                // In bounds, it would go on to the table: `tests/it.rs` covers that.
                return Ok(());
            }
            let body = serde_json::to_vec(&delivery).unwrap_or_default();
            let header = signature::sign(SECRET, now(), &body);
            let deps = deps();
            let ((status, _), macs) = runtime().block_on(post(&deps, "acme", Some(&header), body));
            prop_assert_eq!((status, macs), (400, 1));
        }

        /// A signed header as `sign` writes it parses back to its timestamp and MAC.
        #[test]
        fn a_signed_header_round_trips(t in 0i64..=4_102_444_800, body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let header = signature::sign(SECRET, t, &body);
            let parsed = signature::Header::parse(&header);
            prop_assert!(parsed.is_ok(), "{header}");
            let parsed = parsed.unwrap_or_else(|_| unreachable!("checked above"));
            prop_assert_eq!(parsed.timestamp, t);
            prop_assert_eq!(parsed.candidates.len(), 1);
            prop_assert_eq!(parsed.render(), header);
        }
    }
}
