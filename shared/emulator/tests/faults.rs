//! The fault proxy against the shared test emulator: each fault reaches an SDK client as
//! AWS would send it, the SDK's standard retry gets through them, and a duplicate receive
//! hands a message in flight to a second consumer.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_runtime::retries::classifiers::THROTTLING_ERRORS;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use emulator::faults::{FaultKind, FaultPlan, FaultProxy, FaultReport, FaultRule};
use emulator::testing;

/// A proxy in front of the test emulator with `plan`, and the emulator's own config for
/// setup and checks that must not see faults.
async fn proxy(plan: FaultPlan) -> (FaultProxy, SdkConfig) {
    let emulator = emulator::test_emulator().await;
    let proxy = FaultProxy::start(emulator.endpoint(), plan)
        .await
        .expect("the fault proxy starts");
    (proxy, emulator.sdk_config())
}

/// The proxy's config with the SDK's retries off, so a client sees every injected fault.
fn no_retries(proxy: &FaultProxy) -> SdkConfig {
    proxy
        .sdk_config()
        .into_builder()
        .retry_config(RetryConfig::disabled())
        .build()
}

/// The error's code and HTTP status, panicking if the call did not fail with a parsed
/// service error carrying the proxy's message.
fn service_error<T, E>(result: Result<T, SdkError<E, HttpResponse>>) -> (String, u16)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let Err(error) = result else {
        panic!("the call succeeded despite the injected fault");
    };
    let code = error
        .code()
        .unwrap_or_else(|| panic!("no error code in {}", DisplayErrorContext(&error)))
        .to_string();
    let message = error.message().unwrap_or_default();
    assert!(
        message.contains("injected by the fault proxy"),
        "the error's message is the proxy's: {message:?}"
    );
    let status = error
        .raw_response()
        .map(|r| r.status().as_u16())
        .unwrap_or_else(|| panic!("no response in {}", DisplayErrorContext(&error)));
    (code, status)
}

fn injected(report: &FaultReport, key: &str, kind: FaultKind) -> u64 {
    report
        .operation(key)
        .and_then(|o| o.injected.get(&kind).copied())
        .unwrap_or(0)
}

#[tokio::test]
async fn sqs_throttled_at_rate_one_fails_with_throttling_exception_and_dynamodb_passes() {
    let plan = FaultPlan {
        rules: vec![FaultRule::new(FaultKind::Throttle, 1.0).service("sqs")],
        ..FaultPlan::default()
    };
    let (proxy, direct) = proxy(plan).await;
    let queue = testing::queue(&direct, "faults-throttle").await;
    let sdk = no_retries(&proxy);

    let sent = aws_sdk_sqs::Client::new(&sdk)
        .send_message()
        .queue_url(&queue.url)
        .message_body("{}")
        .send()
        .await;
    let (code, status) = service_error(sent);
    assert_eq!((code.as_str(), status), ("ThrottlingException", 400));
    assert!(
        THROTTLING_ERRORS.contains(&code.as_str()),
        "the SDK's standard retry classifies {code} as throttling"
    );

    aws_sdk_dynamodb::Client::new(&sdk)
        .list_tables()
        .send()
        .await
        .expect("DynamoDB is not throttled by a rule scoped to sqs");

    let report = proxy.report();
    assert_eq!(report.calls, 2);
    assert_eq!(injected(&report, "sqs:SendMessage", FaultKind::Throttle), 1);
    let tables = report
        .operation("dynamodb:ListTables")
        .expect("the DynamoDB call is reported");
    assert_eq!((tables.calls, tables.injected.len()), (1, 0));
    assert_eq!(report.total_injected(), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn dynamodb_sns_and_s3_throttling_parse_to_their_services_codes() {
    let (proxy, _) = proxy(FaultPlan::uniform(1, 1.0, &[FaultKind::Throttle])).await;
    let sdk = no_retries(&proxy);

    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk)
        .list_tables()
        .send()
        .await;
    assert_eq!(service_error(dynamodb), ("ThrottlingException".into(), 400));

    let sns = aws_sdk_sns::Client::new(&sdk).list_topics().send().await;
    assert_eq!(service_error(sns), ("Throttling".into(), 400));

    let s3 = s3_client(&sdk);
    let got = s3
        .get_object()
        .bucket(emulator::unique_name("faults"))
        .key("a/key")
        .send()
        .await;
    assert_eq!(service_error(got), ("SlowDown".into(), 503));

    for code in ["Throttling", "SlowDown"] {
        assert!(THROTTLING_ERRORS.contains(&code), "{code} is throttling");
    }
    let report = proxy.report();
    for key in ["dynamodb:ListTables", "sns:ListTopics", "s3:GetObject"] {
        assert_eq!(injected(&report, key, FaultKind::Throttle), 1, "{key}");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_server_error_reaches_the_client_as_500_or_503() {
    let (proxy, direct) = proxy(FaultPlan::uniform(2, 1.0, &[FaultKind::ServerError])).await;
    let queue = testing::queue(&direct, "faults-5xx").await;
    let sdk = no_retries(&proxy);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let s3 = s3_client(&sdk);
    let sns = aws_sdk_sns::Client::new(&sdk);
    let mut seen = Vec::new();
    for _ in 0..6 {
        let sent = sqs
            .send_message()
            .queue_url(&queue.url)
            .message_body("{}")
            .send()
            .await;
        seen.push(service_error(sent));
        seen.push(service_error(sns.list_topics().send().await));
        let listed = s3.list_buckets().send().await;
        let (code, status) = service_error(listed);
        // S3 names its 500 `InternalError`.
        seen.push((code.replace("InternalError", "InternalFailure"), status));
    }
    for (code, status) in &seen {
        assert!(
            matches!(
                (code.as_str(), status),
                ("InternalFailure", 500) | ("ServiceUnavailable", 503)
            ),
            "{code} {status}"
        );
    }
    assert!(seen.iter().any(|(_, s)| *s == 500) && seen.iter().any(|(_, s)| *s == 503));
    assert_eq!(proxy.report().injected(FaultKind::ServerError), 18);
    let (visible, _) = testing::counts(&direct, &queue.url).await;
    assert_eq!(visible, 0, "a server error is injected before forwarding");
    proxy.stop().await;
}

#[tokio::test]
async fn a_dropped_connection_is_a_dispatch_failure_not_a_response() {
    let (proxy, direct) = proxy(FaultPlan::uniform(3, 1.0, &[FaultKind::Drop])).await;
    let queue = testing::queue(&direct, "faults-drop").await;
    let sqs = aws_sdk_sqs::Client::new(&no_retries(&proxy));
    for _ in 0..8 {
        let error = sqs
            .send_message()
            .queue_url(&queue.url)
            .message_body("{}")
            .send()
            .await
            .expect_err("a dropped connection fails the call");
        assert!(
            matches!(error, SdkError::DispatchFailure(_)) && error.raw_response().is_none(),
            "{}",
            DisplayErrorContext(&error)
        );
    }
    assert_eq!(
        injected(&proxy.report(), "sqs:SendMessage", FaultKind::Drop),
        8
    );
    // Some drops came after forwarding: those messages were sent, their answers lost.
    let (visible, _) = testing::counts(&direct, &queue.url).await;
    assert!((1..8).contains(&visible), "{visible} of 8 messages landed");
    proxy.stop().await;
}

#[tokio::test]
async fn the_sdks_standard_retry_gets_every_call_through_faults_at_a_third() {
    // Throttling, 5xx and drops together fail about 27% of attempts. The default three
    // attempts would still leave about 2% of calls failed (0.27^3), so one of 50 fails
    // more often than not: the client keeps the standard mode and its classification,
    // with more attempts and a short first backoff to keep the test quick.
    let plan = FaultPlan {
        seed: 4,
        rules: vec![
            FaultRule::new(FaultKind::Throttle, 0.1),
            FaultRule::new(FaultKind::ServerError, 0.1),
            FaultRule::new(FaultKind::Drop, 0.1),
            FaultRule::new(FaultKind::Latency, 0.3),
            FaultRule::new(FaultKind::DuplicateReceive, 0.3),
        ],
        latency_ms: (1, 20),
    };
    let (proxy, direct) = proxy(plan).await;
    let queue = testing::queue(&direct, "faults-retry").await;
    let sdk = proxy
        .sdk_config()
        .into_builder()
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(10)
                .with_initial_backoff(Duration::from_millis(20)),
        )
        .build();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    for i in 0..50 {
        let sent = sqs
            .send_message()
            .queue_url(&queue.url)
            .message_body(format!("{{\"n\":{i}}}"))
            .send()
            .await;
        if let Err(e) = sent {
            panic!("SendMessage {i} failed: {}", DisplayErrorContext(&e));
        }
    }
    let report = proxy.report();
    for kind in [
        FaultKind::Throttle,
        FaultKind::ServerError,
        FaultKind::Drop,
        FaultKind::Latency,
    ] {
        assert!(report.injected(kind) > 0, "no {kind:?} in {report:?}");
    }
    assert!(report.calls > 50, "retries go through the proxy too");
    // A drop after forwarding sent the message although the SDK retried it.
    let (visible, _) = testing::counts(&direct, &queue.url).await;
    assert!(visible >= 50, "{visible} messages");
    proxy.stop().await;
}

#[tokio::test]
async fn a_duplicate_receive_hands_a_message_in_flight_to_a_second_consumer() {
    let plan = FaultPlan {
        rules: vec![
            FaultRule::new(FaultKind::DuplicateReceive, 1.0)
                .service("sqs")
                .operation("ReceiveMessage"),
        ],
        ..FaultPlan::default()
    };
    let (proxy, direct) = proxy(plan).await;
    let queue = testing::queue(&direct, "faults-dup").await;
    testing::send(&direct, &queue.url, "{\"job\":1}").await;

    let a = &aws_sdk_sqs::Client::new(&proxy.sdk_config());
    let url = queue.url.as_str();
    let first = testing::wait_for(
        "consumer A receives",
        Duration::from_secs(10),
        || async move {
            a.receive_message()
                .queue_url(url)
                .visibility_timeout(60)
                .wait_time_seconds(1)
                .send()
                .await
                .ok()?
                .messages?
                .into_iter()
                .next()
        },
    )
    .await;

    // Consumer B reads moto directly: A's 60 s of visibility are already gone.
    let b = &aws_sdk_sqs::Client::new(&direct);
    let again = testing::wait_for(
        "consumer B receives",
        Duration::from_secs(10),
        || async move {
            b.receive_message()
                .queue_url(url)
                .wait_time_seconds(1)
                .send()
                .await
                .ok()?
                .messages?
                .into_iter()
                .next()
        },
    )
    .await;
    assert_eq!(again.message_id(), first.message_id());
    assert_ne!(again.receipt_handle(), first.receipt_handle());
    assert_eq!(
        injected(
            &proxy.report(),
            "sqs:ReceiveMessage",
            FaultKind::DuplicateReceive
        ),
        1
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_disabled_proxy_only_forwards() {
    let (proxy, direct) = proxy(FaultPlan::uniform(5, 1.0, &FaultKind::ALL)).await;
    let queue = testing::queue(&direct, "faults-off").await;
    proxy.set_enabled(false);
    let sqs = aws_sdk_sqs::Client::new(&no_retries(&proxy));
    for _ in 0..10 {
        sqs.send_message()
            .queue_url(&queue.url)
            .message_body("{}")
            .send()
            .await
            .expect("a disabled proxy forwards");
    }
    let received = sqs
        .receive_message()
        .queue_url(&queue.url)
        .max_number_of_messages(10)
        .send()
        .await
        .expect("a disabled proxy forwards");
    assert!(!received.messages().is_empty());
    let report = proxy.report();
    assert_eq!((report.calls, report.total_injected()), (11, 0));

    proxy.set_enabled(true);
    let sent = sqs
        .send_message()
        .queue_url(&queue.url)
        .message_body("{}")
        .send()
        .await;
    assert_eq!(service_error(sent), ("ThrottlingException".into(), 400));

    let json = serde_json::to_value(proxy.report()).expect("the report serializes");
    assert_eq!(
        json["operations"]["sqs:SendMessage"]["injected"]["throttle"],
        serde_json::json!(1),
        "{json}"
    );
    proxy.stop().await;
}

fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}
