//! The on-call tools against the emulator: `fleet dlq`, `fleet runs`, `fleet tokens` and
//! `fleet events tail`, run as a user runs them (the library's own scenarios, for what the
//! stage's own topology cannot show, are `fleet-ops`'s tests).

// The helpers below are test code too: like the tests, they panic on any failure
// (`allow-unwrap-in-tests` only covers `#[test]` functions themselves).
#![allow(clippy::unwrap_used)]

mod dlq;
mod runs;
mod tail;

use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::MessageAttributeValue;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Runs the `fleet` binary against the emulator with `env` added.
async fn fleet_with(env: &[(&str, &str)], args: &[&str]) -> Output {
    let emulator = emulator::test_emulator().await;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleet"));
    command
        .args(args)
        .env_remove("FLEET_STAGE")
        .env_remove("AWS_PROFILE")
        .env("AWS_ENDPOINT_URL", emulator.endpoint())
        .env("AWS_REGION", emulator::REGION)
        .env("AWS_ACCESS_KEY_ID", emulator::ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", emulator::SECRET_ACCESS_KEY)
        .stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().await.expect("the fleet binary runs")
}

async fn fleet(args: &[&str]) -> Output {
    fleet_with(&[], args).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the binary, expects success and parses its JSON output.
async fn fleet_json(args: &[&str]) -> Value {
    let out = fleet(args).await;
    assert!(
        out.status.success(),
        "fleet {args:?}: {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "fleet {args:?} printed no JSON ({e}): {}",
            text(&out.stdout)
        )
    })
}

async fn deploy(stage: &str) {
    let out = fleet(&["--stage", stage, "infra", "deploy"]).await;
    assert!(out.status.success(), "deploy: {}", text(&out.stderr));
}

fn attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .unwrap()
}

fn sns_attribute(data_type: &str, value: &str) -> aws_sdk_sns::types::MessageAttributeValue {
    aws_sdk_sns::types::MessageAttributeValue::builder()
        .data_type(data_type)
        .string_value(value)
        .build()
        .unwrap()
}

fn job_event(job: &str) -> Value {
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
async fn lambda_failure(sdk: &aws_config::SdkConfig, stage: &str, event: &Value, request_id: &str) {
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

async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.get_queue_url()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

/// Takes every message of a queue, returning the bodies.
async fn drain(sqs: &aws_sdk_sqs::Client, url: &str, expected: usize) -> Vec<String> {
    let mut bodies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while bodies.len() < expected && Instant::now() < deadline {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for m in out.messages() {
            bodies.push(m.body().unwrap_or_default().to_owned());
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    bodies
}

/// One call of the test Lambda Invoke endpoint.
#[derive(Debug, Clone)]
struct Invoked {
    function: String,
    invocation_type: String,
    payload: Value,
}

/// A stand-in for the Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`)
/// that records each call and accepts it, as Lambda does an asynchronous invocation.
struct InvokeServer {
    url: String,
    calls: Arc<Mutex<Vec<Invoked>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl InvokeServer {
    async fn start() -> InvokeServer {
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

    fn calls(&self) -> Vec<Invoked> {
        self.calls.lock().unwrap().clone()
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}
