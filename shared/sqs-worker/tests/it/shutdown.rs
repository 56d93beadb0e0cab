//! Graceful shutdown: running jobs finish, unstarted ones go back at once.

use std::time::{Duration, Instant};

use emulator::testing::wait_until;
use sqs_worker::Config;

use crate::{Recorder, queues, start};

#[tokio::test]
async fn shutdown_finishes_running_jobs_and_releases_prefetched_ones() {
    // A 30 s lease: anything visible within a few seconds was released, not lapsed.
    let q = queues(30, 3).await;
    let handler = Recorder::new(|body| {
        let takes = if body == "slow" {
            Duration::from_secs(3)
        } else {
            Duration::ZERO
        };
        (takes, Ok(()))
    });
    let worker = start(
        Config {
            drain_timeout: Duration::from_secs(20),
            ..q.config()
        },
        handler.clone(),
    )
    .await;
    // Quick jobs first: the worker learns that its jobs are short, so it prefetches.
    for _ in 0..5 {
        q.send("quick").await;
    }
    wait_until("warm-up done", Duration::from_secs(20), || async {
        handler.calls().len() == 5
    })
    .await;
    q.send("slow").await;
    wait_until("slow job started", Duration::from_secs(20), || async {
        handler.count("slow") == 1
    })
    .await;
    for _ in 0..4 {
        q.send("waiting").await;
    }
    wait_until(
        "the waiting ones prefetched",
        Duration::from_secs(20),
        || async { worker.metrics.snapshot().received == 10 },
    )
    .await;

    let stopping = Instant::now();
    let metrics = worker.stop().await;
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(10), "drained in {took:?}");
    assert_eq!(handler.count("slow"), 1);
    assert_eq!(handler.count("waiting"), 0, "unstarted jobs are not run");
    assert_eq!(metrics.released, 4);
    wait_until(
        "released messages visible again",
        Duration::from_secs(3),
        || async { q.counts(&q.queue).await == (4, 0) },
    )
    .await;
}

#[tokio::test]
async fn jobs_still_running_at_the_drain_deadline_are_released() {
    let q = queues(30, 3).await;
    q.send("endless").await;
    let handler = Recorder::new(|_| (Duration::from_secs(60), Ok(())));
    let worker = start(
        Config {
            drain_timeout: Duration::from_secs(1),
            ..q.config()
        },
        handler.clone(),
    )
    .await;
    wait_until("job started", Duration::from_secs(20), || async {
        handler.calls().len() == 1
    })
    .await;
    let stopping = Instant::now();
    let metrics = worker.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(5));
    assert_eq!(metrics.released, 1);
    wait_until(
        "released message visible again",
        Duration::from_secs(3),
        || async { q.counts(&q.queue).await == (1, 0) },
    )
    .await;
}
