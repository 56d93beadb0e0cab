//! The publisher against the emulator: events reach the queues their rules target.

// Tests may panic on what they did not expect: that is how they fail.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bus::Publisher;
use contracts::Entry;
use serde_json::json;

#[tokio::test]
async fn published_events_reach_a_queue_targeted_by_a_matching_rule() {
    let emulator = emulator::test_emulator().await;
    let sdk = emulator.sdk_config();
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let bus_name = emulator::unique_name("bus");
    let queue_name = emulator::unique_name("queue");
    events
        .create_event_bus()
        .name(&bus_name)
        .send()
        .await
        .unwrap();
    let queue_url = sqs
        .create_queue()
        .queue_name(&queue_name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue_arn = format!(
        "arn:aws:sqs:{}:{}:{queue_name}",
        emulator::REGION,
        emulator::ACCOUNT_ID
    );
    events
        .put_rule()
        .name("only-tested")
        .event_bus_name(&bus_name)
        .event_pattern(json!({"source": ["fleet.test"], "detail-type": ["Tested"]}).to_string())
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("only-tested")
        .event_bus_name(&bus_name)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(&queue_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let publisher = Publisher::from_sdk(&sdk, &bus_name);
    let entries: Vec<Entry> = (0..23)
        .map(|i| Entry::new("fleet.test", "Tested", &json!({ "i": i })).unwrap())
        .chain([Entry::new("fleet.other", "Tested", &json!({ "i": 99 })).unwrap()])
        .collect();
    let outcome = publisher.put(entries).await;
    assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    assert!(outcome.event_ids.iter().all(Option::is_some));

    // Wait, with a deadline, until the 23 matching events arrived; the other one must not.
    let distinct = |bodies: &[serde_json::Value]| {
        bodies
            .iter()
            .map(|body| body["detail"]["i"].as_i64().unwrap())
            .collect::<std::collections::BTreeSet<_>>()
    };
    let bodies = emulator::testing::collect_until(&sdk, &queue_url, Duration::from_secs(20), |b| {
        distinct(b).len() >= 23
    })
    .await;
    for body in &bodies {
        assert_eq!(body["source"], "fleet.test");
    }
    let seen = distinct(&bodies);
    assert_eq!(seen, (0..23).collect());
}
