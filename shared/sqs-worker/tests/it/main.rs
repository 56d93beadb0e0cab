//! The runtime against the emulator: the real SQS and DynamoDB adapters, real leases.

// Test helpers panic on a failed setup call: that is the test failing.
#![allow(clippy::unwrap_used)]

mod bench;
mod idempotency;
mod outcomes;
mod shutdown;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use emulator::testing;
use sqs_worker::{Config, Delivery, Handler, HandlerError, JobContext, QueueUrl, RetryPolicy};
use tokio_util::sync::CancellationToken;

/// A queue with a dead-letter queue, unique to one test.
struct Queues {
    sdk: aws_config::SdkConfig,
    queue: QueueUrl,
    dlq: QueueUrl,
}

async fn queues(visibility_s: u32, max_receive_count: u32) -> Queues {
    let sdk = emulator::test_emulator().await.sdk_config();
    let (queue, dlq) = testing::queue_with_dlq(
        &sdk,
        "worker",
        Duration::from_secs(visibility_s.into()),
        max_receive_count,
    )
    .await;
    Queues {
        sdk,
        queue: QueueUrl::parse(queue.url).unwrap(),
        dlq: QueueUrl::parse(dlq.url).unwrap(),
    }
}

impl Queues {
    async fn send(&self, body: &str) {
        testing::send(&self.sdk, self.queue.as_str(), body).await;
    }

    /// (visible, in flight) on `url`.
    async fn counts(&self, url: &QueueUrl) -> (u64, u64) {
        testing::counts(&self.sdk, url.as_str()).await
    }

    /// Waits for one message on the dead-letter queue and takes it.
    async fn dead_letter(&self, within: Duration) -> aws_sdk_sqs::types::Message {
        testing::receive_until(&self.sdk, self.dlq.as_str(), within, |m| Some(m.clone())).await
    }

    fn config(&self) -> Config {
        Config {
            metrics_log: None,
            retry: RetryPolicy {
                base_delay: Duration::from_secs(2),
                max_delay: Duration::from_secs(8),
                jitter: false,
            },
            ..Config::new(self.queue.clone(), emulator::unique_name("w"))
        }
    }
}

type Behaviour = Box<dyn Fn(&str) -> (Duration, Result<(), HandlerError>) + Send + Sync>;

/// A handler that records its calls and behaves as told per body: how long to take, what
/// to answer. Clones share the record.
#[derive(Clone)]
struct Recorder(Arc<RecorderInner>);

struct RecorderInner {
    calls: Mutex<Vec<(String, Instant)>>,
    behaviour: Behaviour,
}

impl Recorder {
    fn new(
        behaviour: impl Fn(&str) -> (Duration, Result<(), HandlerError>) + Send + Sync + 'static,
    ) -> Recorder {
        Recorder(Arc::new(RecorderInner {
            calls: Mutex::new(Vec::new()),
            behaviour: Box::new(behaviour),
        }))
    }

    fn calls(&self) -> Vec<(String, Instant)> {
        self.0.calls.lock().unwrap().clone()
    }

    fn count(&self, body: &str) -> usize {
        self.calls().iter().filter(|c| c.0 == body).count()
    }
}

impl Handler for Recorder {
    async fn handle(&self, delivery: Delivery, _ctx: JobContext) -> Result<(), HandlerError> {
        self.0
            .calls
            .lock()
            .unwrap()
            .push((delivery.body.clone(), Instant::now()));
        let (takes, answer) = (self.0.behaviour)(&delivery.body);
        tokio::time::sleep(takes).await;
        answer
    }
}

/// A running worker, stopped (and awaited) by [`Running::stop`].
struct Running {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<sqs_worker::MetricsSnapshot, sqs_worker::WorkerError>>,
    metrics: Arc<sqs_worker::Metrics>,
}

async fn start<H: Handler>(config: Config, handler: H) -> Running {
    let sdk = emulator::test_emulator().await.sdk_config();
    let worker = sqs_worker::Worker::from_sdk(&sdk, config, handler);
    let metrics = worker.metrics();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(worker.run(shutdown.clone()));
    Running {
        shutdown,
        task,
        metrics,
    }
}

impl Running {
    async fn stop(self) -> sqs_worker::MetricsSnapshot {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the worker stops within 30 s")
            .unwrap()
            .unwrap()
    }
}
