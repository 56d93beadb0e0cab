//! The HTTP API, driven in-process with `tower::ServiceExt::oneshot`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use contracts::jobs::JobStatus;
use contracts::{BusEvent, Envelope, JobEvent};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tower::ServiceExt as _;

use crate::support::{self, Api, ISSUER, token};

pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) location: Option<String>,
    retry_after: Option<String>,
    pub(crate) body: Value,
    pub(crate) cache_control: Option<String>,
}

pub(crate) async fn call(
    api: &Api,
    method: &str,
    uri: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> Answer {
    call_with(api, method, uri, bearer, body, &[]).await
}

async fn call_with(
    api: &Api,
    method: &str,
    uri: &str,
    bearer: Option<&str>,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = bearer {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.unwrap_or("").to_string()))
        .expect("a request");
    let response = jobs::app(api.deps.clone())
        .oneshot(request)
        .await
        .expect("the router is infallible");
    let status = response.status();
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(ToString::to_string);
    let header_of = |headers: &axum::http::HeaderMap, name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(ToString::to_string)
    };
    let retry_after = header_of(response.headers(), header::RETRY_AFTER);
    let cache_control = header_of(response.headers(), header::CACHE_CONTROL);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("a body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    Answer {
        status,
        location,
        retry_after,
        body,
        cache_control,
    }
}

const SPIN: &str = r#"{"model": "spin", "params": {"durationMs": 100}}"#;

pub(crate) async fn post_job(api: &Api, sub: &str) -> String {
    let answer = call(api, "POST", "/jobs", Some(&token(sub)), Some(SPIN)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    answer.body["jobId"].as_str().expect("a job id").to_string()
}

/// The JobRequested events the API published, decoded.
pub(crate) async fn published(api: &Api) -> Vec<(BusEvent, JobEvent)> {
    support::drain(&api.sdk, &api.requested_url)
        .await
        .iter()
        .map(|body| support::job_event(body))
        .collect()
}

#[tokio::test]
async fn post_accepts_a_job_and_get_shows_it_queued() {
    let api = support::api().await;
    let answer = call(&api, "POST", "/jobs", Some(&token("alice")), Some(SPIN)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    let job_id = answer.body["jobId"].as_str().expect("jobId").to_string();
    assert_eq!(
        answer.location.as_deref(),
        Some(format!("/jobs/{job_id}").as_str())
    );

    let view = call(
        &api,
        "GET",
        &answer.location.unwrap(),
        Some(&token("alice")),
        None,
    )
    .await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.body);
    assert_eq!(view.body["jobId"], job_id);
    assert_eq!(view.body["status"], "QUEUED");
    assert_eq!(view.body["model"], "spin");
    assert_eq!(view.body["progress"], 0.0);
    let _: contracts::jobs::JobView = serde_json::from_value(view.body).expect("a JobView");

    let events = published(&api).await;
    assert_eq!(events.len(), 1);
    let (bus_event, JobEvent::Requested(requested)) = &events[0] else {
        panic!("expected JobRequested, got {events:?}");
    };
    assert_eq!(bus_event.source, "fleet.jobs");
    assert_eq!(
        requested.job_id.as_ref().map(|j| j.as_str()),
        Some(job_id.as_str())
    );
    assert_eq!(requested.requested_by.as_deref(), Some("alice"));
    assert_eq!(requested.params["durationMs"], 100);
}

#[tokio::test]
async fn requests_without_a_good_token_are_unauthorized() {
    let api = support::api().await;
    let expired = ISSUER
        .sign(&json!({"sub": "alice", "iss": ISSUER.issuer(), "aud": ISSUER.audience(), "exp": 1_000_000}))
        .unwrap();
    let stranger = auth::DevIssuer::generate()
        .unwrap()
        .issue("alice", Duration::from_secs(60))
        .unwrap();
    for bearer in [
        None,
        Some("garbage"),
        Some(expired.as_str()),
        Some(stranger.as_str()),
    ] {
        for (method, uri, body) in [
            ("POST", "/jobs", Some(SPIN)),
            ("GET", "/jobs/abc", None),
            ("GET", "/jobs", None),
        ] {
            let answer = call(&api, method, uri, bearer, body).await;
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} with {bearer:?}"
            );
            assert_eq!(answer.body, json!({"error": "unauthorized"}));
        }
    }
    let wrong_scheme = call_with(
        &api,
        "GET",
        "/jobs",
        None,
        None,
        &[("authorization", "Basic YTpi")],
    )
    .await;
    assert_eq!(wrong_scheme.status, StatusCode::UNAUTHORIZED);
    assert!(published(&api).await.is_empty(), "nothing was published");
}

#[tokio::test]
async fn another_users_job_is_not_found() {
    let api = support::api().await;
    let job_id = post_job(&api, "alice").await;
    for uri in [format!("/jobs/{job_id}"), "/jobs/no-such-job".to_string()] {
        let answer = call(&api, "GET", &uri, Some(&token("bob")), None).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(answer.body, json!({"error": "not found"}));
    }
    let listed = call(&api, "GET", "/jobs", Some(&token("bob")), None).await;
    assert_eq!(listed.body["jobs"], json!([]));
}

/// Posts `body` and checks the 400's message starts with `expected`.
async fn check_invalid(api: &Api, body: &str, expected: &str) {
    let answer = call(api, "POST", "/jobs", Some(&token("alice")), Some(body)).await;
    assert_eq!(
        answer.status,
        StatusCode::BAD_REQUEST,
        "{body}: {}",
        answer.body
    );
    let message = answer.body["error"].as_str().unwrap_or_default();
    assert!(message.starts_with(expected), "{body}: {message}");
}

#[tokio::test]
async fn invalid_bodies_are_refused_naming_the_field() {
    let api = support::api().await;
    check_invalid(
        &api,
        r#"{"model": "spin"}"#,
        "invalid request: field `params`: missing field",
    )
    .await;
    check_invalid(
        &api,
        r#"{"model": "spin", "params": [1]}"#,
        "invalid request: field `params`: invalid type",
    )
    .await;
    check_invalid(
        &api,
        r#"{"params": {}}"#,
        "invalid request: field `model`: missing field",
    )
    .await;
    check_invalid(
        &api,
        r#"{"model": "Not A Model!", "params": {}}"#,
        "invalid request: field `model`: `Not A Model!` is not a model name",
    )
    .await;
    check_invalid(
        &api,
        r#"{"model": 7, "params": {}}"#,
        "invalid request: field `model`: invalid type",
    )
    .await;
    check_invalid(
        &api,
        r#"[1, 2]"#,
        "invalid request: field `(body)`: must be a JSON object",
    )
    .await;
    check_invalid(&api, "{not json", "invalid request: the body is not JSON").await;
    check_invalid(&api, "", "invalid request: the body is not JSON").await;
    // A client cannot choose the job id or the requester: those fields are dropped.
    let answer = call(
        &api,
        "POST",
        "/jobs",
        Some(&token("alice")),
        Some(r#"{"model": "spin", "params": {}, "jobId": "mine", "requestedBy": "bob"}"#),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_ne!(answer.body["jobId"], "mine");
    let bad_key = call_with(
        &api,
        "POST",
        "/jobs",
        Some(&token("alice")),
        Some(SPIN),
        &[("idempotency-key", "")],
    )
    .await;
    assert_eq!(bad_key.status, StatusCode::BAD_REQUEST);
    assert!(
        bad_key.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("`Idempotency-Key`")
    );
}

#[tokio::test]
async fn an_idempotency_key_makes_a_retry_return_the_same_job() {
    let api = support::api().await;
    let key = [("idempotency-key", "order-42")];
    let first = call_with(
        &api,
        "POST",
        "/jobs",
        Some(&token("alice")),
        Some(SPIN),
        &key,
    )
    .await;
    let second = call_with(
        &api,
        "POST",
        "/jobs",
        Some(&token("alice")),
        Some(SPIN),
        &key,
    )
    .await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(second.status, StatusCode::ACCEPTED);
    assert_eq!(first.body["jobId"], second.body["jobId"]);
    assert_eq!(first.location, second.location);

    // The same key from someone else is another job.
    let bobs = call_with(&api, "POST", "/jobs", Some(&token("bob")), Some(SPIN), &key).await;
    assert_ne!(bobs.body["jobId"], first.body["jobId"]);

    let events = published(&api).await;
    let for_first: Vec<_> = events
        .iter()
        .filter(|(_, e)| e.job_id().map(|j| j.as_str()) == first.body["jobId"].as_str())
        .collect();
    assert_eq!(
        for_first.len(),
        1,
        "one JobRequested for the retried request: {events:?}"
    );
    let JobEvent::Requested(requested) = &for_first[0].1 else {
        panic!("expected JobRequested");
    };
    assert_eq!(requested.idempotency_key.as_deref(), Some("order-42"));
    assert_eq!(events.len(), 2, "alice's once, bob's once");
}

#[tokio::test]
async fn list_shows_the_callers_jobs_newest_first_filtered_by_status() {
    let api = support::api().await;
    let first = post_job(&api, "alice").await;
    let second = post_job(&api, "alice").await;
    let third = post_job(&api, "alice").await;
    let _bobs = post_job(&api, "bob").await;
    // The second and third start running.
    for job_id in [&second, &third] {
        let started = JobEvent::Started(contracts::jobs::JobStarted {
            job_id: contracts::JobId::parse(job_id).unwrap(),
            worker: "w1".to_string(),
            handout: 0,
            attempt: 1,
        });
        let entry = Envelope::new(started, "simulation").to_entry();
        let event = BusEvent {
            version: Some("0".into()),
            id: uuid::Uuid::new_v4().to_string(),
            detail_type: entry.detail_type,
            source: entry.source,
            account: None,
            time: None,
            region: None,
            resources: vec![],
            detail: serde_json::from_str(&entry.detail).unwrap(),
        };
        jobs::handle_job_event(event, &api.deps.jobs)
            .await
            .expect("applied");
    }

    let all = call(&api, "GET", "/jobs", Some(&token("alice")), None).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    let ids: Vec<&str> = all.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["jobId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [third.as_str(), second.as_str(), first.as_str()]);

    let running = call(
        &api,
        "GET",
        "/jobs?status=RUNNING",
        Some(&token("alice")),
        None,
    )
    .await;
    let statuses: Vec<(&str, &str)> = running.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["jobId"].as_str().unwrap(), j["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [(third.as_str(), "RUNNING"), (second.as_str(), "RUNNING")]
    );

    // Paging: one at a time, following nextToken.
    let mut seen = Vec::new();
    let mut uri = "/jobs?limit=1".to_string();
    loop {
        let page = call(&api, "GET", &uri, Some(&token("alice")), None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for job in page.body["jobs"].as_array().unwrap() {
            seen.push(job["jobId"].as_str().unwrap().to_string());
        }
        match page.body["nextToken"].as_str() {
            Some(next) => uri = format!("/jobs?limit=1&nextToken={next}"),
            None => break,
        }
        assert!(seen.len() <= 3, "paging does not end: {seen:?}");
    }
    assert_eq!(seen, [third, second, first]);
}

#[tokio::test]
async fn bad_list_parameters_are_refused_naming_them() {
    let api = support::api().await;
    for (query, field) in [
        ("status=SLEEPING", "`status`"),
        ("limit=0", "`limit`"),
        ("limit=lots", "`limit`"),
        ("nextToken=forged", "`nextToken`"),
    ] {
        let answer = call(
            &api,
            "GET",
            &format!("/jobs?{query}"),
            Some(&token("alice")),
            None,
        )
        .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}");
        let message = answer.body["error"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(&format!("invalid request: field {field}")),
            "{query}: {message}"
        );
    }
    let lower = call(
        &api,
        "GET",
        "/jobs?status=queued",
        Some(&token("alice")),
        None,
    )
    .await;
    assert_eq!(
        lower.status,
        StatusCode::OK,
        "statuses are case-insensitive"
    );
    assert_eq!(JobStatus::Queued.as_str(), "QUEUED");
}

#[tokio::test]
async fn unknown_routes_answer_json_404() {
    let api = support::api().await;
    let answer = call(&api, "GET", "/nope", Some(&token("alice")), None).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.body, json!({"error": "not found"}));
}

#[tokio::test]
async fn a_job_that_cannot_be_published_is_undone() {
    let api = support::api().await;
    let verifier = auth::Verifier::new(ISSUER.verifier_config().unwrap());
    let broken = jobs::ApiDeps::new(
        api.deps.jobs.clone(),
        bus::Publisher::new(
            aws_sdk_eventbridge::Client::new(&api.sdk),
            emulator::unique_name("no-such-bus"),
            bus::Config {
                max_attempts: 2,
                min_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(50),
            },
        ),
        verifier,
        api.deps.results.clone(),
        api.deps.executions.clone(),
    );
    let broken = Api {
        deps: std::sync::Arc::new(broken),
        sdk: api.sdk.clone(),
        requested_url: api.requested_url.clone(),
        bus: api.bus.clone(),
    };
    let key = [("idempotency-key", "retry-me")];
    let failed = call_with(
        &broken,
        "POST",
        "/jobs",
        Some(&token("alice")),
        Some(SPIN),
        &key,
    )
    .await;
    assert_eq!(
        failed.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        failed.body
    );
    assert_eq!(
        failed.body,
        json!({"error": "unavailable, try again later"})
    );
    let listed = call(&api, "GET", "/jobs", Some(&token("alice")), None).await;
    assert_eq!(
        listed.body["jobs"],
        json!([]),
        "the unpublished job was removed"
    );

    // The key was released: the client's retry goes through as a new job.
    let retried = call_with(
        &api,
        "POST",
        "/jobs",
        Some(&token("alice")),
        Some(SPIN),
        &key,
    )
    .await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{}", retried.body);
    assert_eq!(published(&api).await.len(), 1);
}

/// How many items the jobs table holds (job rows and idempotency items alike).
async fn table_items(api: &Api) -> usize {
    let output = api
        .deps
        .jobs
        .dynamodb
        .scan()
        .table_name(&api.deps.jobs.table)
        .send()
        .await
        .expect("scan the jobs table");
    output.items().len()
}

/// A `POST /jobs` body whose params hold one string of `n` bytes: `{"x":"…"}` is `n + 8`
/// bytes of params.
fn body_with_params_of(n: usize) -> String {
    // Not a built-in model, whose checks would refuse `x` before its size mattered.
    json!({"model": "size-probe", "params": {"x": "a".repeat(n)}}).to_string()
}

/// Checks a refusal for a limit: the status, the field and limit in the body, and a
/// message naming both.
fn check_over_limit(answer: &Answer, status: StatusCode, field: &str, limit: usize) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.body["field"], field, "{}", answer.body);
    assert_eq!(answer.body["limit"], limit, "{}", answer.body);
    let message = answer.body["error"].as_str().unwrap_or_default();
    assert!(message.contains(field), "names `{field}`: {message}");
    assert!(
        message.contains(&limit.to_string()),
        "names the limit: {message}"
    );
}

#[tokio::test]
async fn oversized_params_are_refused_with_413_before_anything_is_written() {
    let api = support::api().await;
    let key = [("idempotency-key", "big-1")];
    // ~300 KB used to answer 503 (the bus refused the entry), ~140 KB used to be accepted
    // and then broke the job's WebSocket channel.
    let huge = call_with(
        &api,
        "POST",
        "/jobs",
        Some(&token("alice")),
        Some(&body_with_params_of(300_000)),
        &key,
    )
    .await;
    check_over_limit(
        &huge,
        StatusCode::PAYLOAD_TOO_LARGE,
        "(body)",
        jobs::MAX_BODY_BYTES,
    );
    let large = call_with(
        &api,
        "POST",
        "/jobs",
        Some(&token("alice")),
        Some(&body_with_params_of(140_000)),
        &key,
    )
    .await;
    check_over_limit(
        &large,
        StatusCode::PAYLOAD_TOO_LARGE,
        "(body)",
        jobs::MAX_BODY_BYTES,
    );
    // A body under the body limit whose params are over theirs.
    let params = contracts::jobs::MAX_PARAMS_BYTES;
    let over = call_with(
        &api,
        "POST",
        "/jobs",
        Some(&token("alice")),
        Some(&body_with_params_of(params - 7)),
        &key,
    )
    .await;
    check_over_limit(&over, StatusCode::PAYLOAD_TOO_LARGE, "params", params);
    assert_eq!(table_items(&api).await, 0, "no row and no idempotency item");
    assert!(published(&api).await.is_empty(), "nothing was published");

    // Params of exactly the limit go through, and their event is within the bus's limit.
    let at_limit = call_with(
        &api,
        "POST",
        "/jobs",
        Some(&token("alice")),
        Some(&body_with_params_of(params - 8)),
        &key,
    )
    .await;
    assert_eq!(at_limit.status, StatusCode::ACCEPTED, "{}", at_limit.body);
    let events = published(&api).await;
    assert_eq!(events.len(), 1);
    let JobEvent::Requested(requested) = &events[0].1 else {
        panic!("expected JobRequested");
    };
    assert_eq!(contracts::jobs::params_bytes(&requested.params), params);
}

#[tokio::test]
async fn overlong_headers_and_subjects_are_refused_naming_the_limit() {
    let api = support::api().await;
    let limit = contracts::jobs::MAX_IDEMPOTENCY_KEY_LEN;
    let long_key = "k".repeat(limit + 1);
    let answer = call_with(
        &api,
        "POST",
        "/jobs",
        Some(&token("alice")),
        Some(SPIN),
        &[("idempotency-key", &long_key)],
    )
    .await;
    check_over_limit(&answer, StatusCode::BAD_REQUEST, "Idempotency-Key", limit);
    let exact_key = "k".repeat(limit);
    let answer = call_with(
        &api,
        "POST",
        "/jobs",
        Some(&token("alice")),
        Some(SPIN),
        &[("idempotency-key", &exact_key)],
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);

    // A subject too long for the table's keys used to answer 503 (DynamoDB refused the
    // key); one merely longer than the events allow used to be accepted, and its
    // JobRequested then dead-lettered.
    let limit = contracts::jobs::MAX_REQUESTER_LEN;
    for sub in ["s".repeat(3000), "s".repeat(limit + 1)] {
        let answer = call_with(
            &api,
            "POST",
            "/jobs",
            Some(&token(&sub)),
            Some(SPIN),
            &[("idempotency-key", "sub-1")],
        )
        .await;
        check_over_limit(&answer, StatusCode::BAD_REQUEST, "sub", limit);
    }
    let events = published(&api).await;
    assert_eq!(events.len(), 1, "only the request with the longest key");
}

/// A publisher that holds its first publish until the test releases it, then fails it
/// as a throttled bus would; later publishes go to the real bus.
#[derive(Debug)]
struct HeldThenFailed {
    inner: bus::Publisher,
    reached: Mutex<Option<oneshot::Sender<()>>>,
    release: Mutex<Option<oneshot::Receiver<()>>>,
}

impl jobs::RequestPublisher for HeldThenFailed {
    fn publish<'a>(
        &'a self,
        envelope: &'a Envelope<JobEvent>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<String, bus::PublishError>> + Send + 'a>,
    > {
        Box::pin(async move {
            let reached = self.reached.lock().expect("not poisoned").take();
            if let Some(reached) = reached {
                let release = self.release.lock().expect("not poisoned").take();
                let _ = reached.send(());
                if let Some(release) = release {
                    let _ = release.await;
                }
                return Err(bus::PublishError::Rejected {
                    code: "ThrottlingException".to_string(),
                    message: "injected: the bus throttled this publish".to_string(),
                });
            }
            self.inner.publish(envelope).await
        })
    }
}

#[tokio::test]
async fn a_retry_while_the_first_request_is_in_flight_never_gets_a_job_that_rolls_back() {
    let api = support::api().await;
    let (reached_tx, reached_rx) = oneshot::channel();
    let (release_tx, release_rx) = oneshot::channel();
    let held = HeldThenFailed {
        // The API's own bus, so that later publishes are captured.
        inner: bus::Publisher::from_sdk(&api.sdk, api.bus.clone()),
        reached: Mutex::new(Some(reached_tx)),
        release: Mutex::new(Some(release_rx)),
    };
    let verifier = auth::Verifier::new(ISSUER.verifier_config().unwrap());
    let held = Api {
        deps: Arc::new(jobs::ApiDeps::new(
            api.deps.jobs.clone(),
            held,
            verifier,
            api.deps.results.clone(),
            api.deps.executions.clone(),
        )),
        sdk: api.sdk.clone(),
        requested_url: api.requested_url.clone(),
        bus: api.bus.clone(),
    };
    let key = [("idempotency-key", "in-flight-1")];
    let alice = token("alice");

    let first = call_with(&held, "POST", "/jobs", Some(&alice), Some(SPIN), &key);
    let retry = async {
        // The first request has claimed the key and written its row, and now publishes.
        reached_rx.await.expect("the first request publishes");
        let retry = call_with(&held, "POST", "/jobs", Some(&alice), Some(SPIN), &key).await;
        // Only now does the first request's publish fail, and the first roll back.
        let _ = release_tx.send(());
        retry
    };
    let (first, retry) = tokio::join!(first, retry);
    assert_eq!(
        first.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        first.body
    );
    assert_eq!(
        retry.status,
        StatusCode::CONFLICT,
        "a retry during the first request must not be promised its job: {}",
        retry.body
    );
    assert!(retry.retry_after.is_some(), "a 409 says when to retry");
    assert!(
        retry.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("in progress"),
        "{}",
        retry.body
    );
    if let Some(promised) = retry.body["jobId"].as_str() {
        panic!("the retry was given job {promised}, which was rolled back");
    }

    // Once the first request is over, a retry with the key is a job that exists.
    let again = call_with(&held, "POST", "/jobs", Some(&alice), Some(SPIN), &key).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.body);
    let job_id = again.body["jobId"].as_str().expect("a job id").to_string();
    let view = call(&held, "GET", &format!("/jobs/{job_id}"), Some(&alice), None).await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.body);
    let events = published(&api).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0].1.job_id().map(|j| j.as_str()),
        Some(job_id.as_str())
    );
    // And later retries get that same job.
    let later = call_with(&held, "POST", "/jobs", Some(&alice), Some(SPIN), &key).await;
    assert_eq!(later.status, StatusCode::ACCEPTED, "{}", later.body);
    assert_eq!(later.body["jobId"], job_id.as_str());
}

#[tokio::test]
async fn malformed_and_overlong_list_and_path_parameters_are_refused_naming_them() {
    let api = support::api().await;
    let alice = token("alice");
    let long_token = "A".repeat(jobs::MAX_NEXT_TOKEN_LEN + 1);
    let forged_time = base64_url(r#"{"c":"yesterday","j":"job-1"}"#);
    let too_big = format!("{}", jobs::MAX_PAGE_SIZE + 1);
    for (uri, field) in [
        (format!("/jobs?nextToken={long_token}"), "nextToken"),
        (format!("/jobs?nextToken={forged_time}"), "nextToken"),
        (format!("/jobs?limit={too_big}"), "limit"),
        ("/jobs/not%23valid".to_string(), "id"),
        (format!("/jobs/{}", "j".repeat(81)), "id"),
    ] {
        let answer = call(&api, "GET", &uri, Some(&alice), None).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{uri}: {}",
            answer.body
        );
        let message = answer.body["error"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(&format!("invalid request: field `{field}`")),
            "{uri}: {message}"
        );
    }
    let answer = call(
        &api,
        "GET",
        &format!("/jobs?nextToken={long_token}"),
        Some(&alice),
        None,
    )
    .await;
    check_over_limit(
        &answer,
        StatusCode::BAD_REQUEST,
        "nextToken",
        jobs::MAX_NEXT_TOKEN_LEN,
    );
    let long_query = format!("/jobs?x={}", "q".repeat(jobs::MAX_QUERY_BYTES));
    let answer = call(&api, "GET", &long_query, Some(&alice), None).await;
    check_over_limit(
        &answer,
        StatusCode::BAD_REQUEST,
        "(query string)",
        jobs::MAX_QUERY_BYTES,
    );
}

fn base64_url(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// A publisher that never answers: the function dies (a crash, a timeout) while it waits.
#[derive(Debug)]
struct Hangs {
    reached: Mutex<Option<oneshot::Sender<()>>>,
}

impl jobs::RequestPublisher for Hangs {
    fn publish<'a>(
        &'a self,
        _envelope: &'a Envelope<JobEvent>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<String, bus::PublishError>> + Send + 'a>,
    > {
        Box::pin(async move {
            if let Some(reached) = self.reached.lock().expect("not poisoned").take() {
                let _ = reached.send(());
            }
            std::future::pending().await
        })
    }
}

/// Found by `fleet chaos`: a request that died between writing its job row and publishing
/// left the row QUEUED for ever, and the client's retry (after the claim's lease) made a
/// second job. The retry now carries the dead request on, under its job id.
#[tokio::test]
async fn a_retry_after_a_request_died_mid_way_carries_it_on_instead_of_making_a_second_job() {
    let api = support::api().await;
    let (reached_tx, reached_rx) = oneshot::channel();
    let verifier = auth::Verifier::new(ISSUER.verifier_config().unwrap());
    let dying = Api {
        deps: Arc::new(jobs::ApiDeps::new(
            api.deps.jobs.clone(),
            Hangs {
                reached: Mutex::new(Some(reached_tx)),
            },
            verifier,
            api.deps.results.clone(),
            api.deps.executions.clone(),
        )),
        sdk: api.sdk.clone(),
        requested_url: api.requested_url.clone(),
        bus: api.bus.clone(),
    };
    let key = [("idempotency-key", "dies-mid-way")];
    let alice = token("alice");
    let first = tokio::spawn({
        let alice = alice.clone();
        async move { call_with(&dying, "POST", "/jobs", Some(&alice), Some(SPIN), &key).await }
    });
    reached_rx
        .await
        .expect("the first request wrote its row and publishes");
    first.abort(); // the function's process dies here
    let listed = call(&api, "GET", "/jobs", Some(&alice), None).await;
    let orphan = listed.body["jobs"][0]["jobId"]
        .as_str()
        .expect("the dead request's row")
        .to_owned();

    // Its claim's lease passes (60 s on AWS): make it so at once.
    api.deps
        .jobs
        .dynamodb
        .update_item()
        .table_name(&api.deps.jobs.table)
        .key(
            "jobId",
            aws_sdk_dynamodb::types::AttributeValue::S("idem#alice#dies-mid-way".into()),
        )
        .update_expression("SET leaseUntil = :past")
        .expression_attribute_values(
            ":past",
            aws_sdk_dynamodb::types::AttributeValue::N("1".into()),
        )
        .send()
        .await
        .expect("age the claim");

    let retry = call_with(&api, "POST", "/jobs", Some(&alice), Some(SPIN), &key).await;
    assert_eq!(retry.status, StatusCode::ACCEPTED, "{}", retry.body);
    assert_eq!(
        retry.body["jobId"],
        orphan.as_str(),
        "the retry is the dead request's job"
    );
    let listed = call(&api, "GET", "/jobs", Some(&alice), None).await;
    assert_eq!(
        listed.body["jobs"].as_array().map(Vec::len),
        Some(1),
        "one job, not an orphan and a second: {}",
        listed.body
    );
    let events = published(&api).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0].1.job_id().map(|j| j.as_str()),
        Some(orphan.as_str())
    );
    let again = call_with(&api, "POST", "/jobs", Some(&alice), Some(SPIN), &key).await;
    assert_eq!(again.body["jobId"], orphan.as_str());
}

/// Found by `fleet chaos`: a `PutItem` whose answer was lost (a dropped connection) is
/// sent again by the SDK's retry; the retry found the row the first attempt wrote, the API
/// took it for an id collision, answered 500 and left the row QUEUED for ever. The same
/// write again is now no collision, and so is a claim's, while another's row still is.
#[tokio::test]
async fn the_same_job_row_or_claim_written_twice_is_one_write_not_a_collision() {
    let api = support::api().await;
    let store = api.deps.jobs.store();
    let job = jobs::store::NewJob {
        job_id: contracts::JobId::generate(),
        requested_by: "alice".into(),
        model: "spin".into(),
        params: serde_json::Map::new(),
        idempotency_key: Some("twice".into()),
        created_at: time::OffsetDateTime::now_utc(),
    };
    use jobs::store::{Claim, ClaimState, Created};
    assert_eq!(store.create(&job).await.unwrap(), Created::New);
    assert_eq!(
        store.create(&job).await.unwrap(),
        Created::New,
        "a retried write"
    );
    let other = jobs::store::NewJob {
        requested_by: "bob".into(),
        ..job.clone()
    };
    assert_eq!(store.create(&other).await.unwrap(), Created::AlreadyThere);

    for _ in 0..2 {
        let claim = store
            .claim_key("alice", "twice", &job.job_id, ClaimState::Pending)
            .await
            .unwrap();
        assert!(matches!(claim, Claim::Claimed), "{claim:?}");
    }
    let another = contracts::JobId::generate();
    let claim = store
        .claim_key("alice", "twice", &another, ClaimState::Pending)
        .await
        .unwrap();
    assert!(
        matches!(claim, Claim::InProgress),
        "another request's claim: {claim:?}"
    );
}
