//! Redriving the failures queue to the functions whose rules match, through the library.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleet_ops::{Ops, dlq};
use serde_json::{Value, json};

use crate::support::{InvokeServer, job_event, lambda_failure, queue_url, topology_with_functions};
use emulator::testing;

/// A destination that refuses the first copy stops the redrive, and the messages of the
/// batch it had not reached yet are visible again at once, not after their visibility
/// timeout.
#[tokio::test]
async fn a_failed_send_leaves_the_rest_of_the_batch_visible() {
    let emulator = emulator::test_emulator().await;
    let sdk = emulator.sdk_config();
    let stage = emulator::unique_stage();
    let topology = topology_with_functions(&stage);
    provision::deploy(&topology, &sdk).await.unwrap();
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
    testing::wait_for("three failures", Duration::from_secs(20), || async {
        (testing::counts(&sdk, &failures_url).await.0 == 3).then_some(())
    })
    .await;
    let queue = dlq::resolve(&ops, "failures").await.unwrap();
    let report = dlq::redrive(&ops, &queue, &dlq::RedriveOptions::default())
        .await
        .unwrap();
    assert_eq!(report.redriven, 0, "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(
        testing::counts(&sdk, &failures_url).await,
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
    provision::deploy(&topology, &sdk).await.unwrap();
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
    testing::wait_for("four failures", Duration::from_secs(20), || async {
        (testing::counts(&sdk, &failures_url).await.0 == 4).then_some(())
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
    assert_eq!(testing::counts(&sdk, &failures_url).await, (4, 0));

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
    assert_eq!(testing::counts(&sdk, &failures_url).await, (3, 0));
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
        testing::counts(&sdk, &failures_url).await,
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
    let report = provision::deploy(&topology, &sdk).await.unwrap();
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
    testing::wait_for(
        "both failures in the failures queue",
        Duration::from_secs(45),
        || async { (testing::counts(&sdk, &failures_url).await == (2, 0)).then_some(()) },
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
    let mut got = testing::wait_for(
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
    assert_eq!(testing::counts(&sdk, &failures_url).await, (0, 0));
}
