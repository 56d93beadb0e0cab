//! Deployment against the emulator: idempotence, what exists afterwards, and events
//! flowing through a deployed rule.

use std::path::PathBuf;
use std::time::Duration;

use aws_config::SdkConfig;
use provision::{DeployReport, Outcome, ResourceKind, Stage, Topology, deploy, fleet};
use serde_json::{Value, json};

use crate::samples;

async fn sdk() -> SdkConfig {
    emulator::test_emulator().await.sdk_config()
}

fn stage() -> Stage {
    Stage::new(emulator::unique_stage()).expect("unique stages are valid stages")
}

async fn deployed(topology: &Topology, sdk: &SdkConfig) -> DeployReport {
    match deploy(topology, sdk).await {
        Ok(report) => report,
        Err(e) => panic!("deploy failed: {e}"),
    }
}

fn outcomes(report: &DeployReport) -> Vec<(ResourceKind, String, Outcome)> {
    report
        .resources
        .iter()
        .map(|r| (r.kind, r.name.clone(), r.outcome))
        .collect()
}

#[tokio::test]
async fn deploying_the_fleet_twice_changes_nothing_the_second_time() {
    let sdk = sdk().await;
    let topology = fleet(&stage());
    let first = deployed(&topology, &sdk).await;
    assert!(
        first
            .resources
            .iter()
            .all(|r| r.outcome == Outcome::Created),
        "{first}"
    );
    let second = deployed(&topology, &sdk).await;
    assert!(second.all_unchanged(), "{second}");
    let same: Vec<_> = outcomes(&first)
        .into_iter()
        .map(|(k, n, _)| (k, n))
        .collect();
    let again: Vec<_> = outcomes(&second)
        .into_iter()
        .map(|(k, n, _)| (k, n))
        .collect();
    assert_eq!(same, again);

    let table = second.to_string();
    assert!(table.starts_with("KIND"), "{table}");
    for r in &second.resources {
        assert!(
            table.contains(&r.physical),
            "{} missing from\n{table}",
            r.physical
        );
    }
}

#[tokio::test]
async fn the_deployed_fleet_has_its_bus_queues_subscription_tables_and_bucket() {
    let sdk = sdk().await;
    let topology = fleet(&stage());
    let names = topology.names();
    let report = deployed(&topology, &sdk).await;

    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let bus = events
        .describe_event_bus()
        .name(names.bus())
        .send()
        .await
        .expect("the bus exists");
    assert_eq!(bus.arn(), report.bus_arn());

    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let attributes = |name: String| {
        let sqs = sqs.clone();
        async move {
            let url = sqs
                .get_queue_url()
                .queue_name(&name)
                .send()
                .await
                .unwrap_or_else(|e| panic!("queue {name} exists: {e}"))
                .queue_url()
                .unwrap_or_default()
                .to_owned();
            let out = sqs
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
                .send()
                .await
                .expect("queue attributes");
            let attrs = out.attributes().cloned().unwrap_or_default();
            (url, attrs)
        }
    };
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let subscribed: Vec<&str> = topology
        .topics()
        .flat_map(|t| t.subscriptions.iter().map(String::as_str))
        .collect();
    for queue in topology.queues() {
        let (url, attrs) = attributes(names.queue(&queue.name)).await;
        assert_eq!(report.queue_url(&queue.name), Some(url.as_str()));
        match queue.dlq {
            Some(dlq) => {
                let (_, dlq_attrs) = attributes(names.dlq(&queue.name)).await;
                let redrive: Value = serde_json::from_str(&attrs[&A::RedrivePolicy])
                    .expect("the redrive policy is JSON");
                assert_eq!(
                    redrive["deadLetterTargetArn"],
                    json!(dlq_attrs[&A::QueueArn])
                );
                let count = &redrive["maxReceiveCount"];
                assert!(
                    *count == json!(dlq.max_receive_count)
                        || *count == json!(dlq.max_receive_count.to_string()),
                    "{redrive}"
                );
                assert_eq!(dlq_attrs[&A::MessageRetentionPeriod], "1209600");
            }
            // A queue without a DLQ of its own is itself a dead-letter sink.
            None => assert!(subscribed.contains(&queue.name.as_str()), "{}", queue.name),
        }
        assert_eq!(
            attrs[&A::VisibilityTimeout],
            queue.visibility_timeout.as_secs().to_string()
        );
    }

    let sns = aws_sdk_sns::Client::new(&sdk);
    let failures_arn = report.topic_arn("failures").expect("the failures topic");
    let subscriptions = sns
        .list_subscriptions_by_topic()
        .topic_arn(failures_arn)
        .send()
        .await
        .expect("subscriptions");
    let subscription = subscriptions
        .subscriptions()
        .iter()
        .find(|s| s.protocol() == Some("sqs") && s.endpoint() == report.queue_arn("failures"))
        .expect("the failures queue is subscribed to the failures topic");
    let attributes = sns
        .get_subscription_attributes()
        .subscription_arn(subscription.subscription_arn().unwrap_or_default())
        .send()
        .await
        .expect("subscription attributes");
    let raw = attributes
        .attributes()
        .and_then(|a| a.get("RawMessageDelivery"))
        .map(String::as_str);
    assert_ne!(
        raw,
        Some("true"),
        "raw delivery would drop the SNS envelope"
    );

    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    for table in topology.tables() {
        let name = names.table(&table.name);
        let out = dynamodb
            .describe_table()
            .table_name(&name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("table {name} exists: {e}"));
        let keys = out.table().map(|t| t.key_schema()).unwrap_or_default();
        assert_eq!(keys[0].attribute_name(), table.partition_key.name);
        let ttl = dynamodb
            .describe_time_to_live()
            .table_name(&name)
            .send()
            .await
            .expect("ttl");
        let ttl = ttl.time_to_live_description();
        assert_eq!(
            ttl.and_then(|d| d.attribute_name()),
            table.ttl_attribute.as_deref()
        );
    }

    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    for bucket in topology.buckets() {
        s3.head_bucket()
            .bucket(names.bucket(&bucket.name))
            .send()
            .await
            .unwrap_or_else(|e| panic!("bucket {} exists: {e}", bucket.name));
    }
}

#[tokio::test]
async fn a_rule_delivers_matching_events_to_its_queue() {
    let sdk = sdk().await;
    let topology = samples::probe(&stage());
    let report = deployed(&topology, &sdk).await;
    let url = report.queue_url("probe").expect("the probe queue");

    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let entry = |source: &str, n: u32| {
        aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .event_bus_name(topology.names().bus())
            .source(source)
            .detail_type("Probe")
            .detail(json!({ "n": n }).to_string())
            .build()
    };
    let out = events
        .put_events()
        .entries(entry("fleet.other", 1))
        .entries(entry("fleet.test", 2))
        .send()
        .await
        .expect("put events");
    assert_eq!(out.failed_entry_count(), 0, "{out:?}");

    let seen = emulator::testing::collect_until(&sdk, url, Duration::from_secs(30), |seen| {
        seen.iter().any(|body| body["detail"]["n"] == 2)
    })
    .await;
    for body in &seen {
        assert_eq!(body["source"], "fleet.test", "{body}");
    }
}

/// The sample's definitions, copied where a test may change them.
fn writable_definitions() -> PathBuf {
    let dir = std::env::temp_dir().join(emulator::unique_name("definitions"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = "order-flow.asl.json";
    std::fs::copy(samples::fixtures().join(file), dir.join(file)).expect("copy the definition");
    dir
}

#[tokio::test]
async fn every_kind_deploys_idempotently_and_a_changed_definition_updates_its_machine() {
    let sdk = sdk().await;
    let mut topology = samples::all_kinds(&stage());
    topology.definitions_dir = writable_definitions();
    let names = topology.names();

    let first = deployed(&topology, &sdk).await;
    assert!(
        first
            .resources
            .iter()
            .all(|r| r.outcome == Outcome::Created),
        "{first}"
    );
    let second = deployed(&topology, &sdk).await;
    assert!(second.all_unchanged(), "{second}");

    // Functions are not deployed; the rule's function target is handed to the local host.
    assert_eq!(second.lambda_targets.len(), 1, "{second}");
    assert_eq!(
        second.lambda_targets[0].function_physical,
        names.function("on-order")
    );

    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let arn = second.state_machine_arn("order-flow").expect("the machine");
    let machine = sfn
        .describe_state_machine()
        .state_machine_arn(arn)
        .send()
        .await
        .expect("describe");
    let queue_url = second.queue_url("requests").expect("the requests queue");
    assert!(
        machine.definition().contains(queue_url),
        "{}",
        machine.definition()
    );
    assert!(
        !machine.definition().contains("${"),
        "{}",
        machine.definition()
    );

    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let targets = events
        .list_targets_by_rule()
        .rule(names.rule("order-placed"))
        .event_bus_name(names.bus())
        .send()
        .await
        .expect("targets");
    let mut ids: Vec<&str> = targets.targets().iter().map(|t| t.id()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["queue-inbox", "state-machine-order-flow"]);

    let path = topology.definitions_dir.join("order-flow.asl.json");
    let mut definition: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON");
    definition["Comment"] = json!("changed");
    std::fs::write(&path, definition.to_string()).expect("write");
    let third = deployed(&topology, &sdk).await;
    std::fs::remove_dir_all(&topology.definitions_dir).ok();
    for r in &third.resources {
        let expected = if r.kind == ResourceKind::StateMachine {
            Outcome::Updated
        } else {
            Outcome::Unchanged
        };
        assert_eq!(r.outcome, expected, "{}\n{third}", r.physical);
    }
}
