//! The on-call tools against the emulator: `fleet dlq`, `fleet runs`, `fleet tokens` and
//! `fleet events tail`, run as a user runs them, plus the library for what the stage's
//! own topology cannot show (a rule-target DLQ, functions that share an event).

// The helpers below are test code too: like the tests, they panic on any failure
// (`allow-unwrap-in-tests` only covers `#[test]` functions themselves).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};
use fleet::ops::{Ops, dlq};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
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

/// Polls `check` until it returns `Some`, failing after `limit`.
async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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

/// (visible, in flight)
async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> (u64, u64) {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let get = |n: QueueAttributeName| out.attributes().unwrap()[&n].parse().unwrap();
    (
        get(QueueAttributeName::ApproximateNumberOfMessages),
        get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
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

/// The acceptance scenario: a poisoned worker queue and an always-failing Lambda handler.
#[tokio::test]
async fn dead_letters_are_listed_shown_and_redriven_without_losing_a_message() {
    let emulator = emulator::test_emulator().await;
    let sdk = emulator.sdk_config();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let stage = emulator::unique_stage();
    deploy(&stage).await;
    let work_url = queue_url(&sqs, &format!("fleet-{stage}-simulation")).await;
    let dlq_url = queue_url(&sqs, &format!("fleet-{stage}-simulation-dlq")).await;
    let failures_url = queue_url(&sqs, &format!("fleet-{stage}-failures")).await;

    // Two poison messages dead-lettered by the worker at once, with its reason attributes.
    let secret = "AAAAKgAAAAIAAAAAAAAAAsecret-task-token-do-not-print";
    let mut poisoned = Vec::new();
    for n in 0..2 {
        let body = json!({"taskToken": format!("{secret}-{n}"), "jobId": format!("job-{n}"), "model": "nope", "params": {}})
            .to_string();
        sqs.send_message()
            .queue_url(&dlq_url)
            .message_body(&body)
            .message_attributes("fleet.error", attribute("Model.UnknownModel"))
            .message_attributes(
                "fleet.reason",
                attribute("no model named `nope` is installed"),
            )
            .message_attributes("fleet.source-queue", attribute(&work_url))
            .message_attributes("fleet.receive-count", attribute("1"))
            .message_attributes("fleet.failed-at", attribute("2026-01-01T00:00:00Z"))
            .message_attributes("fleet.worker", attribute("worker-1"))
            .send()
            .await
            .unwrap();
        poisoned.push(body);
    }
    // One that kept failing until the queue's redrive policy (5 receives) moved it.
    let retried =
        json!({"taskToken": format!("{secret}-2"), "jobId": "job-2", "model": "sir", "params": {}})
            .to_string();
    sqs.send_message()
        .queue_url(&work_url)
        .message_body(&retried)
        .send()
        .await
        .unwrap();
    eventually(
        "the redrive policy to move the message",
        Duration::from_secs(20),
        || async {
            sqs.receive_message()
                .queue_url(&work_url)
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
            (depth(&sqs, &dlq_url).await.0 == 3).then_some(())
        },
    )
    .await;
    poisoned.push(retried);
    // Two events an asynchronous function failed on every retry.
    let events = [job_event("job-10"), job_event("job-11")];
    for (n, event) in events.iter().enumerate() {
        lambda_failure(&sdk, &stage, event, &format!("req-{n}")).await;
    }
    eventually(
        "the failures to reach the failures queue",
        Duration::from_secs(20),
        || async { (depth(&sqs, &failures_url).await.0 == 2).then_some(()) },
    )
    .await;

    // `dlq ls --json`: both DLQs, their kinds and depths.
    let listed = fleet_json(&["--stage", &stage, "--json", "dlq", "ls"]).await;
    let by_name: BTreeMap<String, &Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["name"].as_str().unwrap().to_owned(), d))
        .collect();
    let sim = by_name[&format!("fleet-{stage}-simulation-dlq")];
    assert_eq!(sim["kind"], "sqs-redrive");
    assert_eq!(sim["depth"], 3);
    assert_eq!(
        sim["sources"][0]["name"],
        format!("fleet-{stage}-simulation")
    );
    assert!(sim["oldest_age_seconds"].is_u64(), "{sim}");
    let failures = by_name[&format!("fleet-{stage}-failures")];
    assert_eq!(failures["kind"], "lambda-failures");
    assert_eq!(failures["depth"], 2);
    let table = fleet(&["--stage", &stage, "dlq", "ls"]).await;
    assert!(table.status.success());
    let table = text(&table.stdout);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("lambda-failures") && table.contains("sqs-redrive"),
        "{table}"
    );

    // `dlq show`: the reasons, without consuming and without printing a task token.
    let shown = fleet_json(&["--stage", &stage, "--json", "dlq", "show", "simulation-dlq"]).await;
    let shown = shown.as_array().unwrap();
    assert_eq!(shown.len(), 3);
    let worker = shown
        .iter()
        .find(|m| m["reason"]["kind"] == "worker")
        .unwrap();
    assert_eq!(worker["reason"]["error"], "Model.UnknownModel");
    assert_eq!(
        worker["reason"]["reason"],
        "no model named `nope` is installed"
    );
    assert_eq!(worker["receive_count"], 1);
    assert_eq!(worker["first_failed_at"], "2026-01-01T00:00:00Z");
    assert_eq!(worker["body"]["kind"], "simulation-task");
    assert!(
        worker["correlation_id"]
            .as_str()
            .unwrap()
            .starts_with("job-")
    );
    let moved = shown
        .iter()
        .find(|m| m["reason"]["kind"] == "max-receives")
        .unwrap();
    assert_eq!(moved["reason"]["max_receive_count"], 5);
    assert_eq!(moved["correlation_id"], "job-2");
    let human = fleet(&["--stage", &stage, "dlq", "show", "simulation-dlq"]).await;
    let human = text(&human.stdout);
    assert!(
        human.contains("Model.UnknownModel: no model named `nope` is installed"),
        "{human}"
    );
    assert!(!human.contains(secret) && !shown.iter().any(|m| m.to_string().contains(secret)));
    let lambda = fleet_json(&["--stage", &stage, "--json", "dlq", "show", "failures"]).await;
    let lambda = lambda.as_array().unwrap();
    assert_eq!(lambda.len(), 2);
    for m in lambda {
        assert_eq!(m["reason"]["kind"], "lambda");
        assert_eq!(m["reason"]["error_code"], "200");
        assert_eq!(m["reason"]["error_message"], "the model registry is down");
        assert!(
            m["reason"]["request_id"]
                .as_str()
                .unwrap()
                .starts_with("req-")
        );
        assert_eq!(m["body"]["decoded"], "JobRequested v1");
        assert!(m["correlation_id"].as_str().unwrap().starts_with("job-1"));
    }
    // Peeking left every message visible.
    assert_eq!(depth(&sqs, &dlq_url).await, (3, 0));
    assert_eq!(depth(&sqs, &failures_url).await, (2, 0));

    // `dlq export`: JSON lines, tokens redacted, nothing consumed.
    let exported = fleet(&["--stage", &stage, "dlq", "export", "simulation-dlq"]).await;
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    let lines: Vec<Value> = text(&exported.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(!text(&exported.stdout).contains(secret));
    assert_eq!(depth(&sqs, &dlq_url).await, (3, 0));

    // The cause is fixed: redrive both.
    let lambda_api = InvokeServer::start().await;
    let out = fleet(&["--stage", &stage, "dlq", "redrive", "simulation-dlq"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("redrove 3 message(s)"),
        "{}",
        text(&out.stdout)
    );
    // JobRequested feeds two functions (jobs-requested and notifier-events): the failure
    // does not say which one failed, so the redrive asks rather than guesses.
    let ambiguous = fleet_with(
        &[("AWS_ENDPOINT_URL_LAMBDA", &lambda_api.url)],
        &["--stage", &stage, "--json", "dlq", "redrive", "failures"],
    )
    .await;
    let said = format!("{}{}", text(&ambiguous.stdout), text(&ambiguous.stderr));
    assert!(
        said.contains("jobs-requested")
            && said.contains("notifier-events")
            && said.contains("--function"),
        "{said}"
    );
    assert_eq!(
        depth(&sqs, &failures_url).await.0,
        2,
        "nothing was redriven or lost"
    );
    let out = fleet_with(
        &[("AWS_ENDPOINT_URL_LAMBDA", &lambda_api.url)],
        &[
            "--stage",
            &stage,
            "--json",
            "dlq",
            "redrive",
            "failures",
            "--function",
            "jobs-requested",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["redriven"], 2, "{report}");

    // Nothing lost: both DLQs are empty and every message arrived where it failed.
    assert_eq!(depth(&sqs, &dlq_url).await, (0, 0));
    assert_eq!(depth(&sqs, &failures_url).await, (0, 0));
    let mut arrived = drain(&sqs, &work_url, 3).await;
    arrived.sort();
    poisoned.sort();
    assert_eq!(arrived, poisoned);
    let calls = lambda_api.calls();
    lambda_api.stop().await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    for call in &calls {
        assert_eq!(call.function, format!("fleet-{stage}-jobs-requested"));
        assert_eq!(call.invocation_type, "Event");
    }
    let mut payloads: Vec<String> = calls.iter().map(|c| c.payload.to_string()).collect();
    let mut originals: Vec<String> = events.iter().map(Value::to_string).collect();
    payloads.sort();
    originals.sort();
    assert_eq!(payloads, originals, "re-delivered as the original events");
}

/// A topology whose failures queue is fed by two functions with rules, one event type
/// each, and nothing for other events.
fn topology_with_functions(stage: &str) -> topology::Topology {
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

/// A destination that refuses the first copy stops the redrive, and the messages of the
/// batch it had not reached yet are visible again at once, not after their visibility
/// timeout.
#[tokio::test]
async fn a_failed_send_leaves_the_rest_of_the_batch_visible() {
    let emulator = emulator::test_emulator().await;
    let sdk = emulator.sdk_config();
    let stage = emulator::unique_stage();
    let topology = topology_with_functions(&stage);
    topology::deploy(&topology, &sdk).await.unwrap();
    // Nothing listens there: every Invoke fails.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut ops = Ops::new(topology, &sdk);
    ops.lambda = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::config::Builder::from(&sdk)
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let failures_url = queue_url(&sqs, &format!("fleet-{stage}-failures")).await;
    for n in 0..3 {
        let mut failed = job_event(&format!("job-{n}"));
        failed["detail-type"] = json!("JobFailed");
        lambda_failure(&sdk, &stage, &failed, &format!("req-{n}")).await;
    }
    eventually("three failures", Duration::from_secs(20), || async {
        (depth(&sqs, &failures_url).await.0 == 3).then_some(())
    })
    .await;
    let queue = dlq::resolve(&ops, "failures").await.unwrap();
    let report = dlq::redrive(&ops, &queue, &dlq::RedriveOptions::default())
        .await
        .unwrap();
    assert_eq!(report.redriven, 0, "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(
        depth(&sqs, &failures_url).await,
        (3, 0),
        "every message is visible again for the next try"
    );
}

#[tokio::test]
async fn lambda_failures_go_back_to_the_function_whose_rules_match_with_filter_max_and_dry_run() {
    let emulator = emulator::test_emulator().await;
    let sdk = emulator.sdk_config();
    let stage = emulator::unique_stage();
    let topology = topology_with_functions(&stage);
    topology::deploy(&topology, &sdk).await.unwrap();
    let lambda_api = InvokeServer::start().await;
    let mut ops = Ops::new(topology, &sdk);
    ops.lambda = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::config::Builder::from(&sdk)
            .endpoint_url(&lambda_api.url)
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let failures_url = queue_url(&sqs, &format!("fleet-{stage}-failures")).await;

    let mut failed = job_event("job-f");
    failed["detail-type"] = json!("JobFailed");
    let unmatched =
        json!({"id": "e-x", "source": "acme.other", "detail-type": "Ping", "detail": {}});
    for (n, event) in [
        job_event("job-a"),
        job_event("job-b"),
        failed.clone(),
        unmatched.clone(),
    ]
    .iter()
    .enumerate()
    {
        lambda_failure(&sdk, &stage, event, &format!("req-{n}")).await;
    }
    eventually("four failures", Duration::from_secs(20), || async {
        (depth(&sqs, &failures_url).await.0 == 4).then_some(())
    })
    .await;

    // An EventBridge target DLQ is discovered from the rules.
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let target_dlq = format!("fleet-{stage}-audit-target-dlq");
    sqs.create_queue()
        .queue_name(&target_dlq)
        .send()
        .await
        .unwrap();
    events
        .put_rule()
        .name(format!("fleet-{stage}-audit"))
        .event_bus_name(format!("fleet-{stage}"))
        .event_pattern(json!({"source": ["fleet.jobs"]}).to_string())
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule(format!("fleet-{stage}-audit"))
        .event_bus_name(format!("fleet-{stage}"))
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("audit")
                .arn(format!(
                    "arn:aws:sqs:{}:{}:fleet-{stage}-audit",
                    emulator::REGION,
                    emulator::ACCOUNT_ID
                ))
                .dead_letter_config(
                    aws_sdk_eventbridge::types::DeadLetterConfig::builder()
                        .arn(format!(
                            "arn:aws:sqs:{}:{}:{target_dlq}",
                            emulator::REGION,
                            emulator::ACCOUNT_ID
                        ))
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let listed = dlq::list(&ops).await.unwrap();
    let kinds: BTreeMap<&str, dlq::DlqKind> = listed
        .iter()
        .map(|s| (s.queue.name.as_str(), s.queue.kind))
        .collect();
    assert_eq!(kinds[target_dlq.as_str()], dlq::DlqKind::EventbridgeTarget);
    let failures = listed
        .iter()
        .find(|s| s.queue.kind == dlq::DlqKind::LambdaFailures)
        .unwrap();
    assert_eq!(failures.depth, 4);
    assert_eq!(
        failures.queue.sources,
        [
            dlq::DlqSource::Function {
                name: format!("fleet-{stage}-on-requested")
            },
            dlq::DlqSource::Function {
                name: format!("fleet-{stage}-on-failed")
            },
        ]
    );

    let queue = dlq::resolve(&ops, "failures").await.unwrap();
    // A dry run says where each would go, and that one needs --function; nothing moves.
    let dry = dlq::redrive(
        &ops,
        &queue,
        &dlq::RedriveOptions {
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(dry.redriven, 3, "{dry:?}");
    assert_eq!(
        dry.destinations[&format!("function fleet-{stage}-on-requested")],
        2
    );
    assert_eq!(
        dry.destinations[&format!("function fleet-{stage}-on-failed")],
        1
    );
    assert_eq!(dry.failed.len(), 1);
    assert!(dry.failed[0].needs_function && dry.failed[0].error.contains("--function"));
    assert!(lambda_api.calls().is_empty());
    assert_eq!(depth(&sqs, &failures_url).await, (4, 0));

    // --filter and --max: one JobRequested goes back, the rest stays.
    let one = dlq::redrive(
        &ops,
        &queue,
        &dlq::RedriveOptions {
            filter: Some(dlq::Filter::parse(r#"{"detail-type": ["JobRequested"]}"#).unwrap()),
            max: Some(1),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(one.redriven, 1, "{one:?}");
    assert_eq!(depth(&sqs, &failures_url).await, (3, 0));
    // A substring filter; then everything else the rules can place.
    let by_text = dlq::redrive(
        &ops,
        &queue,
        &dlq::RedriveOptions {
            filter: Some(dlq::Filter::parse("JobFailed").unwrap()),
            rate: Some(50.0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(by_text.redriven, 1, "{by_text:?}");
    let rest = dlq::redrive(&ops, &queue, &dlq::RedriveOptions::default())
        .await
        .unwrap();
    assert_eq!((rest.redriven, rest.failed.len()), (1, 1), "{rest:?}");
    assert_eq!(
        depth(&sqs, &failures_url).await,
        (1, 0),
        "the unmatched event stays"
    );

    let calls = lambda_api.calls();
    lambda_api.stop().await;
    let mut targets: Vec<(String, String)> = calls
        .iter()
        .map(|c| {
            (
                c.function.clone(),
                c.payload["detail"]["jobId"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        [
            (format!("fleet-{stage}-on-failed"), "job-f".to_owned()),
            (format!("fleet-{stage}-on-requested"), "job-a".to_owned()),
            (format!("fleet-{stage}-on-requested"), "job-b".to_owned()),
        ]
    );
    assert!(calls.iter().all(|c| c.invocation_type == "Event"));
}

#[tokio::test]
async fn purge_asks_for_confirmation_and_refuses_without_a_terminal() {
    let emulator = emulator::test_emulator().await;
    let sdk = emulator.sdk_config();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let stage = emulator::unique_stage();
    deploy(&stage).await;
    let url = queue_url(&sqs, &format!("fleet-{stage}-simulation-dlq")).await;
    sqs.send_message()
        .queue_url(&url)
        .message_body("poison")
        .send()
        .await
        .unwrap();

    let refused = fleet(&["--stage", &stage, "dlq", "purge", "simulation-dlq"]).await;
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("--yes"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(depth(&sqs, &url).await.0, 1);

    let unknown = fleet(&["--stage", &stage, "dlq", "show", "nope"]).await;
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown.stderr).contains("simulation-dlq"),
        "names the DLQs: {}",
        text(&unknown.stderr)
    );

    let purged = fleet(&["--stage", &stage, "dlq", "purge", "simulation-dlq", "--yes"]).await;
    assert!(purged.status.success(), "{}", text(&purged.stderr));
    eventually("the purge", Duration::from_secs(10), || async {
        (depth(&sqs, &url).await == (0, 0)).then_some(())
    })
    .await;
}

/// The stage's simulation-job state machine, created from its definition unless the
/// stage's deployment already did.
async fn simulation_job(sdk: &aws_config::SdkConfig, stage: &str) -> String {
    let sfn = aws_sdk_sfn::Client::new(sdk);
    let name = format!("fleet-{stage}-simulation-job");
    let machines = sfn.list_state_machines().send().await.unwrap();
    if let Some(m) = machines.state_machines().iter().find(|m| m.name() == name) {
        return m.state_machine_arn().to_owned();
    }
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let queue = queue_url(&sqs, &format!("fleet-{stage}-simulation")).await;
    let definition = std::fs::read_to_string(
        topology::default_definitions_dir().join("simulation-job.asl.json"),
    )
    .unwrap()
    .replace("${SimulationQueueUrl}", &queue)
    .replace("${EventBusName}", &format!("fleet-{stage}"));
    sfn.create_state_machine()
        .name(&name)
        .definition(definition)
        .role_arn(format!(
            "arn:aws:iam::{}:role/fleet-test",
            emulator::ACCOUNT_ID
        ))
        .send()
        .await
        .unwrap()
        .state_machine_arn()
        .to_owned()
}

/// Starts a job and takes its task from the simulation queue, as a worker would.
async fn start_job(sdk: &aws_config::SdkConfig, stage: &str, machine: &str) -> (String, String) {
    let sfn = aws_sdk_sfn::Client::new(sdk);
    let job = emulator::unique_name("job");
    sfn.start_execution()
        .state_machine_arn(machine)
        .name(&job)
        .input(json!({"jobId": job, "model": "sir", "params": {"beta": 0.3}}).to_string())
        .send()
        .await
        .unwrap();
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let url = queue_url(&sqs, &format!("fleet-{stage}-simulation")).await;
    let token = eventually(
        "the job's task on the simulation queue",
        Duration::from_secs(20),
        || async {
            let out = sqs
                .receive_message()
                .queue_url(&url)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            out.messages().iter().find_map(|m| {
                let body: Value = serde_json::from_str(m.body()?).ok()?;
                (body["jobId"] == job.as_str())
                    .then(|| body["taskToken"].as_str().map(str::to_owned))?
            })
        },
    )
    .await;
    (job, token)
}

async fn wait_status(sdk: &aws_config::SdkConfig, machine: &str, job: &str, status: &str) {
    let sfn = aws_sdk_sfn::Client::new(sdk);
    let arn = format!(
        "{}:{job}",
        machine.replacen(":stateMachine:", ":execution:", 1)
    );
    eventually(
        &format!("execution {job} to be {status}"),
        Duration::from_secs(30),
        || async {
            let out = sfn
                .describe_execution()
                .execution_arn(&arn)
                .send()
                .await
                .unwrap();
            (out.status().as_str() == status).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_failed_simulation_run_is_listed_and_its_timeline_names_the_failing_state() {
    let emulator = emulator::test_emulator().await;
    let sdk = emulator.sdk_config();
    let stage = emulator::unique_stage();
    deploy(&stage).await;
    let machine = simulation_job(&sdk, &stage).await;
    let (job, token) = start_job(&sdk, &stage, &machine).await;

    // The worker gives up on the job, through the CLI.
    let out = fleet(&[
        "--stage",
        &stage,
        "tokens",
        "fail",
        &token,
        "--error",
        "Model.Failed",
        "--cause",
        "diverged",
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_status(&sdk, &machine, &job, "FAILED").await;

    let failed = fleet_json(&[
        "--stage", &stage, "--json", "runs", "ls", "--status", "failed", "--since", "1h",
    ])
    .await;
    let names: Vec<&str> = failed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, [job.as_str()]);
    assert_eq!(
        failed[0]["machine"],
        format!("fleet-{stage}-simulation-job")
    );
    let succeeded = fleet_json(&[
        "--stage",
        &stage,
        "--json",
        "runs",
        "ls",
        "--status",
        "SUCCEEDED",
    ])
    .await;
    assert_eq!(succeeded, json!([]));
    let table = text(
        &fleet(&[
            "--stage",
            &stage,
            "runs",
            "ls",
            "--machine",
            "simulation-job",
        ])
        .await
        .stdout,
    );
    assert!(table.contains(&job) && table.contains("FAILED"), "{table}");

    let shown = fleet_json(&["--stage", &stage, "--json", "runs", "show", &job]).await;
    assert_eq!(shown["status"], "FAILED");
    assert_eq!(shown["error"], "Model.Failed");
    assert_eq!(shown["failed_state"], "Failed");
    assert_eq!(shown["first_error"]["state"], "Run");
    assert_eq!(shown["first_error"]["error"], "Model.Failed");
    let steps = shown["steps"].as_array().unwrap();
    let run = steps.iter().find(|s| s["state"] == "Run").unwrap();
    assert_eq!(run["outcome"], "caught");
    assert_eq!(run["resource"], "sqs:sendMessage.waitForTaskToken");
    assert!(run["token_wait"]["until"].is_string(), "{run}");
    assert!(!shown.to_string().contains(&token), "the token is redacted");
    let last = steps.last().unwrap();
    assert_eq!(
        (last["state"].as_str(), last["outcome"].as_str()),
        (Some("Failed"), Some("failed"))
    );

    let human = text(
        &fleet(&["--stage", &stage, "runs", "show", &job])
            .await
            .stdout,
    );
    assert!(human.contains("failed in  state Failed"), "{human}");
    assert!(
        human.contains("first error in state Run: Model.Failed"),
        "{human}"
    );
    assert!(
        human.contains("waited") && human.contains("on task token"),
        "{human}"
    );

    // RedriveExecution: on AWS it redrives; moto lacks it, and the message says so.
    let arn = shown["arn"].as_str().unwrap();
    let redrive = fleet(&["--stage", &stage, "runs", "redrive", arn]).await;
    if !redrive.status.success() {
        assert_eq!(redrive.status.code(), Some(1));
        let stderr = text(&redrive.stderr);
        assert!(
            stderr.contains("does not implement RedriveExecution"),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn tokens_ls_lists_a_job_waiting_on_its_worker_and_tokens_succeed_completes_it() {
    let emulator = emulator::test_emulator().await;
    let sdk = emulator.sdk_config();
    let stage = emulator::unique_stage();
    deploy(&stage).await;
    let machine = simulation_job(&sdk, &stage).await;
    let (job, token) = start_job(&sdk, &stage, &machine).await;

    let waiting = fleet_json(&["--stage", &stage, "--json", "tokens", "ls"]).await;
    let waiting = waiting.as_array().unwrap();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    let w = &waiting[0];
    assert_eq!(w["execution"], job.as_str());
    assert_eq!(w["state"], "Run");
    assert_eq!(w["token"], token.as_str());
    assert_eq!(w["heartbeat_seconds"], 60);
    assert_eq!(w["timeout_seconds"], 3600);
    assert!(w["timeout_left_seconds"].as_i64().unwrap() > 3500, "{w}");
    assert!(w["waited_seconds"].as_f64().unwrap() >= 0.0);
    let table = text(&fleet(&["--stage", &stage, "tokens", "ls"]).await.stdout);
    assert!(table.contains(&token) && table.contains("Run"), "{table}");

    let beat = fleet(&["--stage", &stage, "tokens", "heartbeat", &token]).await;
    assert!(beat.status.success(), "{}", text(&beat.stderr));
    let bad_output = fleet(&[
        "--stage", &stage, "tokens", "succeed", &token, "--output", "{nope",
    ])
    .await;
    assert_eq!(bad_output.status.code(), Some(2));

    let output = json!({
        "summary": {"peak": 0.4},
        "result": {"bucket": "results", "key": format!("{job}.json"), "bytes": 42},
        "worker": "on-call"
    });
    let done = fleet(&[
        "--stage",
        &stage,
        "tokens",
        "succeed",
        &token,
        "--output",
        &output.to_string(),
    ])
    .await;
    assert!(done.status.success(), "{}", text(&done.stderr));
    wait_status(&sdk, &machine, &job, "SUCCEEDED").await;
    let waiting = fleet_json(&["--stage", &stage, "--json", "tokens", "ls"]).await;
    assert_eq!(waiting, json!([]));

    let again = fleet(&["--stage", &stage, "tokens", "succeed", &token]).await;
    assert_eq!(again.status.code(), Some(1), "a used token is refused");
    let refusal = text(&again.stderr);
    assert!(
        refusal.contains("TaskTimedOut")
            && refusal.contains("no longer open")
            && refusal.contains("tokens ls"),
        "{refusal}"
    );
}

#[tokio::test]
async fn events_tail_prints_an_event_put_by_another_process_and_leaves_nothing_behind() {
    let emulator = emulator::test_emulator().await;
    let sdk = emulator.sdk_config();
    let stage = emulator::unique_stage();
    deploy(&stage).await;
    let mut tail = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleet"))
        .args(["--stage", &stage, "events", "tail"])
        .env_remove("FLEET_STAGE")
        .env_remove("AWS_PROFILE")
        .env("AWS_ENDPOINT_URL", emulator.endpoint())
        .env("AWS_REGION", emulator::REGION)
        .env("AWS_ACCESS_KEY_ID", emulator::ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", emulator::SECRET_ACCESS_KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("fleet events tail starts");
    let mut stdout = BufReader::new(tail.stdout.take().unwrap()).lines();
    let mut stderr = BufReader::new(tail.stderr.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            if line.contains("tailing bus") {
                return line;
            }
        }
        panic!("the tail ended before it was ready")
    })
    .await
    .expect("the tail becomes ready");
    assert!(ready.contains(&format!("fleet-{stage}-tail-")), "{ready}");

    let put = fleet(&[
        "--stage",
        &stage,
        "events",
        "put",
        "--source",
        "test.tail",
        "--detail-type",
        "Ping",
        "--detail",
        r#"{"n": 1}"#,
    ])
    .await;
    assert!(put.status.success(), "{}", text(&put.stderr));
    let event_id = text(&put.stdout).trim().to_owned();
    let line = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
        .await
        .expect("the tail prints the event")
        .unwrap()
        .expect("a line");
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["id"], event_id.as_str());
    assert_eq!(event["detail"]["n"], 1);

    let pid = tail.id().unwrap().to_string();
    let kill = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(30), tail.wait())
        .await
        .expect("the tail stops on Ctrl-C")
        .unwrap();
    assert!(status.success(), "{status}");

    let rules = aws_sdk_eventbridge::Client::new(&sdk)
        .list_rules()
        .event_bus_name(format!("fleet-{stage}"))
        .name_prefix(format!("fleet-{stage}-tail-"))
        .send()
        .await
        .unwrap();
    assert!(
        rules.rules().is_empty(),
        "rules left behind: {:?}",
        rules.rules()
    );
    let queues = aws_sdk_sqs::Client::new(&sdk)
        .list_queues()
        .queue_name_prefix(format!("fleet-{stage}-tail-"))
        .send()
        .await
        .unwrap();
    assert!(
        queues.queue_urls().is_empty(),
        "queues left behind: {:?}",
        queues.queue_urls()
    );
}

#[test]
fn the_help_says_when_redrive_needs_a_function() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleet"))
        .args(["dlq", "redrive", "--help"])
        .output()
        .unwrap();
    let help = text(&out.stdout);
    assert!(help.contains("--function"), "{help}");
    assert!(help.contains("matches none or several"), "{help}");
}

/// The acceptance scenario with the real local host: an always-failing handler's events
/// end in the failures queue; once the handler is fixed, the redrive invokes it again
/// through the host's Lambda Invoke API, and it gets every event.
#[tokio::test]
async fn a_failing_function_s_events_are_redriven_through_the_local_host_once_it_is_fixed() {
    use std::sync::atomic::{AtomicBool, Ordering};

    use local_host::{FunctionError, Functions, Host, Invocation};

    let emulator = emulator::test_emulator().await;
    let sdk = emulator.sdk_config();
    let stage = emulator::unique_stage();
    let topology = topology_with_functions(&stage);
    let report = topology::deploy(&topology, &sdk).await.unwrap();
    let broken = Arc::new(AtomicBool::new(true));
    let handled: Arc<Mutex<Vec<String>>> = Arc::default();
    let on_requested = {
        let broken = Arc::clone(&broken);
        let handled = Arc::clone(&handled);
        move |inv: Invocation| {
            let result = if broken.load(Ordering::SeqCst) {
                Err(FunctionError::new(
                    "Registry.Down",
                    "the model registry is down",
                ))
            } else {
                handled
                    .lock()
                    .unwrap()
                    .push(inv.payload["id"].as_str().unwrap_or_default().to_owned());
                Ok(Value::Null)
            };
            std::future::ready(result)
        }
    };
    let functions = Functions::new()
        .json("on-requested", on_requested)
        .json("on-failed", |_: Invocation| {
            std::future::ready(Ok(Value::Null))
        });
    let config = local_host::Config {
        http_addr: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        ..local_host::Config::default()
    };
    let host = Host::new(config, functions)
        .start(&topology, &report, &sdk)
        .await
        .unwrap();
    let lambda_endpoint = format!("http://{}", host.http_addr().unwrap());

    // Two events the handler fails on, every retry.
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let mut ids = Vec::new();
    for job in ["job-x", "job-y"] {
        let detail = job_event(job)["detail"].to_string();
        let out = events
            .put_events()
            .entries(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .event_bus_name(format!("fleet-{stage}"))
                    .source("fleet.jobs")
                    .detail_type("JobRequested")
                    .detail(detail)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        ids.push(out.entries()[0].event_id().unwrap().to_owned());
    }
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let failures_url = queue_url(&sqs, &format!("fleet-{stage}-failures")).await;
    eventually(
        "both failures in the failures queue",
        Duration::from_secs(45),
        || async { (depth(&sqs, &failures_url).await == (2, 0)).then_some(()) },
    )
    .await;
    let mut ops = Ops::new(topology, &sdk);
    ops.lambda = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::config::Builder::from(&sdk)
            .endpoint_url(&lambda_endpoint)
            .build(),
    );
    let queue = dlq::resolve(&ops, "failures").await.unwrap();
    let shown = dlq::show(&ops, &queue, 10).await.unwrap();
    assert_eq!(shown.len(), 2);
    assert!(shown.iter().all(|m| matches!(
        &m.reason,
        dlq::Reason::Lambda { error_message: Some(text), .. } if text == "the model registry is down"
    )));

    // The cause is fixed; redrive.
    broken.store(false, Ordering::SeqCst);
    let report = dlq::redrive(&ops, &queue, &dlq::RedriveOptions::default())
        .await
        .unwrap();
    assert_eq!(report.redriven, 2, "{report:?}");
    assert_eq!(
        report.destinations[&format!("function fleet-{stage}-on-requested")],
        2
    );
    let mut got = eventually(
        "the handler to get both events",
        Duration::from_secs(30),
        || async {
            let got = handled.lock().unwrap().clone();
            (got.len() >= 2).then_some(got)
        },
    )
    .await;
    host.shutdown().await.unwrap();
    got.sort();
    ids.sort();
    assert_eq!(got, ids, "each event handled once, none lost");
    assert_eq!(depth(&sqs, &failures_url).await, (0, 0));
}
