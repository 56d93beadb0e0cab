//! The contracts as a consumer sees them: fixtures, schemas, and errors that name fields.

// Tests may panic on what they did not expect: that is how they fail.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use contracts::envelope::SCHEMA_VERSION;
use contracts::jobs::{JobRequested, JobSucceeded, ResultLocation};
use contracts::tasks::SimulationTask;
use contracts::{BusEvent, ContractError, Entry, Envelope, JobEvent, JobId, Received};
use serde_json::{Value, json};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn received() -> Received<'static> {
    Received {
        id: "evt-1",
        source: "acme.upstream",
        time: None,
    }
}

/// Decodes `detail` as `detail_type`, expecting an error about `field`.
fn check_error(detail_type: &str, detail: Value, field: &str) -> ContractError {
    let err = JobEvent::decode(detail_type, &detail, &received()).expect_err("should be refused");
    assert_eq!(err.field(), field, "wrong field in: {err}");
    assert!(
        err.to_string().contains(field),
        "message must name `{field}`: {err}"
    );
    err
}

#[test]
fn schemas_are_committed_and_fresh() {
    let dir = crate_dir().join("schemas");
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let mut stale = Vec::new();
    for (name, schema) in contracts::schema::all() {
        let path = dir.join(format!("{name}.json"));
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        if update {
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale JSON Schemas: {stale:?}; regenerate with `UPDATE_SCHEMAS=1 cargo test -p contracts`"
    );
}

#[test]
fn every_fixture_round_trips_through_the_types() {
    let fixtures = std::fs::read_dir(crate_dir().join("fixtures")).unwrap();
    let mut seen = 0;
    for entry in fixtures {
        let path = entry.unwrap().path();
        let event = BusEvent::from_json(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let decoded = JobEvent::decode(&event.detail_type, &event.detail, &event.received())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let again = JobEvent::decode(&event.detail_type, &decoded.detail(), &received()).unwrap();
        assert_eq!(decoded, again, "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 7, "expected the fixtures of every detail-type");
}

#[test]
fn an_upstream_job_request_needs_only_model_and_params() {
    let text =
        std::fs::read_to_string(crate_dir().join("fixtures/job-requested.upstream.json")).unwrap();
    let event = BusEvent::from_json(&text).unwrap();
    let envelope = JobEvent::decode(&event.detail_type, &event.detail, &event.received()).unwrap();
    // Metadata derives from EventBridge's envelope when the producer sent none.
    assert_eq!(envelope.meta.event_id, event.id);
    assert_eq!(envelope.meta.producer, "acme.billing");
    assert_eq!(envelope.meta.schema_version, SCHEMA_VERSION);
    let JobEvent::Requested(request) = envelope.event else {
        panic!("not a JobRequested");
    };
    assert_eq!(request.model, "sir");
    assert_eq!(request.requested_by.as_deref(), Some("billing-service"));
    assert_eq!(request.job_id, None);

    let minimal = json!({"model": "sir", "params": {}});
    JobEvent::decode("JobRequested", &minimal, &received()).unwrap();
}

#[test]
fn malformed_job_requests_name_the_field() {
    check_error("JobRequested", json!({"params": {}}), "model");
    check_error("JobRequested", json!({"model": "sir"}), "params");
    check_error(
        "JobRequested",
        json!({"model": "sir", "params": [1, 2]}),
        "params",
    );
    check_error(
        "JobRequested",
        json!({"model": "Not A Model", "params": {}}),
        "model",
    );
    check_error(
        "JobRequested",
        json!({"model": "sir", "params": {}, "jobId": "has spaces"}),
        "jobId",
    );
    check_error(
        "JobRequested",
        json!({"model": "sir", "params": {}, "requestedBy": 7}),
        "requestedBy",
    );
    check_error(
        "JobProgress",
        json!({"jobId": "j1", "progress": 1.5}),
        "progress",
    );
    check_error(
        "JobSucceeded",
        json!({"jobId": "j1", "summary": {}, "result": {"bucket": "b", "key": "k"}}),
        "result.bytes",
    );
    check_error("JobRequested", json!("not an object"), "detail");
    check_error(
        "JobRequested",
        json!({"model": "sir", "params": {}, "meta": {"schemaVersion": 1}}),
        "meta.eventId",
    );
}

#[test]
fn a_newer_schema_version_is_refused_with_the_supported_one() {
    let err = check_error(
        "JobStarted",
        json!({"jobId": "j1", "worker": "w", "attempt": 1, "meta": {"schemaVersion": 2}}),
        "meta.schemaVersion",
    );
    assert!(matches!(
        err,
        ContractError::UnsupportedVersion {
            found: 2,
            supported: 1,
            ..
        }
    ));
}

#[test]
fn an_unknown_detail_type_lists_the_known_ones() {
    let err = check_error("JobExploded", json!({}), "detail-type");
    assert!(err.to_string().contains("JobSucceeded"), "{err}");
}

#[test]
fn published_events_carry_the_envelope() {
    let job_id = JobId::generate();
    let event = JobSucceeded {
        job_id: job_id.clone(),
        summary: json!({"peak": 3}),
        result: ResultLocation {
            bucket: "b".into(),
            key: "k".into(),
            bytes: 9,
        },
    };
    let envelope = Envelope::new(JobEvent::from(event), "simulation");
    let entry = envelope.to_entry();
    assert_eq!(entry.source, "fleet.jobs");
    assert_eq!(entry.detail_type, "JobSucceeded");
    let detail: Value = serde_json::from_str(&entry.detail).unwrap();
    assert_eq!(detail["meta"]["correlationId"], job_id.as_str());
    assert_eq!(detail["meta"]["producer"], "simulation");
    assert_eq!(detail["meta"]["schemaVersion"], 1);
    assert!(
        detail["meta"]["occurredAt"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(detail["result"]["bytes"], 9);
}

#[test]
fn a_raw_entry_needs_an_object_detail() {
    for bad in [json!([1]), json!("x"), json!(3), json!(null)] {
        let err = Entry::new("s", "t", &bad).unwrap_err();
        assert_eq!(err.field(), "detail");
    }
    assert!(Entry::new("", "t", &json!({})).is_err());
    assert!(Entry::new("s", "t", &json!({"a": 1})).is_ok());
}

#[test]
fn a_simulation_task_names_its_bad_field() {
    let err =
        SimulationTask::from_body(r#"{"taskToken":"t","jobId":"j","model":"sir"}"#).unwrap_err();
    assert_eq!(err.field(), "params");
    let err = SimulationTask::from_body("not json").unwrap_err();
    assert_eq!(err.field(), "(body)");
    let ok =
        SimulationTask::from_body(r#"{"taskToken":"t","jobId":"j","model":"sir","params":{}}"#);
    assert!(ok.is_ok());
}

#[test]
fn job_requested_serializes_camel_case_without_empty_options() {
    let request = JobRequested {
        model: "sir".into(),
        params: serde_json::Map::new(),
        job_id: None,
        idempotency_key: Some("k".into()),
        requested_by: None,
    };
    let value = serde_json::to_value(request).unwrap();
    assert_eq!(
        value,
        json!({"model": "sir", "params": {}, "idempotencyKey": "k"})
    );
}

#[test]
fn control_frames_carry_the_data_clients_read() {
    use contracts::frames::{Discontinuity, DiscontinuityReason, ErrorData, Frame, Subscribed};
    let lost = Frame::discontinuity(
        "job:a",
        Discontinuity {
            since: 0,
            resume_after: 4,
            reason: DiscontinuityReason::Expired,
        },
    );
    assert_eq!(
        serde_json::to_value(&lost).unwrap(),
        json!({"channel": "job:a", "offset": 4, "type": "discontinuity",
               "data": {"since": 0, "resumeAfter": 4, "reason": "expired"}})
    );
    assert!(lost.is_stream(), "a discontinuity is part of the stream");
    let subscribed = Frame::subscribed(
        "user:a",
        Subscribed {
            head: 7,
            replayed: 3,
        },
    );
    assert_eq!(
        (subscribed.offset, subscribed.kind.as_str()),
        (0, "subscribed")
    );
    assert_eq!(subscribed.data, json!({"head": 7, "replayed": 3}));
    let refused = Frame::error("job:b", "forbidden", "not your job");
    let data: ErrorData = serde_json::from_value(refused.data).unwrap();
    assert_eq!(
        (data.code.as_str(), data.message.as_str()),
        ("forbidden", "not your job")
    );
    assert_eq!(
        serde_json::to_value(Frame::pong()).unwrap(),
        json!({"channel": "", "offset": 0, "type": "pong", "data": {}})
    );
    assert_eq!(
        serde_json::to_value(Frame::unsubscribed("job:c")).unwrap(),
        json!({"channel": "job:c", "offset": 0, "type": "unsubscribed", "data": {}})
    );
}

#[test]
fn http_answers_have_the_documented_shape() {
    use contracts::http::ErrorBody;
    use contracts::jobs::{JobAccepted, JobPage};
    let job = JobId::parse("job-1").unwrap();
    assert_eq!(
        serde_json::to_value(JobAccepted { job_id: job }).unwrap(),
        json!({"jobId": "job-1"})
    );
    let last = JobPage {
        jobs: Vec::new(),
        next_token: None,
    };
    assert_eq!(serde_json::to_value(&last).unwrap(), json!({"jobs": []}));
    let page: JobPage = serde_json::from_value(json!({"jobs": [], "nextToken": "t"})).unwrap();
    assert_eq!(page.next_token.as_deref(), Some("t"));
    assert_eq!(
        serde_json::to_value(ErrorBody::new("not found")).unwrap(),
        json!({"error": "not found"})
    );
}

/// The catalog `GET /models` serves describes exactly what the models' checks accept: its
/// defaults pass, and each declared bound is where the check starts refusing, naming
/// the parameter.
#[test]
fn the_model_catalog_matches_the_checks() {
    use contracts::models::{self, ParamKind};
    for model in models::catalog().models {
        let defaults: serde_json::Map<String, Value> = model
            .params
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.default.clone()?)))
            .collect();
        let check = |params: &serde_json::Map<String, Value>| {
            models::check(&model.name, &Value::Object(params.clone()))
                .expect("a catalog model is built in")
        };
        assert_eq!(check(&defaults), Ok(()), "{}'s defaults", model.name);
        for param in &model.params {
            let field = format!("params.{}", param.name);
            let refused = |value: Value| {
                let mut params = defaults.clone();
                params.insert(param.name.clone(), value.clone());
                let error = check(&params).expect_err(&format!("{field} = {value} is refused"));
                assert_eq!(error.field, field, "{value}: {error}");
            };
            let accepted = |value: Value| {
                let mut params = defaults.clone();
                params.insert(param.name.clone(), value.clone());
                assert_eq!(check(&params), Ok(()), "{field} = {value}");
            };
            if let Some(max) = param.maximum {
                accepted(json!(max as u64));
                refused(json!(max as u64 + 1));
            }
            if let Some(min) = param.minimum
                && min >= 1.0
            {
                refused(json!(min as u64 - 1));
            }
            if param.exclusive_minimum == Some(0.0) {
                refused(json!(0.0));
                accepted(json!(0.5));
            }
            if param.kind == ParamKind::Choice {
                for choice in &param.choices {
                    accepted(json!(choice));
                }
                refused(json!("no-such-choice"));
            }
            if !param.required {
                let mut params = defaults.clone();
                params.remove(&param.name);
                assert_eq!(check(&params), Ok(()), "{field} may be left out");
            } else {
                let mut params = defaults.clone();
                params.remove(&param.name);
                assert_eq!(
                    check(&params).unwrap_err().field,
                    field,
                    "{field} is required"
                );
            }
        }
    }
    assert_eq!(models::check("an-exec-model", &json!({})), None);
}
