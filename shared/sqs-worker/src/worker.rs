//! The consumer loop: receives, runs handlers within the concurrency limit, settles each
//! message by its outcome, and drains on shutdown.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, Retryable as _};
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DeadLetter, QueueUrl};
use crate::handler::{Delivery, Handler, HandlerError, IdempotencyKey, JobContext, JobShared};
use crate::idempotency::{Claim, DynamoStore, IdempotencyStore};
use crate::leases::{Command, Keeper, KeeperConfig, call_backoff, sleep_until_some};
use crate::metrics::{Api, Counted, Metrics, MetricsSnapshot};
use crate::policy::{MAX_VISIBILITY, MovingAverage, Occupancy, receive_size, retry_delay};
use crate::queue::{Queue, QueueError, ReceivedMessage};
use crate::sqs::SqsQueue;

/// Message attributes a dead-lettered message carries (besides its own).
pub mod attributes {
    /// The error's stable name.
    pub const ERROR: &str = "fleet.error";
    /// Human-readable text: what was wrong and how to fix it.
    pub const REASON: &str = "fleet.reason";
    /// The URL of the queue the message came from.
    pub const SOURCE_QUEUE: &str = "fleet.source-queue";
    pub const RECEIVE_COUNT: &str = "fleet.receive-count";
    /// RFC 3339.
    pub const FAILED_AT: &str = "fleet.failed-at";
    /// The worker that gave up on it.
    pub const WORKER: &str = "fleet.worker";
}

/// SQS allows this many message attributes per message.
const MAX_MESSAGE_ATTRIBUTES: usize = 10;
/// `fleet.reason` is cut to this many bytes: attributes count against the message size.
const MAX_REASON_BYTES: usize = 1024;
/// A buffered message whose lease has less than this share of the visibility timeout left
/// is not started: it is about to be delivered again, maybe to another worker.
const MIN_LEASE_LEFT_TO_START: f64 = 0.25;
/// The 12-hour ceiling is measured by SQS's clock; stay this far inside it.
const CEILING_MARGIN: Duration = Duration::from_secs(30);
/// The long-poll wait of a receive made while handlers run or messages wait in the buffer.
///
/// A shutdown cannot simply drop an outstanding receive: the server may still hand it
/// messages (the emulator does; SQS does not promise otherwise), and those would wait out
/// their lease. So a draining worker lets the receive finish and releases what it
/// returned. Short waits while busy keep that quick; an idle worker polls the full
/// `Config::wait_time` and may take that long to stop.
const BUSY_WAIT: Duration = Duration::from_secs(2);

/// Why the worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("invalid worker configuration: {0}")]
    Config(String),
    #[error("could not read the queue's attributes: {0}")]
    Queue(#[from] QueueError),
    #[error(
        "queue {queue} has no RedrivePolicy, so there is nowhere to put messages that can never succeed; give the queue a dead-letter queue or set Config::dead_letter"
    )]
    NoDeadLetterQueue { queue: String },
}

/// A queue consumer: [`Worker::run`] it until a shutdown token is cancelled.
pub struct Worker<Q: Queue, H: Handler> {
    queue: Arc<Q>,
    handler: Arc<H>,
    config: Config,
    metrics: Arc<Metrics>,
    store: Option<Arc<dyn IdempotencyStore>>,
}

impl<Q: Queue, H: Handler> std::fmt::Debug for Worker<Q, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("queue", &self.config.queue_url)
            .field("worker_id", &self.config.worker_id)
            .finish()
    }
}

impl<H: Handler> Worker<SqsQueue, H> {
    /// A worker on the real queue, with a DynamoDB idempotency store when
    /// [`Config::idempotency`] is set.
    pub fn from_sdk(sdk: &aws_config::SdkConfig, config: Config, handler: H) -> Self {
        let queue = SqsQueue::from_sdk(sdk, config.queue_url.clone());
        let store = config.idempotency.clone().map(|c| {
            let store: Arc<dyn IdempotencyStore> = Arc::new(DynamoStore::from_sdk(sdk, c));
            store
        });
        let mut worker = Worker::new(queue, handler, config);
        worker.store = store;
        worker
    }
}

impl<Q: Queue, H: Handler> Worker<Q, H> {
    /// A worker on any [`Queue`], without idempotency records.
    pub fn new(queue: Q, handler: H, config: Config) -> Self {
        let metrics = Arc::new(Metrics::new(config.queue_url.name()));
        Worker {
            queue: Arc::new(queue),
            handler: Arc::new(handler),
            config,
            metrics,
            store: None,
        }
    }

    /// Uses `store` for idempotency records (replacing any from the config).
    pub fn with_store(mut self, store: impl IdempotencyStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// The live counters, to read while the worker runs.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Consumes the queue until `shutdown` is cancelled, then drains: no more receives,
    /// unstarted messages released at once, running handlers given until
    /// [`Config::drain_timeout`], then released too. Returns the final counters.
    pub async fn run(self, shutdown: CancellationToken) -> Result<MetricsSnapshot, WorkerError> {
        let Worker {
            queue,
            handler,
            config,
            metrics,
            store,
        } = self;
        if config.concurrency == 0 {
            return Err(WorkerError::Config("concurrency must be at least 1".into()));
        }
        metrics.call(Api::Other);
        let attrs = queue.attributes().await?;
        let visibility = Duration::from_secs(crate::policy::sqs_seconds(
            config
                .visibility_timeout
                .unwrap_or(attrs.visibility_timeout),
        ) as u64);
        if visibility < Duration::from_secs(2) {
            return Err(WorkerError::Config(format!(
                "the visibility timeout is {} s; heartbeats need at least 2 s (set Config::visibility_timeout or the queue's VisibilityTimeout)",
                visibility.as_secs()
            )));
        }
        let dead_letter_queue = match (&config.dead_letter, &attrs.redrive) {
            (DeadLetter::Queue(url), _) => url.clone(),
            (DeadLetter::FromRedrivePolicy, Some(redrive)) => redrive.dead_letter_queue.clone(),
            (DeadLetter::FromRedrivePolicy, None) => {
                return Err(WorkerError::NoDeadLetterQueue {
                    queue: config.queue_url.to_string(),
                });
            }
        };
        tracing::info!(
            queue = %config.queue_url,
            worker_id = %config.worker_id,
            concurrency = config.concurrency,
            visibility_s = visibility.as_secs(),
            dead_letter_queue = %dead_letter_queue,
            max_receive_count = attrs.redrive.as_ref().map(|r| r.max_receive_count),
            idempotency = store.is_some(),
            "worker started"
        );

        let (commands, command_rx) = mpsc::unbounded_channel();
        let keeper = Keeper::new(
            queue.clone(),
            metrics.clone(),
            store.clone(),
            KeeperConfig {
                visibility,
                delete_flush_interval: config.delete_flush_interval,
                metrics_log: config.metrics_log,
            },
        );
        let keeper = tokio::spawn(keeper.run(command_rx));
        let shared = Arc::new(Shared {
            queue: queue.clone(),
            handler,
            metrics: metrics.clone(),
            store,
            commands: commands.clone(),
            visibility,
            dead_letter_queue,
            max_receive_count: attrs.redrive.as_ref().map(|r| r.max_receive_count),
            config: config.clone(),
        });

        let mut state = LoopState {
            buffer: VecDeque::new(),
            jobs: JoinSet::new(),
            job_ids: HashMap::new(),
            next_id: 0,
            average: MovingAverage::default(),
            abandon: CancellationToken::new(),
        };
        let mut receive: Option<BoxFuture<'static, Result<Vec<ReceivedMessage>, QueueError>>> =
            None;
        let mut receive_backoff = receive_backoff();
        let mut receive_not_before: Option<Instant> = None;
        let mut drain_deadline: Option<Instant> = None;

        loop {
            if drain_deadline.is_none() {
                state.start_buffered(&shared, &shutdown);
            } else if receive.is_none() && !state.buffer.is_empty() {
                release_buffer(&mut state, &shared);
            }
            if drain_deadline.is_none()
                && receive.is_none()
                && receive_not_before.is_none_or(|t| t <= Instant::now())
            {
                receive_not_before = None;
                let n = receive_size(&Occupancy {
                    concurrency: config.concurrency,
                    running: state.jobs.len(),
                    buffered: state.buffer.len(),
                    average_handler: state.average.get(),
                    visibility,
                    max_prefetch: config.max_prefetch,
                });
                if n > 0 {
                    let queue = queue.clone();
                    let busy = !state.jobs.is_empty() || !state.buffer.is_empty();
                    let wait = if busy {
                        BUSY_WAIT.min(config.wait_time)
                    } else {
                        config.wait_time
                    };
                    metrics.call(Api::Receive);
                    receive = Some(Box::pin(
                        async move { queue.receive(n, wait, visibility).await },
                    ));
                }
            }
            if drain_deadline.is_some()
                && state.jobs.is_empty()
                && receive.is_none()
                && state.buffer.is_empty()
            {
                break;
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled(), if drain_deadline.is_none() => {
                    // Unstarted messages are released at the top of the loop once no
                    // receive is outstanding (see BUSY_WAIT).
                    tracing::info!(queue = %config.queue_url, running = state.jobs.len(), unstarted = state.buffer.len(), receiving = receive.is_some(), drain_timeout_s = config.drain_timeout.as_secs_f64(), "shutting down: draining");
                    drain_deadline = Some(Instant::now() + config.drain_timeout);
                }
                _ = sleep_until_some(drain_deadline) => {
                    tracing::warn!(queue = %config.queue_url, running = state.jobs.len(), "drain deadline passed: releasing the messages of running handlers");
                    // An outstanding receive is dropped when the loop ends.
                    release_buffer(&mut state, &shared);
                    state.abandon.cancel();
                    for _ in 0..state.jobs.len() {
                        metrics.count(Counted::Released);
                    }
                    let _ = commands.send(Command::ReleaseAll);
                    state.jobs.abort_all();
                    while state.jobs.join_next().await.is_some() {
                        metrics.finished();
                    }
                    break;
                }
                _ = sleep_until_some(receive_not_before), if receive.is_none() => {}
                result = poll_some(&mut receive) => {
                    receive = None;
                    match result {
                        Ok(messages) => {
                            receive_backoff = self::receive_backoff();
                            metrics.add_received(messages.len());
                            let now = Instant::now();
                            for message in messages {
                                let ceiling = ceiling(now, message.first_received_at);
                                state.buffer.push_back(Pending { message, received_at: now, ceiling });
                            }
                        }
                        Err(e) => {
                            let delay = receive_backoff.next().unwrap_or(Duration::from_secs(20));
                            tracing::warn!(queue = %config.queue_url, error = %e, retry_in_ms = delay.as_millis() as u64, "receive failed");
                            receive_not_before = Some(Instant::now() + delay);
                        }
                    }
                }
                Some(joined) = state.jobs.join_next_with_id() => {
                    metrics.finished();
                    match joined {
                        Ok((task, done)) => {
                            state.job_ids.remove(&task);
                            if let Some(took) = done.handler_duration {
                                state.average.record(took);
                            }
                        }
                        Err(e) => {
                            let id = state.job_ids.remove(&e.id());
                            tracing::error!(queue = %config.queue_url, error = %e, "handler panicked; the message will be retried");
                            if let Some(id) = id {
                                metrics.count(Counted::Retried);
                                let after = retry_delay(&config.retry, 1, None, rand::random());
                                let _ = commands.send(Command::Retry { id, after });
                            }
                        }
                    }
                }
            }
        }

        drop(shared);
        drop(commands);
        if let Err(e) = keeper.await {
            tracing::error!(queue = %config.queue_url, error = %e, "lease keeper failed");
        }
        if config.metrics_log.is_some() {
            metrics.log_emf();
        }
        let snapshot = metrics.snapshot();
        tracing::info!(queue = %config.queue_url, received = snapshot.received, succeeded = snapshot.succeeded, retried = snapshot.retried, dead_lettered = snapshot.dead_lettered, released = snapshot.released, "worker stopped");
        Ok(snapshot)
    }
}

/// Makes every buffered message visible again at once.
fn release_buffer<Q: Queue, H: Handler>(state: &mut LoopState, shared: &Shared<Q, H>) {
    let handles: Vec<_> = state
        .buffer
        .drain(..)
        .map(|p| p.message.receipt_handle)
        .collect();
    if handles.is_empty() {
        return;
    }
    for _ in &handles {
        shared.metrics.count(Counted::Released);
    }
    tracing::info!(queue = %shared.config.queue_url, released = handles.len(), "released unstarted messages");
    let _ = shared.commands.send(Command::Release { handles });
}

/// What every job task shares.
struct Shared<Q, H> {
    queue: Arc<Q>,
    handler: Arc<H>,
    metrics: Arc<Metrics>,
    store: Option<Arc<dyn IdempotencyStore>>,
    commands: mpsc::UnboundedSender<Command>,
    visibility: Duration,
    dead_letter_queue: QueueUrl,
    max_receive_count: Option<u32>,
    config: Config,
}

struct Pending {
    message: ReceivedMessage,
    received_at: Instant,
    ceiling: Instant,
}

struct LoopState {
    buffer: VecDeque<Pending>,
    jobs: JoinSet<JobDone>,
    job_ids: HashMap<tokio::task::Id, u64>,
    next_id: u64,
    average: MovingAverage,
    /// Cancelled at the drain deadline.
    abandon: CancellationToken,
}

struct JobDone {
    handler_duration: Option<Duration>,
}

impl LoopState {
    /// Starts buffered messages while slots are free.
    fn start_buffered<Q: Queue, H: Handler>(
        &mut self,
        shared: &Arc<Shared<Q, H>>,
        shutdown: &CancellationToken,
    ) {
        while self.jobs.len() < shared.config.concurrency {
            let Some(pending) = self.buffer.pop_front() else {
                break;
            };
            let now = Instant::now();
            let expires_at = pending.received_at + shared.visibility;
            if expires_at.saturating_duration_since(now)
                < shared.visibility.mul_f64(MIN_LEASE_LEFT_TO_START)
            {
                shared.metrics.count(Counted::Expired);
                tracing::warn!(queue = %shared.config.queue_url, message_id = %pending.message.message_id, "a prefetched message's lease lapsed before it could start; leaving it to be delivered again");
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let job = Arc::new(JobShared {
                receive_count: pending.message.receive_count,
                message_id: pending.message.message_id.clone(),
                worker_id: shared.config.worker_id.clone(),
                shutdown: shutdown.clone(),
                abandon: self.abandon.child_token(),
                lease_lost: AtomicBool::new(false),
                heartbeat_paused: AtomicBool::new(false),
                claim: OnceLock::new(),
            });
            let _ = shared.commands.send(Command::Track {
                id,
                handle: pending.message.receipt_handle.clone(),
                expires_at,
                ceiling: pending.ceiling,
                job: job.clone(),
            });
            shared.metrics.started();
            let task = self
                .jobs
                .spawn(run_job(shared.clone(), id, pending.message, job));
            self.job_ids.insert(task.id(), id);
        }
    }
}

/// Runs one message through the idempotency check and the handler, then settles it.
async fn run_job<Q: Queue, H: Handler>(
    shared: Arc<Shared<Q, H>>,
    id: u64,
    message: ReceivedMessage,
    job: Arc<JobShared>,
) -> JobDone {
    let delivery = Delivery {
        message_id: message.message_id.clone(),
        body: message.body.clone(),
        receive_count: message.receive_count,
        sent_at: message.sent_at,
        attributes: message.attributes.clone(),
    };
    let queue_url = &shared.config.queue_url;
    let claim = match (&shared.store, shared.handler.idempotency_key(&delivery)) {
        (Some(store), Some(key)) => {
            let owner = format!("{}:{}", shared.config.worker_id, message.message_id);
            match store.acquire(&key, &owner, shared.visibility).await {
                Ok(Claim::Acquired) => {
                    let _ = job.claim.set((key.clone(), owner.clone()));
                    Some((store.clone(), key, owner))
                }
                Ok(Claim::Completed) => {
                    tracing::info!(queue = %queue_url, message_id = %message.message_id, key = %key.key, "already completed; acknowledging without running");
                    shared.metrics.count(Counted::Duplicate);
                    let _ = shared.commands.send(Command::Delete { id });
                    return JobDone {
                        handler_duration: None,
                    };
                }
                Ok(Claim::Superseded) => {
                    tracing::info!(queue = %queue_url, message_id = %message.message_id, key = %key.key, sequence = key.sequence, "a newer attempt of this work holds its record; acknowledging this older one without running");
                    shared.metrics.count(Counted::Superseded);
                    let _ = shared.commands.send(Command::Delete { id });
                    return JobDone {
                        handler_duration: None,
                    };
                }
                Ok(Claim::HeldElsewhere { lease_left }) => {
                    let after = (lease_left + Duration::from_secs(1)).clamp(
                        Duration::from_secs(1),
                        shared.config.retry.max_delay.max(Duration::from_secs(1)),
                    );
                    tracing::info!(queue = %queue_url, message_id = %message.message_id, key = %key.key, retry_in_s = after.as_secs(), "another worker holds this key; putting the message back");
                    shared.metrics.count(Counted::Deferred);
                    let _ = shared.commands.send(Command::Delay { id, after });
                    return JobDone {
                        handler_duration: None,
                    };
                }
                Err(e) => {
                    let after = shared.retry_delay(message.receive_count);
                    tracing::warn!(queue = %queue_url, message_id = %message.message_id, error = %e, retry_in_s = after.as_secs(), "idempotency store unavailable; retrying the message later");
                    shared.metrics.count(Counted::Retried);
                    let _ = shared.commands.send(Command::Delay { id, after });
                    return JobDone {
                        handler_duration: None,
                    };
                }
            }
        }
        _ => None,
    };

    let started = Instant::now();
    let result = shared
        .handler
        .handle(delivery, JobContext { inner: job.clone() })
        .await;
    let took = started.elapsed();
    shared.metrics.handler_took(took);
    let done = JobDone {
        handler_duration: Some(took),
    };
    if job.abandon.is_cancelled() {
        // The runtime already made the message visible again.
        return done;
    }

    match result {
        Ok(()) => {
            if let Some((store, key, owner)) = &claim {
                match store.complete(key, owner).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(key = %key.key, "idempotency record was taken over before completion")
                    }
                    Err(e) => {
                        tracing::warn!(key = %key.key, error = %e, "could not record completion; a redelivery would run again")
                    }
                }
            }
            shared.metrics.count(Counted::Succeeded);
            let _ = shared.commands.send(Command::Delete { id });
        }
        Err(HandlerError::Retryable { reason }) => {
            release(&claim).await;
            let after = shared.retry_delay(message.receive_count);
            tracing::warn!(queue = %queue_url, message_id = %message.message_id, receive_count = message.receive_count, retry_in_s = after.as_secs_f64(), reason = %reason, "handler failed; will retry");
            shared.metrics.count(Counted::Retried);
            let _ = shared.commands.send(Command::Delay { id, after });
        }
        Err(HandlerError::Fatal { name, reason }) => {
            release(&claim).await;
            match dead_letter(&shared, &message, &name, &reason).await {
                Ok(()) => {
                    tracing::error!(queue = %queue_url, message_id = %message.message_id, dead_letter_queue = %shared.dead_letter_queue, error = %name, reason = %reason, "message cannot succeed; moved to the dead-letter queue");
                    shared.metrics.count(Counted::DeadLettered);
                    let _ = shared.commands.send(Command::Delete { id });
                }
                Err(e) => {
                    let after = shared.retry_delay(message.receive_count);
                    tracing::error!(queue = %queue_url, message_id = %message.message_id, error = %e, "could not dead-letter the message; it stays on the queue and is retried");
                    shared.metrics.count(Counted::Retried);
                    let _ = shared.commands.send(Command::Delay { id, after });
                }
            }
        }
    }
    done
}

impl<Q: Queue, H: Handler> Shared<Q, H> {
    fn retry_delay(&self, receive_count: u32) -> Duration {
        retry_delay(
            &self.config.retry,
            receive_count,
            self.max_receive_count,
            rand::random(),
        )
    }
}

async fn release(claim: &Option<(Arc<dyn IdempotencyStore>, IdempotencyKey, String)>) {
    if let Some((store, key, owner)) = claim
        && let Err(e) = store.release(key, owner).await
    {
        tracing::warn!(key = %key.key, error = %e, "could not release the idempotency lease; the next attempt waits for it to lapse");
    }
}

/// Sends the message, body unchanged, to the dead-letter queue with the reason as
/// attributes. The caller deletes the original only after this succeeded.
async fn dead_letter<Q: Queue, H: Handler>(
    shared: &Shared<Q, H>,
    message: &ReceivedMessage,
    name: &str,
    reason: &str,
) -> Result<(), QueueError> {
    let failed_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let ours = [
        (attributes::ERROR, name.to_string()),
        (attributes::REASON, truncate(reason, MAX_REASON_BYTES)),
        (
            attributes::SOURCE_QUEUE,
            shared.config.queue_url.to_string(),
        ),
        (attributes::RECEIVE_COUNT, message.receive_count.to_string()),
        (attributes::FAILED_AT, failed_at),
        (attributes::WORKER, shared.config.worker_id.clone()),
    ];
    let mut all: Vec<(String, String)> = message
        .attributes
        .iter()
        .filter(|(k, _)| !k.starts_with("fleet."))
        .take(MAX_MESSAGE_ATTRIBUTES - ours.len())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    all.extend(ours.into_iter().map(|(k, v)| (k.to_string(), v)));
    let queue = &shared.queue;
    let metrics = &shared.metrics;
    let to = &shared.dead_letter_queue;
    (|| async {
        metrics.call(Api::Send);
        queue.send(to, &message.body, &all).await
    })
    .retry(call_backoff())
    .await
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The last instant a lease may be extended to: 12 h after the first receipt, less a margin.
fn ceiling(now: Instant, first_received_at: Option<SystemTime>) -> Instant {
    let age = first_received_at
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    now + MAX_VISIBILITY
        .saturating_sub(age)
        .saturating_sub(CEILING_MARGIN)
}

fn receive_backoff() -> backon::ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(20))
        .without_max_times()
        .with_jitter()
        .build()
}

async fn poll_some<T>(future: &mut Option<BoxFuture<'static, T>>) -> T {
    match future {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::memory::MemoryQueue;

    /// A handler that records when it ran and answers from a script.
    struct Scripted {
        calls: Mutex<Vec<(String, Instant)>>,
        answer: fn(&str) -> Result<(), HandlerError>,
        takes: Duration,
    }

    impl Handler for Arc<Scripted> {
        async fn handle(&self, delivery: Delivery, _ctx: JobContext) -> Result<(), HandlerError> {
            self.calls
                .lock()
                .unwrap()
                .push((delivery.body.clone(), Instant::now()));
            tokio::time::sleep(self.takes).await;
            (self.answer)(&delivery.body)
        }
    }

    fn scripted(answer: fn(&str) -> Result<(), HandlerError>, takes: Duration) -> Arc<Scripted> {
        Arc::new(Scripted {
            calls: Mutex::new(Vec::new()),
            answer,
            takes,
        })
    }

    fn queues(visibility: u64, max_receive_count: u32) -> (Arc<MemoryQueue>, Arc<MemoryQueue>) {
        let dlq = Arc::new(MemoryQueue::new("dlq", Duration::from_secs(30)));
        let queue = Arc::new(
            MemoryQueue::new("q", Duration::from_secs(visibility))
                .with_dead_letter(dlq.clone(), max_receive_count),
        );
        (queue, dlq)
    }

    fn config(queue: &MemoryQueue) -> Config {
        Config {
            metrics_log: None,
            retry: RetryPolicy {
                base_delay: Duration::from_secs(10),
                max_delay: Duration::from_secs(100),
                jitter: false,
            },
            ..Config::new(queue.url().clone(), "test-worker")
        }
    }

    /// Runs the worker until `done` holds (checked every 100 ms of virtual time, at most
    /// an hour), then shuts it down.
    async fn run_until(
        worker: Worker<Arc<MemoryQueue>, Arc<Scripted>>,
        done: impl Fn() -> bool,
    ) -> MetricsSnapshot {
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(worker.run(shutdown.clone()));
        let deadline = Instant::now() + Duration::from_secs(3600);
        while !done() {
            assert!(Instant::now() < deadline, "condition not reached");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        shutdown.cancel();
        run.await.unwrap().unwrap()
    }

    use crate::config::RetryPolicy;

    #[tokio::test(start_paused = true)]
    async fn retryable_errors_back_off_then_redrive_to_the_dead_letter_queue() {
        let (queue, dlq) = queues(30, 3);
        queue.push("flaky");
        let handler = scripted(|_| Err(HandlerError::retryable("down")), Duration::ZERO);
        let worker = Worker::new(queue.clone(), handler.clone(), config(&queue));
        let metrics = run_until(worker, || !dlq.messages().is_empty()).await;

        let calls = handler.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 3);
        let gaps: Vec<u64> = calls
            .windows(2)
            .map(|w| (w[1].1 - w[0].1).as_secs())
            .collect();
        // 10 s after the first attempt, 20 s after the second; the third had no delay
        // because the next receive dead-letters it anyway.
        assert_eq!(gaps, [10, 20]);
        assert_eq!(dlq.messages()[0].body, "flaky");
        assert!(queue.messages().is_empty());
        assert_eq!(metrics.retried, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn fatal_errors_go_to_the_dead_letter_queue_at_once_with_the_reason() {
        let (queue, dlq) = queues(30, 3);
        queue.push_with("bad", [("trace".to_string(), "t-1".to_string())].into());
        let handler = scripted(
            |_| {
                Err(HandlerError::fatal(
                    "Message.Invalid",
                    "field `x` is missing",
                ))
            },
            Duration::ZERO,
        );
        let worker = Worker::new(queue.clone(), handler.clone(), config(&queue));
        let metrics = run_until(worker, || {
            !dlq.messages().is_empty() && queue.messages().is_empty()
        })
        .await;

        let dead = &dlq.messages()[0];
        assert_eq!(dead.body, "bad");
        assert_eq!(dead.attributes[attributes::ERROR], "Message.Invalid");
        assert_eq!(dead.attributes[attributes::REASON], "field `x` is missing");
        assert_eq!(dead.attributes[attributes::RECEIVE_COUNT], "1");
        assert_eq!(
            dead.attributes[attributes::SOURCE_QUEUE],
            queue.url().as_str()
        );
        assert_eq!(dead.attributes["trace"], "t-1");
        assert_eq!(handler.calls.lock().unwrap().len(), 1);
        assert_eq!(metrics.dead_lettered, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_longer_than_many_leases_runs_once() {
        let (queue, _dlq) = queues(30, 3);
        queue.push("long");
        let handler = scripted(|_| Ok(()), Duration::from_secs(600));
        let worker = Worker::new(queue.clone(), handler.clone(), config(&queue));
        let metrics = run_until(worker, || queue.messages().is_empty()).await;
        assert_eq!(handler.calls.lock().unwrap().len(), 1);
        assert_eq!(metrics.succeeded, 1);
        // About one extension per half lease.
        assert!(
            metrics.requests.change_visibility >= 600 / 15 - 1,
            "{metrics:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_op_jobs_are_received_and_deleted_in_batches() {
        let (queue, _dlq) = queues(30, 3);
        for i in 0..100 {
            queue.push(&i.to_string());
        }
        let handler = scripted(|_| Ok(()), Duration::ZERO);
        let worker = Worker::new(queue.clone(), handler.clone(), config(&queue));
        let metrics = run_until(worker, || queue.messages().is_empty()).await;
        assert_eq!(metrics.succeeded, 100);
        // The first receive takes one message (no duration known yet), then batches of 10.
        assert!(metrics.requests.receive <= 13, "{metrics:?}");
        assert!(metrics.requests.delete <= 12, "{metrics:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_releases_unstarted_messages_and_waits_for_running_ones() {
        let (queue, _dlq) = queues(30, 3);
        // Quick jobs first, so the worker learns it may prefetch.
        for _ in 0..5 {
            queue.push("quick");
        }
        let handler = Arc::new(Scripted {
            calls: Mutex::new(Vec::new()),
            answer: |_| Ok(()),
            takes: Duration::ZERO,
        });
        let handler = SlowFor(handler, "slow", Duration::from_secs(5));
        let calls = handler.0.clone();
        let worker = Worker::new(
            queue.clone(),
            handler,
            Config {
                drain_timeout: Duration::from_secs(60),
                ..config(&queue)
            },
        );
        let metrics = worker.metrics();
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(worker.run(shutdown.clone()));
        while !queue.messages().is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        queue.push("slow");
        for _ in 0..4 {
            queue.push("waiting");
        }
        while metrics.snapshot().received < 10 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stopping = Instant::now();
        shutdown.cancel();
        let metrics = run.await.unwrap().unwrap();
        assert!(stopping.elapsed() < Duration::from_secs(6));
        let ran = calls
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.0 != "quick")
            .count();
        assert_eq!(ran, 1, "only the slow job ran");
        let left = queue.messages();
        assert_eq!(left.len(), 4);
        assert!(
            left.iter().all(|m| m.visible),
            "released messages are visible at once"
        );
        assert_eq!(metrics.succeeded, 6);
        assert_eq!(metrics.released, 4);
    }

    /// Takes `2` for bodies equal to `1`, no time otherwise.
    struct SlowFor(Arc<Scripted>, &'static str, Duration);

    impl Handler for SlowFor {
        async fn handle(&self, delivery: Delivery, ctx: JobContext) -> Result<(), HandlerError> {
            if delivery.body == self.1 {
                tokio::time::sleep(self.2).await;
            }
            self.0.handle(delivery, ctx).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn handlers_still_running_at_the_drain_deadline_are_released() {
        let (queue, _dlq) = queues(30, 3);
        queue.push("endless");
        let handler = scripted(|_| Ok(()), Duration::from_secs(3600));
        let worker = Worker::new(
            queue.clone(),
            handler.clone(),
            Config {
                drain_timeout: Duration::from_secs(2),
                ..config(&queue)
            },
        );
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(worker.run(shutdown.clone()));
        while handler.calls.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stopping = Instant::now();
        shutdown.cancel();
        let metrics = run.await.unwrap().unwrap();
        assert!(stopping.elapsed() < Duration::from_secs(3));
        assert!(queue.messages()[0].visible);
        assert_eq!(metrics.released, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn completed_keys_are_acknowledged_without_running() {
        struct Keyed(Arc<Scripted>);
        impl Handler for Keyed {
            async fn handle(
                &self,
                delivery: Delivery,
                ctx: JobContext,
            ) -> Result<(), HandlerError> {
                self.0.handle(delivery, ctx).await
            }
            fn idempotency_key(&self, delivery: &Delivery) -> Option<IdempotencyKey> {
                Some(IdempotencyKey::new(delivery.body.clone()))
            }
        }
        let (queue, _dlq) = queues(30, 3);
        queue.push("job-1");
        queue.push("job-1");
        queue.push("job-2");
        let handler = scripted(|_| Ok(()), Duration::from_millis(10));
        let worker = Worker::new(queue.clone(), Keyed(handler.clone()), config(&queue))
            .with_store(crate::idempotency::MemoryStore::new());
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(worker.run(shutdown.clone()));
        while !queue.messages().is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        shutdown.cancel();
        let metrics = run.await.unwrap().unwrap();
        let bodies: Vec<String> = handler
            .calls
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.0.clone())
            .collect();
        assert_eq!(bodies, ["job-1", "job-2"]);
        assert_eq!(metrics.duplicates, 1);
    }
}

/// Stale attempts, lost leases and the drain's release, on the in-memory twins.
#[cfg(test)]
mod lease_tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU8, Ordering};

    use super::*;
    use crate::config::RetryPolicy;
    use crate::idempotency::MemoryStore;
    use crate::memory::MemoryQueue;
    use crate::queue::{EntryFailure, QueueAttributes, ReceiptHandle};

    /// What a job did: its body, whether it saw itself abandoned, and whether the
    /// runtime said the lease was lost.
    #[derive(Debug, Clone, PartialEq)]
    struct Ran {
        body: String,
        abandoned: bool,
        lease_lost: bool,
    }

    /// Keys `<key>@<sequence>` bodies by key, attempt and sequence. On its first delivery
    /// a job runs until it is abandoned (at most an hour); later deliveries finish at once.
    #[derive(Clone, Default)]
    struct Attempts(Arc<Mutex<Vec<Ran>>>);

    impl Attempts {
        fn ran(&self) -> Vec<Ran> {
            self.0.lock().unwrap().clone()
        }
    }

    impl Handler for Attempts {
        async fn handle(&self, delivery: Delivery, ctx: JobContext) -> Result<(), HandlerError> {
            let mut abandoned = false;
            if delivery.receive_count == 1 {
                tokio::select! {
                    _ = ctx.abandoned().cancelled() => abandoned = true,
                    _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                }
            }
            self.0.lock().unwrap().push(Ran {
                body: delivery.body,
                abandoned,
                lease_lost: ctx.lease_lost(),
            });
            Ok(())
        }

        fn idempotency_key(&self, delivery: &Delivery) -> Option<IdempotencyKey> {
            let (key, sequence) = delivery.body.split_once('@')?;
            Some(IdempotencyKey::with_attempt(key, sequence).ordered(sequence.parse().ok()?))
        }
    }

    /// Like `Attempts`, but a job on its first delivery runs `takes` and is not cancelled.
    struct Takes(Attempts, Duration);

    impl Handler for Takes {
        async fn handle(&self, delivery: Delivery, ctx: JobContext) -> Result<(), HandlerError> {
            tokio::time::sleep(self.1).await;
            self.0.0.lock().unwrap().push(Ran {
                body: delivery.body,
                abandoned: ctx.abandoned().is_cancelled(),
                lease_lost: ctx.lease_lost(),
            });
            Ok(())
        }

        fn idempotency_key(&self, delivery: &Delivery) -> Option<IdempotencyKey> {
            self.0.idempotency_key(delivery)
        }
    }

    const HEALTHY: u8 = 0;
    /// Every extension entry fails with `ReceiptHandleIsInvalid`.
    const REFUSE_ENTRIES: u8 = 1;
    /// Every `ChangeMessageVisibilityBatch` call fails as a whole.
    const FAIL_CALLS: u8 = 2;

    /// A memory queue whose visibility changes can be made to fail.
    struct Faulty {
        inner: Arc<MemoryQueue>,
        mode: Arc<AtomicU8>,
    }

    impl Queue for Faulty {
        fn url(&self) -> &QueueUrl {
            self.inner.url()
        }

        async fn attributes(&self) -> Result<QueueAttributes, QueueError> {
            self.inner.attributes().await
        }

        async fn receive(
            &self,
            max: usize,
            wait: Duration,
            visibility: Duration,
        ) -> Result<Vec<ReceivedMessage>, QueueError> {
            self.inner.receive(max, wait, visibility).await
        }

        async fn delete_batch(
            &self,
            handles: &[ReceiptHandle],
        ) -> Result<Vec<EntryFailure>, QueueError> {
            self.inner.delete_batch(handles).await
        }

        async fn change_visibility_batch(
            &self,
            entries: &[(ReceiptHandle, Duration)],
        ) -> Result<Vec<EntryFailure>, QueueError> {
            match self.mode.load(Ordering::Relaxed) {
                REFUSE_ENTRIES => Ok((0..entries.len())
                    .map(|index| EntryFailure {
                        index,
                        code: "ReceiptHandleIsInvalid".to_string(),
                        message: "refused by the test".to_string(),
                    })
                    .collect()),
                FAIL_CALLS => Err(QueueError {
                    api: "ChangeMessageVisibilityBatch",
                    queue: self.inner.url().to_string(),
                    code: "ServiceUnavailable".to_string(),
                    message: "failed by the test".to_string(),
                }),
                _ => self.inner.change_visibility_batch(entries).await,
            }
        }

        async fn send(
            &self,
            to: &QueueUrl,
            body: &str,
            attributes: &[(String, String)],
        ) -> Result<(), QueueError> {
            self.inner.send(to, body, attributes).await
        }
    }

    fn queue() -> Arc<MemoryQueue> {
        let dlq = Arc::new(MemoryQueue::new("dlq", Duration::from_secs(30)));
        Arc::new(MemoryQueue::new("q", Duration::from_secs(30)).with_dead_letter(dlq, 5))
    }

    fn config(queue: &MemoryQueue) -> Config {
        Config {
            metrics_log: None,
            concurrency: 2,
            drain_timeout: Duration::from_secs(2),
            retry: RetryPolicy {
                base_delay: Duration::from_secs(1),
                max_delay: Duration::from_secs(10),
                jitter: false,
            },
            ..Config::new(queue.url().clone(), "test-worker")
        }
    }

    /// Waits (on virtual time, at most an hour) until `done` holds.
    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(3600);
        while !done() {
            assert!(Instant::now() < deadline, "{what}: not within an hour");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_older_attempt_delivered_late_is_acknowledged_without_displacing_the_newer_one() {
        let queue = queue();
        let store = Arc::new(MemoryStore::new());
        let jobs = Attempts::default();
        let worker = Worker::new(
            queue.clone(),
            Takes(jobs.clone(), Duration::from_secs(100)),
            config(&queue),
        )
        .with_store(store.clone());
        let metrics = worker.metrics();
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(worker.run(shutdown.clone()));

        queue.push("job-1@2");
        until("the newer attempt holds the key", || {
            store.owner("job-1").is_some()
        })
        .await;
        // The older attempt's message arrives while the newer one runs.
        queue.push("job-1@1");
        until("both settled", || queue.messages().is_empty()).await;
        shutdown.cancel();
        run.await.unwrap().unwrap();

        let ran: Vec<String> = jobs.ran().into_iter().map(|r| r.body).collect();
        assert_eq!(ran, ["job-1@2"], "the older attempt never ran");
        assert!(store.is_completed("job-1"));
        assert_eq!(store.attempt("job-1").as_deref(), Some("2"));
        let metrics = metrics.snapshot();
        assert_eq!(metrics.superseded, 1, "{metrics:?}");
        assert_eq!(metrics.succeeded, 1, "{metrics:?}");
        assert_eq!(metrics.lease_lost, 0, "{metrics:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_drain_deadline_release_gives_the_idempotency_claim_back() {
        let queue = queue();
        let store = Arc::new(MemoryStore::new());
        let jobs = Attempts::default();
        let worker = Worker::new(
            queue.clone(),
            Takes(jobs.clone(), Duration::from_secs(3600)),
            config(&queue),
        )
        .with_store(store.clone());
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(worker.run(shutdown.clone()));
        queue.push("job-1@1");
        until("the job holds its key", || store.owner("job-1").is_some()).await;
        shutdown.cancel();
        let metrics = run.await.unwrap().unwrap();

        assert_eq!(metrics.released, 1, "{metrics:?}");
        assert!(queue.messages()[0].visible, "the message is released");
        assert_eq!(
            store.owner("job-1"),
            None,
            "the claim is released with the message, so the next consumer takes it at once"
        );
        let next = IdempotencyKey::with_attempt("job-1", "1").ordered(1);
        assert_eq!(
            store
                .acquire(&next, "next-worker", Duration::from_secs(30))
                .await,
            Ok(Claim::Acquired)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_newer_attempt_taking_the_lease_over_cancels_the_running_job() {
        let queue = queue();
        let store = Arc::new(MemoryStore::new());
        let jobs = Attempts::default();
        let worker =
            Worker::new(queue.clone(), jobs.clone(), config(&queue)).with_store(store.clone());
        let metrics = worker.metrics();
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(worker.run(shutdown.clone()));
        queue.push("job-1@1");
        until("the job holds its key", || store.owner("job-1").is_some()).await;

        // Another consumer, working on a newer attempt, takes the key over.
        let newer = IdempotencyKey::with_attempt("job-1", "2").ordered(2);
        assert_eq!(
            store
                .acquire(&newer, "other-worker", Duration::from_secs(600))
                .await,
            Ok(Claim::Acquired)
        );
        until("the job is stopped", || !jobs.ran().is_empty()).await;
        // The message, released at once, comes back and is acknowledged as superseded.
        until("the old message is settled", || queue.messages().is_empty()).await;
        shutdown.cancel();
        run.await.unwrap().unwrap();

        assert_eq!(
            jobs.ran(),
            [Ran {
                body: "job-1@1".to_string(),
                abandoned: true,
                lease_lost: true
            }]
        );
        assert_eq!(store.owner("job-1").as_deref(), Some("other-worker"));
        let metrics = metrics.snapshot();
        assert_eq!(metrics.lease_lost, 1, "{metrics:?}");
        assert_eq!(metrics.succeeded, 0, "nothing settled for it: {metrics:?}");
        assert_eq!(metrics.superseded, 1, "{metrics:?}");
    }

    /// Runs one job on a queue whose extensions fail as `mode` says; returns what ran and
    /// the counters.
    async fn job_with_failing_extensions(mode: u8) -> (Vec<Ran>, MetricsSnapshot, Vec<String>) {
        let inner = queue();
        let store = Arc::new(MemoryStore::new());
        let faults = Arc::new(AtomicU8::new(HEALTHY));
        let queue = Faulty {
            inner: inner.clone(),
            mode: faults.clone(),
        };
        let jobs = Attempts::default();
        let worker = Worker::new(queue, jobs.clone(), config(&inner)).with_store(store.clone());
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(worker.run(shutdown.clone()));
        inner.push("job-1@1");
        until("the job holds its key", || store.owner("job-1").is_some()).await;
        faults.store(mode, Ordering::Relaxed);
        until("the job is stopped", || !jobs.ran().is_empty()).await;
        let claim_after_loss = store.owner("job-1");
        faults.store(HEALTHY, Ordering::Relaxed);
        // The message comes back and runs again, to completion.
        until("the job is settled", || inner.messages().is_empty()).await;
        shutdown.cancel();
        let metrics = run.await.unwrap().unwrap();
        (jobs.ran(), metrics, claim_after_loss.into_iter().collect())
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_lease_extension_cancels_the_running_job_and_releases_its_claim() {
        let (ran, metrics, claim_after_loss) = job_with_failing_extensions(REFUSE_ENTRIES).await;
        assert_eq!(
            ran[0],
            Ran {
                body: "job-1@1".to_string(),
                abandoned: true,
                lease_lost: true
            }
        );
        assert!(claim_after_loss.is_empty(), "{claim_after_loss:?}");
        assert_eq!(ran.len(), 2, "run again after the loss: {ran:?}");
        assert_eq!(metrics.lease_lost, 1, "{metrics:?}");
        assert_eq!(metrics.succeeded, 1, "only the second run: {metrics:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_that_lapses_because_extensions_fail_cancels_the_running_job() {
        let (ran, metrics, claim_after_loss) = job_with_failing_extensions(FAIL_CALLS).await;
        assert_eq!(
            ran[0],
            Ran {
                body: "job-1@1".to_string(),
                abandoned: true,
                lease_lost: true
            }
        );
        assert!(claim_after_loss.is_empty(), "{claim_after_loss:?}");
        assert_eq!(metrics.lease_lost, 1, "{metrics:?}");
        assert_eq!(metrics.succeeded, 1, "only the second run: {metrics:?}");
    }
}
