//! A benchmark of the runtime against a naive consumer, on real (or emulated) SQS.
//!
//! Both drain N no-op messages from a fresh queue, one job at a time, so the comparison
//! shows what batching and prefetch buy at equal parallelism:
//!
//! - `runtime`: [`Worker`] with its default concurrency (1) and a handler that does
//!   nothing. No-op handlers have a near-zero average duration, so the prefetch policy
//!   takes full batches of 10; finished messages are deleted 10 per call.
//! - `naive`: a loop of `ReceiveMessage` (1 message, long poll), handle, `DeleteMessage`.
//!
//! `sqs_requests_per_message` counts every SQS call made while draining (for the runtime:
//! its startup `GetQueueAttributes`/`GetQueueUrl`, every receive including the final empty
//! or cancelled one, every delete batch). Filling the queues is not counted.
//! `cpu_us_per_message` is this process's CPU time (user + system, all threads, from
//! `CLOCK_PROCESS_CPUTIME_ID`, which is what `getrusage(RUSAGE_SELF)` sums too) over the
//! drain, divided by the messages; the emulator runs in another process and is excluded,
//! but anything else this process does meanwhile is included.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use futures::StreamExt as _;
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, QueueUrl};
use crate::handler::{Delivery, Handler, HandlerError, JobContext};
use crate::metrics::SqsRequests;
use crate::worker::{Worker, WorkerError};

/// The results of both consumers.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub messages: usize,
    pub runtime: BenchRun,
    pub naive: BenchRun,
}

/// One consumer's results.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRun {
    /// `runtime` or `naive`.
    pub consumer: String,
    /// Handlers at once.
    pub concurrency: usize,
    pub messages: usize,
    pub seconds: f64,
    pub messages_per_second: f64,
    pub sqs_requests: u64,
    pub sqs_requests_per_message: f64,
    pub requests: SqsRequests,
    pub cpu_us_per_message: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("SQS {api} failed: {message}")]
    Sqs { api: &'static str, message: String },
    #[error("the {consumer} consumer handled {handled} of {expected} messages within {seconds} s")]
    Timeout {
        consumer: &'static str,
        handled: usize,
        expected: usize,
        seconds: u64,
    },
    #[error(transparent)]
    Worker(#[from] WorkerError),
}

/// Fills two fresh queues with `messages` no-op messages each and drains one with the
/// runtime and the other with a naive loop. The queues are deleted afterwards.
pub async fn bench(sdk: &SdkConfig, messages: usize) -> Result<BenchReport, BenchError> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let name = |what: &str| format!("bench-{what}-{}", &run_id[..10]);
    let dlq = create_queue(&sqs, &name("dlq"), None).await?;
    let dlq_arn = queue_arn(&sqs, &dlq).await?;
    let redrive =
        serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}).to_string();
    let runtime_queue = create_queue(&sqs, &name("runtime"), Some(&redrive)).await?;
    let naive_queue = create_queue(&sqs, &name("naive"), None).await?;
    let result = async {
        fill(&sqs, &runtime_queue, messages).await?;
        fill(&sqs, &naive_queue, messages).await?;
        let runtime = drain_with_runtime(sdk, &runtime_queue, messages).await?;
        let naive = drain_naively(&sqs, &naive_queue, messages).await?;
        Ok(BenchReport {
            messages,
            runtime,
            naive,
        })
    }
    .await;
    for url in [&runtime_queue, &naive_queue, &dlq] {
        if let Err(e) = sqs.delete_queue().queue_url(url.as_str()).send().await {
            tracing::warn!(queue = %url, error = %DisplayErrorContext(&e), "could not delete a benchmark queue");
        }
    }
    result
}

/// A handler that does nothing but count, and says when it reached its target (waking
/// the benchmark once instead of having it poll, which would cost CPU of its own).
struct Noop(Arc<Progress>);

struct Progress {
    handled: AtomicUsize,
    target: usize,
    done: Notify,
}

impl Handler for Noop {
    async fn handle(&self, _delivery: Delivery, _ctx: JobContext) -> Result<(), HandlerError> {
        if self.0.handled.fetch_add(1, Ordering::Relaxed) + 1 == self.0.target {
            self.0.done.notify_one();
        }
        Ok(())
    }
}

async fn drain_with_runtime(
    sdk: &SdkConfig,
    queue: &QueueUrl,
    messages: usize,
) -> Result<BenchRun, BenchError> {
    let config = Config {
        metrics_log: None,
        ..Config::new(queue.clone(), "bench")
    };
    let concurrency = config.concurrency;
    let progress = Arc::new(Progress {
        handled: AtomicUsize::new(0),
        target: messages,
        done: Notify::new(),
    });
    let worker = Worker::from_sdk(sdk, config, Noop(progress.clone()));
    let shutdown = CancellationToken::new();
    let limit = deadline(messages);
    let started = Instant::now();
    let cpu = cpu_time();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    let reached = messages == 0
        || tokio::time::timeout(limit, progress.done.notified())
            .await
            .is_ok();
    shutdown.cancel();
    let snapshot = run.await.map_err(|e| BenchError::Sqs {
        api: "(worker task)",
        message: e.to_string(),
    })??;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_time().saturating_sub(cpu);
    if !reached {
        return Err(BenchError::Timeout {
            consumer: "runtime",
            handled: snapshot.handler_count as usize,
            expected: messages,
            seconds: limit.as_secs(),
        });
    }
    Ok(summarize(
        "runtime",
        concurrency,
        messages,
        seconds,
        snapshot.requests,
        cpu,
    ))
}

async fn drain_naively(
    sqs: &aws_sdk_sqs::Client,
    queue: &QueueUrl,
    messages: usize,
) -> Result<BenchRun, BenchError> {
    let mut requests = SqsRequests::default();
    let mut handled = 0;
    let limit = deadline(messages);
    let started = Instant::now();
    let cpu = cpu_time();
    while handled < messages {
        if started.elapsed() > limit {
            return Err(BenchError::Timeout {
                consumer: "naive",
                handled,
                expected: messages,
                seconds: limit.as_secs(),
            });
        }
        requests.receive += 1;
        let out = sqs
            .receive_message()
            .queue_url(queue.as_str())
            .max_number_of_messages(1)
            .wait_time_seconds(20)
            .send()
            .await
            .map_err(|e| sqs_error("ReceiveMessage", &e))?;
        for m in out.messages() {
            handled += 1;
            requests.delete += 1;
            sqs.delete_message()
                .queue_url(queue.as_str())
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .map_err(|e| sqs_error("DeleteMessage", &e))?;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_time().saturating_sub(cpu);
    Ok(summarize("naive", 1, messages, seconds, requests, cpu))
}

fn summarize(
    consumer: &str,
    concurrency: usize,
    messages: usize,
    seconds: f64,
    requests: SqsRequests,
    cpu: Duration,
) -> BenchRun {
    let per = |x: f64| {
        if messages == 0 {
            0.0
        } else {
            x / messages as f64
        }
    };
    BenchRun {
        consumer: consumer.to_string(),
        concurrency,
        messages,
        seconds,
        messages_per_second: if seconds > 0.0 {
            messages as f64 / seconds
        } else {
            0.0
        },
        sqs_requests: requests.total(),
        sqs_requests_per_message: per(requests.total() as f64),
        requests,
        cpu_us_per_message: per(cpu.as_secs_f64() * 1e6),
    }
}

/// Generous: the emulator is slow, and a slow machine must not fail the benchmark.
fn deadline(messages: usize) -> Duration {
    Duration::from_secs(60)
        + Duration::from_millis(50) * u32::try_from(messages).unwrap_or(u32::MAX)
}

/// This process's CPU time so far, all threads, user and system.
pub fn cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    redrive: Option<&str>,
) -> Result<QueueUrl, BenchError> {
    let mut request = sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::VisibilityTimeout, "30");
    if let Some(redrive) = redrive {
        request = request.attributes(QueueAttributeName::RedrivePolicy, redrive);
    }
    let out = request
        .send()
        .await
        .map_err(|e| sqs_error("CreateQueue", &e))?;
    QueueUrl::parse(out.queue_url().unwrap_or_default()).map_err(|e| BenchError::Sqs {
        api: "CreateQueue",
        message: e.to_string(),
    })
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &QueueUrl) -> Result<String, BenchError> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url.as_str())
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| sqs_error("GetQueueAttributes", &e))?;
    out.attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| BenchError::Sqs {
            api: "GetQueueAttributes",
            message: format!("no QueueArn for {url}"),
        })
}

async fn fill(
    sqs: &aws_sdk_sqs::Client,
    queue: &QueueUrl,
    messages: usize,
) -> Result<(), BenchError> {
    let batches: Vec<Vec<usize>> = (0..messages)
        .collect::<Vec<_>>()
        .chunks(10)
        .map(<[usize]>::to_vec)
        .collect();
    let results: Vec<Result<(), BenchError>> = futures::stream::iter(batches)
        .map(|batch| async move {
            let entries = batch
                .iter()
                .map(|i| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(format!("{{\"noop\":{i}}}"))
                        .build()
                        .map_err(|e| BenchError::Sqs {
                            api: "SendMessageBatch",
                            message: e.to_string(),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = sqs
                .send_message_batch()
                .queue_url(queue.as_str())
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sqs_error("SendMessageBatch", &e))?;
            match out.failed().first() {
                Some(f) => Err(BenchError::Sqs {
                    api: "SendMessageBatch",
                    message: format!("{}: {}", f.code(), f.message().unwrap_or_default()),
                }),
                None => Ok(()),
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    results.into_iter().collect()
}

fn sqs_error<E>(api: &'static str, e: &aws_sdk_sqs::error::SdkError<E>) -> BenchError
where
    E: std::error::Error + 'static,
{
    BenchError::Sqs {
        api,
        message: DisplayErrorContext(e).to_string(),
    }
}
