//! The local host against the emulator: asynchronous invocation with retries and dead
//! letters, the SQS event source mapping with partial batch failures, and the HTTP API on
//! a real socket. Each test deploys its own topology under a unique stage.

mod websocket;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_config::SdkConfig;
use axum::Json;
use axum::extract::{Path, Query, Request};
use axum::routing::{get, post};
use emulator::testing;
use http::{HeaderMap, StatusCode};
use lambda_http::RequestExt as _;
use lambda_http::request::RequestContext;
use local_host::{Config, FunctionError, Functions, Host, HostError, Invocation, RunningHost};
use provision::{
    DeployReport, Function, Key, Method, Queue, Route, Rule, Service, Stage, Table, Target,
    Topology, core, deploy,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// How long any condition may take to come true against the emulator.
const DEADLINE: Duration = Duration::from_secs(45);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "local_host=info".into()),
        )
        .with_test_writer()
        .try_init();
}

async fn sdk() -> SdkConfig {
    init_tracing();
    emulator::test_emulator().await.sdk_config()
}

fn stage() -> Stage {
    Stage::new(emulator::unique_stage()).expect("unique stages are valid stages")
}

fn topology(stage: &Stage, service: Service) -> Topology {
    Topology::new(stage, vec![core(), service])
}

async fn deployed(topology: &Topology, sdk: &SdkConfig) -> DeployReport {
    match deploy(topology, sdk).await {
        Ok(report) => report,
        Err(e) => panic!("deploy failed: {e}"),
    }
}

/// The test configuration: no fixed port, short retries.
fn config() -> Config {
    Config {
        http_addr: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
        ..Config::default()
    }
}

async fn start(
    topology: &Topology,
    report: &DeployReport,
    functions: Functions,
    sdk: &SdkConfig,
) -> RunningHost {
    match Host::new(config(), functions)
        .start(topology, report, sdk)
        .await
    {
        Ok(host) => host,
        Err(e) => panic!("the host did not start: {e}"),
    }
}

/// Puts one event on the fleet bus; returns its event id.
async fn put_event(
    sdk: &SdkConfig,
    topology: &Topology,
    detail_type: &str,
    detail: Value,
) -> String {
    let events = aws_sdk_eventbridge::Client::new(sdk);
    let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
        .event_bus_name(topology.names().bus())
        .source("fleet.test")
        .detail_type(detail_type)
        .detail(detail.to_string())
        .build();
    let out = events
        .put_events()
        .entries(entry)
        .send()
        .await
        .expect("PutEvents");
    assert_eq!(out.failed_entry_count(), 0, "{out:?}");
    out.entries()[0]
        .event_id()
        .expect("an accepted entry has an id")
        .to_owned()
}

/// Receives from `url` until a message body satisfies `wanted`; returns that message.
async fn receive_until(
    sdk: &SdkConfig,
    url: &str,
    wanted: impl Fn(&str) -> bool,
) -> aws_sdk_sqs::types::Message {
    testing::receive_until(sdk, url, DEADLINE, |message| {
        wanted(message.body().unwrap_or_default()).then(|| message.clone())
    })
    .await
}

/// Waits for the next item of a channel, within the deadline.
async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    match tokio::time::timeout(DEADLINE, rx.recv()).await {
        Ok(Some(item)) => item,
        Ok(None) => panic!("the channel closed"),
        Err(_) => panic!("nothing arrived within {DEADLINE:?}"),
    }
}

/// A function that reports each invocation on a channel and answers with `answer`.
fn recorder(
    answer: impl Fn(&Invocation) -> Result<Value, FunctionError> + Send + Sync + 'static,
) -> (
    impl Fn(Invocation) -> futures::future::Ready<Result<Value, FunctionError>> + Send + Sync + 'static,
    mpsc::UnboundedReceiver<Invocation>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let function = move |inv: Invocation| {
        let result = answer(&inv);
        let _ = tx.send(inv);
        futures::future::ready(result)
    };
    (function, rx)
}

#[tokio::test]
async fn a_failing_async_function_is_tried_three_times_then_its_event_is_dead_lettered() {
    let sdk = sdk().await;
    let stage = stage();
    let service = Service::new("probe")
        .with(Function::asynchronous("always-fails"))
        .with(
            Rule::new("fail", json!({ "detail-type": ["Fail"] }))
                .target(Target::Function("always-fails".into())),
        );
    let topology = topology(&stage, service);
    let report = deployed(&topology, &sdk).await;
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&attempts);
    let (function, mut invocations) = recorder(move |inv| {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        Err(FunctionError::new(
            "Boom",
            format!(
                "attempt {n} failed for {}",
                inv.payload["id"].as_str().unwrap_or("?")
            ),
        ))
    });
    let host = start(
        &topology,
        &report,
        Functions::new().json("always-fails", function),
        &sdk,
    )
    .await;

    let event_id = put_event(&sdk, &topology, "Fail", json!({ "n": 1 })).await;
    let failures = report.queue_url("failures").expect("the failures queue");
    let message = receive_until(&sdk, failures, |body| body.contains(&event_id)).await;
    host.shutdown().await.expect("a clean shutdown");

    // Exactly three attempts, all with the same request id and the same event.
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    let mut seen = Vec::new();
    while let Ok(inv) = invocations.try_recv() {
        seen.push(inv);
    }
    assert_eq!(seen.len(), 3);
    let request_id = seen[0].request_id.clone();
    assert!(seen.iter().all(|inv| inv.request_id == request_id));
    assert!(seen.iter().all(|inv| inv.payload == seen[0].payload));
    assert_eq!(seen[0].payload["id"], event_id.as_str());
    assert_eq!(seen[0].function, "always-fails");

    // The SNS envelope carries Lambda's attributes and the original event.
    let envelope: Value =
        serde_json::from_str(message.body().unwrap_or_default()).expect("an SNS envelope");
    assert_eq!(envelope["Type"], "Notification", "{envelope}");
    assert_eq!(
        envelope["TopicArn"],
        report.topic_arn("failures").unwrap_or_default()
    );
    let text = envelope["Message"].as_str().expect("Message is a string");
    let original: Value = serde_json::from_str(text).expect("the message is the event JSON");
    assert_eq!(original, seen[0].payload);
    // Byte for byte as delivered: the emulator's JSON spacing, not a re-serialization.
    assert!(text.contains("\"detail-type\": \"Fail\""), "{text}");
    let attributes = &envelope["MessageAttributes"];
    assert_eq!(attributes["RequestID"]["Type"], "String", "{envelope}");
    assert_eq!(attributes["RequestID"]["Value"], request_id.as_str());
    assert_eq!(attributes["ErrorCode"]["Type"], "Number");
    assert_eq!(attributes["ErrorCode"]["Value"], "200");
    assert_eq!(attributes["ErrorMessage"]["Type"], "String");
    assert_eq!(
        attributes["ErrorMessage"]["Value"],
        format!("attempt 3 failed for {event_id}")
    );
}

#[tokio::test]
async fn an_async_function_receives_the_events_its_rule_matches() {
    let sdk = sdk().await;
    let stage = stage();
    let service = Service::new("probe")
        .with(Function::asynchronous("greeter"))
        .with(
            Rule::new(
                "greet",
                json!({ "source": ["fleet.test"], "detail-type": ["Greet"] }),
            )
            .target(Target::Function("greeter".into())),
        );
    let topology = topology(&stage, service);
    let report = deployed(&topology, &sdk).await;
    // A target left by an earlier version of the topology, which no longer asks for it.
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let rule = topology.names().rule("greet");
    let stale = aws_sdk_eventbridge::types::Target::builder()
        .id(local_host::delivery_target_id("retired"))
        .arn(report.queue_arn("failures").unwrap_or_default())
        .build()
        .expect("id and arn are set");
    events
        .put_targets()
        .rule(&rule)
        .event_bus_name(topology.names().bus())
        .targets(stale)
        .send()
        .await
        .expect("PutTargets");

    let (function, mut invocations) = recorder(|_| Ok(Value::Null));
    let host = start(
        &topology,
        &report,
        Functions::new().json("greeter", function),
        &sdk,
    )
    .await;
    let targets = events
        .list_targets_by_rule()
        .rule(&rule)
        .event_bus_name(topology.names().bus())
        .send()
        .await
        .expect("ListTargetsByRule");
    let ids: Vec<&str> = targets.targets().iter().map(|t| t.id()).collect();
    assert_eq!(ids, [local_host::delivery_target_id("greeter")]);

    put_event(&sdk, &topology, "Ignored", json!({ "n": 0 })).await;
    let event_id = put_event(&sdk, &topology, "Greet", json!({ "n": 7 })).await;
    let inv = next(&mut invocations).await;
    host.shutdown().await.expect("a clean shutdown");

    // The event exactly as EventBridge passes it to Lambda.
    let event = &inv.payload;
    assert_eq!(event["id"], event_id.as_str(), "{event}");
    assert_eq!(event["detail-type"], "Greet");
    assert_eq!(event["source"], "fleet.test");
    assert_eq!(event["detail"], json!({ "n": 7 }));
    // moto's EventBridge leaves `account` out of the events it delivers (AWS includes it);
    // the host passes events on as delivered, so the field is checked only when present.
    if let Some(account) = event.get("account") {
        assert_eq!(account, emulator::ACCOUNT_ID);
    }
    assert_eq!(event["region"], emulator::REGION);
    assert!(event["time"].is_string(), "{event}");
    contracts::BusEvent::from_json(&event.to_string()).expect("a BusEvent");
    // The context is the one the Lambda runtime builds.
    assert_eq!(inv.context.request_id, inv.request_id);
    assert!(
        inv.context.invoked_function_arn.ends_with(&format!(
            ":function:{}",
            topology.names().function("greeter")
        )),
        "{}",
        inv.context.invoked_function_arn
    );
    assert!(
        invocations.try_recv().is_err(),
        "only the matching event arrives"
    );
}

#[tokio::test]
async fn an_sqs_function_reporting_a_failed_item_sends_it_to_the_dlq_and_deletes_the_rest() {
    let sdk = sdk().await;
    let stage = stage();
    let service = Service::new("probe")
        .with(
            Queue::new("orders")
                .with_visibility_timeout(Duration::from_secs(1))
                .with_dlq(2),
        )
        .with(Function::sqs("process-orders", "orders", 10).with_timeout(Duration::from_secs(1)));
    let topology = topology(&stage, service);
    let report = deployed(&topology, &sdk).await;
    // Fails every record whose body is "bad".
    let (function, mut invocations) = recorder(|inv| {
        let failures: Vec<Value> = inv.payload["Records"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["body"] == "bad")
            .map(|r| json!({ "itemIdentifier": r["messageId"] }))
            .collect();
        Ok(json!({ "batchItemFailures": failures }))
    });
    let host = start(
        &topology,
        &report,
        Functions::new().json("process-orders", function),
        &sdk,
    )
    .await;

    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = report.queue_url("orders").expect("the orders queue");
    for body in ["good-1", "bad", "good-2"] {
        sqs.send_message()
            .queue_url(url)
            .message_body(body)
            .message_attributes(
                "kind",
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(body)
                    .build()
                    .expect("data type is set"),
            )
            .send()
            .await
            .expect("SendMessage");
    }
    let dlq = report.dlq_url("orders").expect("the orders DLQ");
    let dead = receive_until(&sdk, dlq, |body| body == "bad").await;
    host.shutdown().await.expect("a clean shutdown");
    assert_eq!(dead.body(), Some("bad"));

    let mut records: Vec<Value> = Vec::new();
    while let Ok(inv) = invocations.try_recv() {
        records.extend(
            inv.payload["Records"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
    }
    let bodies = |wanted: &str| records.iter().filter(|r| r["body"] == wanted).count();
    // At least once: a slow emulator may let a visibility timeout pass before a delete.
    assert!(bodies("good-1") >= 1, "{records:?}");
    assert!(bodies("good-2") >= 1, "{records:?}");
    assert_eq!(bodies("bad"), 2, "maxReceiveCount receives: {records:?}");
    let bad_counts: Vec<&Value> = records
        .iter()
        .filter(|r| r["body"] == "bad")
        .map(|r| &r["attributes"]["ApproximateReceiveCount"])
        .collect();
    assert_eq!(bad_counts, [&json!("1"), &json!("2")]);
    let record = &records[0];
    assert_eq!(record["eventSource"], "aws:sqs");
    assert_eq!(
        record["eventSourceARN"],
        report.queue_arn("orders").unwrap_or_default()
    );
    assert_eq!(record["awsRegion"], emulator::REGION);
    assert_eq!(record["messageAttributes"]["kind"]["dataType"], "String");
    assert_eq!(
        record["messageAttributes"]["kind"]["stringValue"],
        record["body"]
    );
    assert!(record["receiptHandle"].is_string());

    // The successes were deleted: nothing is left in the source queue.
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes
        .unwrap_or_default();
    assert_eq!(attributes[&A::ApproximateNumberOfMessages], "0");
    assert_eq!(attributes[&A::ApproximateNumberOfMessagesNotVisible], "0");
}

/// The HTTP function of the HTTP test: an axum router, as its `main` would hand it to
/// `lambda_http::run`.
fn items_api() -> axum::Router {
    async fn get_item(
        Path(id): Path<String>,
        Query(query): Query<HashMap<String, String>>,
        headers: HeaderMap,
        request: Request,
    ) -> (StatusCode, [(&'static str, &'static str); 1], Json<Value>) {
        let from_gateway = request
            .extensions()
            .path_parameters()
            .first("id")
            .map(str::to_owned);
        let stage = match request.extensions().request_context_ref() {
            Some(RequestContext::ApiGatewayV2(context)) => context.stage.clone(),
            _ => None,
        };
        let body = json!({
            "id": id,
            "pathParameter": from_gateway,
            "query": query,
            "probe": headers.get("x-probe").and_then(|v| v.to_str().ok()),
            "cookie": headers.get("cookie").and_then(|v| v.to_str().ok()),
            "stage": stage,
        });
        (StatusCode::OK, [("set-cookie", "seen=1")], Json(body))
    }
    async fn create_item(body: String) -> (StatusCode, [(&'static str, &'static str); 1], String) {
        (
            StatusCode::CREATED,
            [("x-created", "yes")],
            body.to_uppercase(),
        )
    }
    axum::Router::new()
        .route("/items/{id}", get(get_item))
        .route("/items", post(create_item))
}

#[tokio::test]
async fn an_http_function_answers_through_the_host_on_a_real_socket() {
    let sdk = sdk().await;
    let stage = stage();
    let service = Service::new("probe").with(Function::http(
        "items-api",
        vec![
            Route::new(Method::Get, "/items/{id}"),
            Route::new(Method::Post, "/items"),
        ],
    ));
    let topology = topology(&stage, service);
    let report = deployed(&topology, &sdk).await;
    let host = start(
        &topology,
        &report,
        Functions::new().http("items-api", items_api()),
        &sdk,
    )
    .await;
    let addr = host.http_addr().expect("the HTTP API listens");
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client");
    let base = format!("http://{addr}");

    let response = http
        .get(format!("{base}/items/a%20b?colour=red&size=9"))
        .header("x-probe", "probe-1")
        .header("cookie", "a=1; b=2")
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("apigw-requestid"));
    assert_eq!(response.headers()["set-cookie"], "seen=1");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["id"], "a b", "{body}");
    assert_eq!(body["pathParameter"], "a b", "{body}");
    assert_eq!(body["query"], json!({ "colour": "red", "size": "9" }));
    assert_eq!(body["probe"], "probe-1");
    assert_eq!(body["stage"], "$default");
    assert_eq!(body["cookie"], "a=1; b=2");

    let response = http
        .post(format!("{base}/items"))
        .header("content-type", "text/plain")
        .body("new item")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-created"], "yes");
    assert_eq!(response.text().await.expect("text"), "NEW ITEM");

    for (method, path) in [
        (reqwest::Method::GET, "/nowhere"),
        (reqwest::Method::DELETE, "/items/1"),
    ] {
        let response = http
            .request(method.clone(), format!("{base}{path}"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 404, "{method} {path}");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body, json!({ "message": "Not Found" }));
    }
    host.shutdown().await.expect("a clean shutdown");
}

#[tokio::test]
async fn a_function_without_an_implementation_stops_the_host_from_starting() {
    let sdk = emulator::sdk_config_for("http://127.0.0.1:9");
    let stage = stage();
    let service = Service::new("probe")
        .with(Function::asynchronous("forgotten"))
        .with(Function::http("api", vec![Route::new(Method::Get, "/")]));
    let topology = topology(&stage, service);
    let report = DeployReport {
        stage: stage.clone(),
        resources: Vec::new(),
        lambda_targets: Vec::new(),
    };
    let functions = Functions::new().http("api", items_api());
    match Host::new(config(), functions)
        .start(&topology, &report, &sdk)
        .await
    {
        Err(HostError::MissingFunctions { names }) => assert_eq!(names, ["forgotten"]),
        Err(e) => panic!("wrong error: {e}"),
        Ok(host) => {
            let _ = host.shutdown().await;
            panic!("the host started without an implementation of `forgotten`");
        }
    }
    let functions = Functions::new()
        .http("api", items_api())
        .http("forgotten", items_api());
    match Host::new(config(), functions)
        .start(&topology, &report, &sdk)
        .await
    {
        Err(e @ HostError::NotHttp { .. }) => assert!(e.to_string().contains("forgotten"), "{e}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(host) => {
            let _ = host.shutdown().await;
            panic!("an HTTP service was accepted for an asynchronous function");
        }
    }
}

/// The Lambda Invoke API on the host's listener, called through the unchanged SDK.
#[tokio::test]
async fn the_invoke_api_answers_request_response_and_queues_event_invocations_like_lambda() {
    let sdk = sdk().await;
    let stage = stage();
    // No rule targets it: an asynchronous function gets its delivery queue all the same.
    let service = Service::new("probe").with(Function::asynchronous("echo"));
    let topology = topology(&stage, service);
    let report = deployed(&topology, &sdk).await;
    let (function, mut invocations) = recorder(|inv| {
        if inv.payload["ok"] == json!(true) {
            Ok(inv.payload.clone())
        } else {
            Err(FunctionError::new("Refused", "not ok"))
        }
    });
    let host = start(
        &topology,
        &report,
        Functions::new().json("echo", function),
        &sdk,
    )
    .await;
    let endpoint = format!("http://{}", host.http_addr().expect("the host listens"));
    let lambda = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::config::Builder::from(&sdk)
            .endpoint_url(&endpoint)
            .build(),
    );
    let physical = topology.names().function("echo");
    let payload = |v: Value| aws_smithy_types::Blob::new(v.to_string());

    // RequestResponse: the result, or the error with X-Amz-Function-Error.
    let ok = lambda
        .invoke()
        .function_name(&physical)
        .payload(payload(json!({"ok": true, "n": 1})))
        .send()
        .await
        .expect("Invoke");
    assert_eq!(ok.status_code(), 200);
    assert_eq!(ok.function_error(), None);
    let answer: Value = serde_json::from_slice(ok.payload().expect("a payload").as_ref()).unwrap();
    assert_eq!(answer, json!({"ok": true, "n": 1}));
    assert_eq!(next(&mut invocations).await.payload["n"], 1);
    let refused = lambda
        .invoke()
        .function_name(format!(
            "arn:aws:lambda:{}:{}:function:{physical}",
            emulator::REGION,
            emulator::ACCOUNT_ID
        ))
        .payload(payload(json!({"ok": false})))
        .send()
        .await
        .expect("Invoke");
    assert_eq!(refused.function_error(), Some("Unhandled"));
    let error: Value =
        serde_json::from_slice(refused.payload().expect("a payload").as_ref()).unwrap();
    assert_eq!(error["errorType"], "Refused");
    let _ = next(&mut invocations).await;

    // Event: accepted at once, then invoked; a failing one is retried and dead-lettered
    // with the payload unchanged.
    let accepted = lambda
        .invoke()
        .function_name(&physical)
        .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
        .payload(payload(json!({"ok": true, "n": 2})))
        .send()
        .await
        .expect("Invoke");
    assert_eq!(accepted.status_code(), 202);
    assert_eq!(next(&mut invocations).await.payload["n"], 2);
    let failing = json!({"ok": false, "id": "evt-invoke"});
    lambda
        .invoke()
        .function_name(&physical)
        .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
        .payload(payload(failing.clone()))
        .send()
        .await
        .expect("Invoke");
    let failures = report.queue_url("failures").expect("the failures queue");
    let message = receive_until(&sdk, failures, |body| body.contains("evt-invoke")).await;
    let envelope: Value = serde_json::from_str(message.body().unwrap_or_default()).unwrap();
    let original: Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
    assert_eq!(original, failing);
    assert_eq!(
        envelope["MessageAttributes"]["ErrorMessage"]["Value"],
        "not ok"
    );
    let attempts: Vec<Invocation> = [
        next(&mut invocations).await,
        next(&mut invocations).await,
        next(&mut invocations).await,
    ]
    .into();
    assert!(attempts.iter().all(|inv| inv.payload == failing));
    assert!(
        attempts
            .iter()
            .all(|inv| inv.request_id == attempts[0].request_id)
    );

    // A web page the developer visits cannot invoke a function: a cross-site "simple"
    // POST (no preflight) is refused, and so is a rebound domain's Host.
    let http = reqwest::Client::new();
    let url = format!("{endpoint}/2015-03-31/functions/{physical}/invocations");
    let cross_site = http
        .post(&url)
        .header("origin", "https://evil.example")
        .header("content-type", "text/plain")
        .body(json!({"ok": true, "n": 3}).to_string())
        .send()
        .await
        .expect("the host answers");
    assert_eq!(cross_site.status(), 403);
    let port = host.http_addr().expect("the host listens").port();
    let rebound = http
        .post(&url)
        .header("host", format!("evil.example:{port}"))
        .body(json!({"ok": true, "n": 4}).to_string())
        .send()
        .await
        .expect("the host answers");
    assert_eq!(rebound.status(), 403);
    let same_machine = http
        .post(&url)
        .header("origin", format!("http://localhost:{port}"))
        .body(json!({"ok": true, "n": 5}).to_string())
        .send()
        .await
        .expect("the host answers");
    assert_eq!(same_machine.status(), 200);
    assert_eq!(
        next(&mut invocations).await.payload["n"],
        5,
        "neither refused request reached the function"
    );

    // DryRun, and an unknown function.
    let dry = lambda
        .invoke()
        .function_name(&physical)
        .invocation_type(aws_sdk_lambda::types::InvocationType::DryRun)
        .send()
        .await
        .expect("Invoke");
    assert_eq!(dry.status_code(), 204);
    let missing = lambda
        .invoke()
        .function_name(format!("{physical}-nope"))
        .send()
        .await
        .expect_err("an unknown function");
    assert!(
        missing
            .as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "{missing:?}"
    );
    host.shutdown().await.expect("a clean shutdown");
}

#[tokio::test]
async fn items_past_their_ttl_are_deleted_as_dynamodb_does_and_no_others() {
    use aws_sdk_dynamodb::types::AttributeValue::{N, S};
    let sdk = sdk().await;
    let stage = stage();
    let service = Service::new("probe").with(
        Table::new("leases", Key::string("pk"))
            .with_sort_key(Key::string("sk"))
            .with_ttl("expiresAt"),
    );
    let topology = topology(&stage, service);
    let report = deployed(&topology, &sdk).await;
    let table = topology.names().table("leases");
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let six_years = 6 * 365 * 24 * 3600;
    let items = [
        ("expired", Some(N((now - 60).to_string()))),
        ("fresh", Some(N((now + 3600).to_string()))),
        // AWS ignores a TTL that is not a Number, and one over five years old.
        ("text", Some(S((now - 60).to_string()))),
        ("ancient", Some(N((now - six_years).to_string()))),
        ("no-ttl", None),
    ];
    for (name, expires_at) in &items {
        let mut put = dynamodb
            .put_item()
            .table_name(&table)
            .item("pk", S("lease".into()))
            .item("sk", S((*name).into()));
        if let Some(value) = expires_at {
            put = put.item("expiresAt", value.clone());
        }
        put.send().await.expect("PutItem");
    }
    let config = Config {
        ttl_sweep_interval: Duration::from_millis(200),
        ..config()
    };
    let host = Host::new(config, Functions::new())
        .start(&topology, &report, &sdk)
        .await
        .expect("the host starts");

    let remaining = || async {
        let out = dynamodb
            .query()
            .table_name(&table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", S("lease".into()))
            .send()
            .await
            .expect("Query");
        let mut names: Vec<String> = out
            .items()
            .iter()
            .filter_map(|item| item.get("sk")?.as_s().ok().cloned())
            .collect();
        names.sort_unstable();
        names
    };
    testing::wait_until("the expired item to be deleted", DEADLINE, || async {
        !remaining().await.iter().any(|n| n == "expired")
    })
    .await;
    assert_eq!(remaining().await, ["ancient", "fresh", "no-ttl", "text"]);
    host.shutdown().await.expect("a clean shutdown");
}

#[tokio::test]
async fn list_functions_and_get_function_describe_the_functions_the_host_serves() {
    let sdk = sdk().await;
    let stage = stage();
    let service = Service::new("probe")
        .with(Function::asynchronous("echo"))
        .with(Function::asynchronous("other"));
    let topology = topology(&stage, service);
    let report = deployed(&topology, &sdk).await;
    let (echo, _) = recorder(|inv| Ok(inv.payload.clone()));
    let (other, _) = recorder(|inv| Ok(inv.payload.clone()));
    let host = start(
        &topology,
        &report,
        Functions::new().json("echo", echo).json("other", other),
        &sdk,
    )
    .await;
    let endpoint = format!("http://{}", host.http_addr().expect("the host listens"));
    let lambda = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::config::Builder::from(&sdk)
            .endpoint_url(&endpoint)
            .build(),
    );
    let names = topology.names();
    let (echo, other) = (names.function("echo"), names.function("other"));

    let listed = lambda.list_functions().send().await.expect("ListFunctions");
    let mut seen: Vec<String> = listed
        .functions()
        .iter()
        .filter_map(|f| f.function_name().map(str::to_string))
        .collect();
    seen.sort();
    assert_eq!(seen, vec![echo.clone(), other.clone()]);
    assert_eq!(listed.next_marker(), None);

    // One a page: the marker leads to the other.
    let first = lambda
        .list_functions()
        .max_items(1)
        .send()
        .await
        .expect("ListFunctions");
    assert_eq!(first.functions().len(), 1);
    let marker = first.next_marker().expect("a next page").to_string();
    let second = lambda
        .list_functions()
        .marker(marker)
        .max_items(1)
        .send()
        .await
        .expect("ListFunctions");
    assert_eq!(second.functions().len(), 1);
    assert_ne!(
        first.functions()[0].function_name(),
        second.functions()[0].function_name()
    );
    assert_eq!(second.next_marker(), None);

    let got = lambda
        .get_function()
        .function_name(&echo)
        .send()
        .await
        .expect("GetFunction");
    let config = got.configuration().expect("a configuration");
    assert_eq!(config.function_name(), Some(echo.as_str()));
    assert!(
        config
            .function_arn()
            .is_some_and(|arn| arn.ends_with(&format!(":function:{echo}"))),
        "{config:?}"
    );
    assert_eq!(config.state(), Some(&aws_sdk_lambda::types::State::Active));
    assert!(config.timeout().is_some_and(|t| t > 0));
    let missing = lambda
        .get_function()
        .function_name(format!("{echo}-nope"))
        .send()
        .await
        .expect_err("an unknown function");
    assert!(
        missing
            .as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "{missing:?}"
    );
    host.shutdown().await.expect("a clean shutdown");
}
