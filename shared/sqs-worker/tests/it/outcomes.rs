//! What happens to a message after its handler: deleted, retried, dead-lettered, leased.

use std::time::Duration;

use emulator::testing::wait_until;
use sqs_worker::{Config, HandlerError, attributes};

use crate::{Recorder, queues, start};

#[tokio::test]
async fn handled_messages_are_deleted() {
    let q = queues(30, 3).await;
    for i in 0..3 {
        q.send(&format!("m{i}")).await;
    }
    let handler = Recorder::new(|_| (Duration::ZERO, Ok(())));
    let worker = start(q.config(), handler.clone()).await;
    wait_until(
        "all handled and deleted",
        Duration::from_secs(20),
        || async { handler.calls().len() == 3 && q.counts(&q.queue).await == (0, 0) },
    )
    .await;
    let metrics = worker.stop().await;
    assert_eq!(metrics.succeeded, 3);
    assert_eq!(handler.calls().len(), 3, "nothing ran twice");
}

#[tokio::test]
async fn retryable_errors_back_off_and_end_in_the_dead_letter_queue_intact() {
    let q = queues(30, 3).await;
    let body = r#"{"flaky": true, "text": "ünïcode"}"#;
    q.send(body).await;
    let handler = Recorder::new(|_| {
        (
            Duration::ZERO,
            Err(HandlerError::retryable("dependency down")),
        )
    });
    let worker = start(q.config(), handler.clone()).await;
    let dead = q.dead_letter(Duration::from_secs(30)).await;
    let metrics = worker.stop().await;

    assert_eq!(dead.body(), Some(body));
    let calls = handler.calls();
    assert_eq!(calls.len(), 3, "maxReceiveCount attempts");
    let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1].1 - w[0].1).collect();
    // Base 2 s, doubling; the emulator notices a lapsed lease up to a second late.
    assert!(gaps[0] >= Duration::from_millis(1900), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(3900), "{gaps:?}");
    assert!(gaps[1] > gaps[0], "{gaps:?}");
    assert_eq!(metrics.retried, 3);
    assert_eq!(q.counts(&q.queue).await, (0, 0));
}

#[tokio::test]
async fn fatal_errors_go_to_the_dead_letter_queue_at_once_with_their_reason() {
    let q = queues(30, 3).await;
    let body = "not json at all";
    q.send(body).await;
    let handler = Recorder::new(|_| {
        (
            Duration::ZERO,
            Err(HandlerError::fatal(
                "Message.Invalid",
                "invalid task: field `(body)`: not JSON",
            )),
        )
    });
    let config = q.config();
    let worker_id = config.worker_id.clone();
    let worker = start(config, handler.clone()).await;
    let dead = q.dead_letter(Duration::from_secs(10)).await;
    let metrics = worker.stop().await;

    assert_eq!(dead.body(), Some(body));
    let attr = |name: &str| {
        dead.message_attributes()
            .and_then(|a| a.get(name))
            .and_then(|v| v.string_value())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("attribute {name} missing"))
    };
    assert_eq!(attr(attributes::ERROR), "Message.Invalid");
    assert_eq!(
        attr(attributes::REASON),
        "invalid task: field `(body)`: not JSON"
    );
    assert_eq!(attr(attributes::SOURCE_QUEUE), q.queue.as_str());
    assert_eq!(attr(attributes::RECEIVE_COUNT), "1");
    assert_eq!(attr(attributes::WORKER), worker_id);
    assert!(
        time::OffsetDateTime::parse(
            &attr(attributes::FAILED_AT),
            &time::format_description::well_known::Rfc3339
        )
        .is_ok()
    );
    assert_eq!(handler.calls().len(), 1, "never retried");
    assert_eq!(metrics.dead_lettered, 1);
    assert_eq!(q.counts(&q.queue).await, (0, 0), "the original is deleted");
}

#[tokio::test]
async fn a_job_longer_than_several_leases_is_delivered_once() {
    // A 2 s lease and a 7 s job, with two workers competing for the queue.
    let q = queues(2, 5).await;
    q.send("long").await;
    let handler = Recorder::new(|_| (Duration::from_secs(7), Ok(())));
    let config = || Config {
        visibility_timeout: Some(Duration::from_secs(2)),
        ..q.config()
    };
    let first = start(config(), handler.clone()).await;
    let second = start(config(), handler.clone()).await;
    wait_until(
        "the long job finished and was deleted",
        Duration::from_secs(25),
        || async {
            first.metrics.snapshot().succeeded + second.metrics.snapshot().succeeded == 1
                && q.counts(&q.queue).await == (0, 0)
        },
    )
    .await;
    let (a, b) = (first.stop().await, second.stop().await);
    assert_eq!(handler.count("long"), 1, "delivered exactly once");
    assert!(
        a.requests.change_visibility + b.requests.change_visibility >= 3,
        "the lease was extended"
    );
}
