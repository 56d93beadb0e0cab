//! What a user sees of results and parameters through the HTTP API: `GET /jobs/{id}/result`
//! (the owner is sent to a presigned link of the stored result, anyone else gets the 404
//! of an unknown job), `POST /jobs` refusing a built-in model's invalid params naming the
//! field, and `GET /models`.

use std::time::Duration;

use axum::http::StatusCode;
use contracts::jobs::{JobFailed, JobSucceeded, ResultLocation};
use contracts::{BusEvent, Envelope, JobEvent, JobId};
use serde_json::{Value, json};

use crate::api::{call, post_job};
use crate::support::{self, Api, token};

/// A bus event as EventBridge delivers `event` to the view.
fn delivered(event: impl Into<JobEvent>) -> BusEvent {
    let entry = Envelope::new(event.into(), "simulation").to_entry();
    BusEvent {
        version: Some("0".into()),
        id: uuid::Uuid::new_v4().to_string(),
        detail_type: entry.detail_type,
        source: entry.source,
        account: Some(emulator::ACCOUNT_ID.into()),
        time: None,
        region: Some(emulator::REGION.into()),
        resources: vec![],
        detail: serde_json::from_str(&entry.detail).expect("a detail"),
    }
}

/// A fresh bucket holding `result` at `results/<job>.json`, as the worker stores it.
async fn stored_result(api: &Api, job_id: &JobId, result: &Value) -> ResultLocation {
    let s3 = &api.deps.results.s3;
    let bucket = emulator::unique_name("results");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    let key = format!("results/{job_id}.json");
    let body = result.to_string();
    s3.put_object()
        .bucket(&bucket)
        .key(&key)
        .content_type("application/json")
        .body(body.clone().into_bytes().into())
        .send()
        .await
        .expect("put the result");
    ResultLocation {
        bucket,
        key,
        bytes: body.len() as u64,
    }
}

async fn succeed(api: &Api, job_id: &JobId, location: ResultLocation) {
    let event = JobSucceeded {
        job_id: job_id.clone(),
        summary: json!({"peakDay": 12}),
        result: location,
    };
    jobs::handle_job_event(delivered(event), &api.deps.jobs)
        .await
        .expect("the view applies JobSucceeded");
}

#[tokio::test]
async fn the_owner_is_sent_to_a_short_lived_link_of_the_stored_result_and_others_get_404() {
    let api = support::api().await;
    let job = post_job(&api, "alice").await;
    let job_id = JobId::parse(&job).expect("a job id");
    let result = json!({"model": "sir", "infected": {"p50": [5.0, 9.0, 14.0]}});
    let location = stored_result(&api, &job_id, &result).await;
    succeed(&api, &job_id, location).await;

    let uri = format!("/jobs/{job}/result");
    let answer = call(&api, "GET", &uri, Some(&token("alice")), None).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert_eq!(answer.cache_control.as_deref(), Some("no-store"));
    let link = answer.location.expect("a Location");
    // Locally the link is the emulator's, on the loopback address a browser can open.
    assert!(link.starts_with("http://127.0.0.1:"), "{link}");
    let expires = format!("X-Amz-Expires={}", jobs::RESULT_URL_TTL.as_secs());
    assert!(link.contains(&expires), "{link} lacks {expires}");

    // The link alone (no token) returns the stored result.
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a client");
    let fetched = http.get(&link).send().await.expect("the link answers");
    assert_eq!(fetched.status(), 200);
    let body: Value = fetched.json().await.expect("JSON");
    assert_eq!(body, result);
    // moto does not check signatures, so that a changed link is refused (as S3 refuses
    // it) cannot be shown here: docs/local-parity.md, "Left as moto has it".

    // Someone else, and an unknown job, get the same 404: nothing tells them apart.
    let mallory = call(&api, "GET", &uri, Some(&token("mallory")), None).await;
    let unknown = format!("/jobs/{}/result", JobId::generate());
    let nobody = call(&api, "GET", &unknown, Some(&token("alice")), None).await;
    assert_eq!(mallory.status, StatusCode::NOT_FOUND);
    assert_eq!(mallory.location, None);
    assert_eq!(
        (nobody.status, &nobody.body),
        (mallory.status, &mallory.body)
    );
    assert_eq!(mallory.body, json!({"error": "not found"}));
    // Without a token: 401.
    let anonymous = call(&api, "GET", &uri, None, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_job_without_a_result_answers_409_saying_why() {
    let api = support::api().await;
    let queued = post_job(&api, "alice").await;
    let answer = call(
        &api,
        "GET",
        &format!("/jobs/{queued}/result"),
        Some(&token("alice")),
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);
    let message = answer.body["error"].as_str().expect("a message");
    assert!(
        message.contains("is QUEUED") && message.contains("SUCCEEDED"),
        "{message}"
    );

    let failed = post_job(&api, "alice").await;
    let event = JobFailed {
        job_id: JobId::parse(&failed).expect("a job id"),
        error: "Model.Failed".into(),
        cause: "spin told to fail".into(),
    };
    jobs::handle_job_event(delivered(event), &api.deps.jobs)
        .await
        .expect("the view applies JobFailed");
    let answer = call(
        &api,
        "GET",
        &format!("/jobs/{failed}/result"),
        Some(&token("alice")),
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);
    let message = answer.body["error"].as_str().expect("a message");
    assert!(message.contains("failed"), "{message}");
    // Still another user's job is a 404, whatever its state.
    let answer = call(
        &api,
        "GET",
        &format!("/jobs/{failed}/result"),
        Some(&token("mallory")),
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

/// Out-of-range params of a built-in model: `400` naming the field and the fix, with
/// `field` in the body, and nothing published or written.
#[tokio::test]
async fn invalid_params_of_a_built_in_model_are_refused_at_submit_naming_the_field() {
    let api = support::api().await;
    let cases = [
        (
            json!({"model": "sir", "params": {"population": 100, "initialInfected": 500, "beta": 0.3, "gamma": 0.1, "days": 30}}),
            "params.initialInfected",
            "must be between 1 and population (100), got 500",
        ),
        (
            json!({"model": "sir", "params": {"population": 100, "initialInfected": 5, "beta": 0.3, "gamma": 0.1, "days": 3651}}),
            "params.days",
            "must be between 1 and 3650, got 3651",
        ),
        (
            json!({"model": "sir", "params": {"population": 100, "initialInfected": 5, "beta": -1, "gamma": 0.1, "days": 30}}),
            "params.beta",
            "must be a number > 0",
        ),
        (
            json!({"model": "sir", "params": {"population": 100, "initialInfected": 5, "betta": 0.3, "gamma": 0.1, "days": 30}}),
            "params.betta",
            "unknown field",
        ),
        (
            json!({"model": "spin", "params": {"durationMs": 3_600_001}}),
            "params.durationMs",
            "must be at most 3600000",
        ),
        (
            json!({"model": "spin", "params": {"mode": "explode"}}),
            "params.mode",
            "unknown variant",
        ),
    ];
    for (body, field, fix) in cases {
        let answer = call(
            &api,
            "POST",
            "/jobs",
            Some(&token("alice")),
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            answer.body
        );
        let message = answer.body["error"].as_str().expect("a message");
        assert!(
            message.starts_with(&format!("invalid request: field `{field}`: ")),
            "{message}"
        );
        assert!(message.contains(fix), "{message} lacks {fix}");
        assert_eq!(answer.body["field"], json!(field));
    }
    // Nothing was published, so no execution starts, and no job was recorded.
    assert!(crate::api::published(&api).await.is_empty());
    let list = call(&api, "GET", "/jobs", Some(&token("alice")), None).await;
    assert_eq!(list.body["jobs"], json!([]));
}

/// A name that is not built in may be an `exec` model of the workers' deployment: the
/// API accepts it, the worker judges it.
#[tokio::test]
async fn other_model_names_are_left_to_the_workers() {
    let api = support::api().await;
    let body = json!({"model": "my-exec-model", "params": {"anything": [1, 2]}});
    let answer = call(
        &api,
        "POST",
        "/jobs",
        Some(&token("alice")),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
}

#[tokio::test]
async fn get_models_serves_the_catalog_to_a_signed_in_user() {
    let api = support::api().await;
    let answer = call(&api, "GET", "/models", Some(&token("alice")), None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let catalog: contracts::models::Catalog =
        serde_json::from_value(answer.body).expect("a catalog");
    assert_eq!(catalog, contracts::models::catalog());
    let names: Vec<_> = catalog.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["sir", "spin"]);
    let anonymous = call(&api, "GET", "/models", None, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}
