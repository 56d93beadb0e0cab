//! Helpers of the scenarios: events, failures published as Lambda does, queue depths, a
//! stand-in Lambda Invoke API and a topology of two functions.

// The helpers below are test code too: like the tests, they panic on any failure
// (`allow-unwrap-in-tests` only covers `#[test]` functions themselves).
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub fn sns_attribute(data_type: &str, value: &str) -> aws_sdk_sns::types::MessageAttributeValue {
    aws_sdk_sns::types::MessageAttributeValue::builder()
        .data_type(data_type)
        .string_value(value)
        .build()
        .unwrap()
}

pub fn job_event(job: &str) -> Value {
    json!({
        "version": "0",
        "id": format!("evt-{job}"),
        "detail-type": "JobRequested",
        "source": "fleet.jobs",
        "account": emulator::ACCOUNT_ID,
        "time": "2026-01-01T00:00:00Z",
        "region": emulator::REGION,
        "resources": [],
        "detail": {
            "model": "sir", "params": {"beta": 0.3}, "jobId": job,
            "meta": {"eventId": format!("evt-{job}"), "schemaVersion": 1,
                     "occurredAt": "2026-01-01T00:00:00Z", "producer": "jobs-api", "correlationId": job}
        }
    })
}

/// Publishes a failed asynchronous invocation to the failures topic exactly as Lambda
/// (and the local host) do: the original event, with `RequestID`, `ErrorCode` and
/// `ErrorMessage`.
pub async fn lambda_failure(
    sdk: &aws_config::SdkConfig,
    stage: &str,
    event: &Value,
    request_id: &str,
) {
    let sns = aws_sdk_sns::Client::new(sdk);
    let topic = format!(
        "arn:aws:sns:{}:{}:fleet-{stage}-failures",
        emulator::REGION,
        emulator::ACCOUNT_ID
    );
    sns.publish()
        .topic_arn(topic)
        .message(event.to_string())
        .message_attributes("RequestID", sns_attribute("String", request_id))
        .message_attributes("ErrorCode", sns_attribute("Number", "200"))
        .message_attributes(
            "ErrorMessage",
            sns_attribute("String", "the model registry is down"),
        )
        .send()
        .await
        .unwrap();
}

pub async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.get_queue_url()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

/// One call of the test Lambda Invoke endpoint.
#[derive(Debug, Clone)]
pub struct Invoked {
    pub function: String,
    pub invocation_type: String,
    pub payload: Value,
}

/// A stand-in for the Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`)
/// that records each call and accepts it, as Lambda does an asynchronous invocation.
pub struct InvokeServer {
    pub url: String,
    calls: Arc<Mutex<Vec<Invoked>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl InvokeServer {
    pub async fn start() -> InvokeServer {
        use axum::extract::{Path, State};
        use axum::http::{HeaderMap, StatusCode};
        let calls: Arc<Mutex<Vec<Invoked>>> = Arc::default();
        let app = axum::Router::new()
            .route(
                "/2015-03-31/functions/{name}/invocations",
                axum::routing::post(
                    |State(calls): State<Arc<Mutex<Vec<Invoked>>>>,
                     Path(name): Path<String>,
                     headers: HeaderMap,
                     body: axum::body::Bytes| async move {
                        let invocation_type = headers
                            .get("x-amz-invocation-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("RequestResponse")
                            .to_owned();
                        let payload = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        calls.lock().unwrap().push(Invoked {
                            function: name,
                            invocation_type,
                            payload,
                        });
                        StatusCode::ACCEPTED
                    },
                ),
            )
            .with_state(Arc::clone(&calls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let shutdown = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
                .unwrap();
        });
        InvokeServer {
            url,
            calls,
            stop,
            task,
        }
    }

    pub fn calls(&self) -> Vec<Invoked> {
        self.calls.lock().unwrap().clone()
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

/// A topology whose failures queue is fed by two functions with rules, one event type
/// each, and nothing for other events.
pub fn topology_with_functions(stage: &str) -> topology::Topology {
    use topology::{Function, Rule, Service, Target};
    let stage = topology::Stage::new(stage).unwrap();
    topology::Topology::new(
        &stage,
        vec![
            topology::core(),
            Service::new("jobs")
                .with(Function::asynchronous("on-requested"))
                .with(Function::asynchronous("on-failed"))
                .with(
                    Rule::new(
                        "requested",
                        json!({"source": ["fleet.jobs"], "detail-type": ["JobRequested"]}),
                    )
                    .target(Target::Function("on-requested".into())),
                )
                .with(
                    Rule::new(
                        "failed",
                        json!({"source": [{"prefix": "fleet."}], "detail-type": ["JobFailed"]}),
                    )
                    .target(Target::Function("on-failed".into())),
                ),
        ],
    )
}
