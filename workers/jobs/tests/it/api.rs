//! The HTTP API, driven in-process with `tower::ServiceExt::oneshot`.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use contracts::jobs::JobStatus;
use contracts::{BusEvent, Envelope, JobEvent};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::support::{self, Api, ISSUER, token};

struct Answer {
    status: StatusCode,
    location: Option<String>,
    body: Value,
}

async fn call(
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
        body,
    }
}

const SPIN: &str = r#"{"model": "spin", "params": {"durationMs": 100}}"#;

async fn post_job(api: &Api, sub: &str) -> String {
    let answer = call(api, "POST", "/jobs", Some(&token(sub)), Some(SPIN)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    answer.body["jobId"].as_str().expect("a job id").to_string()
}

/// The JobRequested events the API published, decoded.
async fn published(api: &Api) -> Vec<(BusEvent, JobEvent)> {
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
    for uri in [
        format!("/jobs/{job_id}"),
        "/jobs/no-such-job".to_string(),
        "/jobs/not%23valid".to_string(),
    ] {
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
        jobs::handle_job_event(event, &api.deps)
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
    let broken = jobs::Deps::new(&api.sdk, api.deps.table.clone())
        .with_publisher(bus::Publisher::new(
            aws_sdk_eventbridge::Client::new(&api.sdk),
            emulator::unique_name("no-such-bus"),
            bus::Config {
                max_attempts: 2,
                min_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(50),
            },
        ))
        .with_verifier(verifier);
    let broken = Api {
        deps: std::sync::Arc::new(broken),
        sdk: api.sdk.clone(),
        requested_url: api.requested_url.clone(),
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
