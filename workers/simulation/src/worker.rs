//! The queue handler: one `SimulationTask` in, a model run, the result in S3, the task
//! token answered.
//!
//! For each message:
//!
//! 1. Parse the body as a [`SimulationTask`]. An invalid body can never succeed: it goes
//!    to the dead-letter queue with the contract error (which names the field); if the
//!    body still carries a task token, the execution is failed at once rather than left
//!    to time out.
//! 2. Look the model up and validate the parameters; failures are answered with
//!    `SendTaskFailure` (`Model.UnknownModel`, `Model.InvalidParams`) and acknowledged.
//! 3. Check that the task token is live with one `SendTaskHeartbeat`: a closed token
//!    (`TaskTimedOut`, `TaskDoesNotExist`, `InvalidToken`) means nobody waits for this
//!    attempt, and the message is acknowledged without running anything or publishing
//!    `JobStarted`.
//! 4. Publish `JobStarted`, then run the model on a blocking thread while sending
//!    `SendTaskHeartbeat` every [`WorkerConfig::heartbeat_interval`] and `JobProgress` at
//!    most once per [`WorkerConfig::progress_interval`]. A model that asks for it
//!    (`spin` in `hang` mode) gets neither heartbeats nor lease extensions. When the
//!    runtime abandons the job (the drain deadline passed or the lease was lost: another
//!    consumer or a newer attempt owns it now) the model is stopped and nothing more is
//!    published or answered for it.
//! 5. Store the full result at `s3://<bucket>/results/<jobId>.json` (the same key on every
//!    attempt, so storing is idempotent) and answer `SendTaskSuccess` with a
//!    [`TaskOutput`]; a model error is answered with `SendTaskFailure` and its name, and
//!    the state machine decides about retries.
//!
//! When the execution is gone (`TaskTimedOut`, `TaskDoesNotExist`, `InvalidToken`) the
//! message is acknowledged: nobody waits for it any more. Transient AWS errors are
//! retried by the runtime with backoff. Each Step Functions attempt carries a new task
//! token, so the idempotency key is the job id with the token's fingerprint as its attempt:
//! a redelivered message of a completed attempt is acknowledged without running, a new
//! attempt runs. Attempts are ordered by the message's `SentTimestamp` (the state machine
//! sends each attempt's message when it starts the attempt), so an older attempt's message
//! delivered late never displaces a newer attempt's record ([`attempt_sequence`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_sfn::error::{DisplayErrorContext, ProvideErrorMetadata};
use backon::{ExponentialBuilder, Retryable};
use contracts::jobs::{JobProgress, JobStarted, ResultLocation};
use contracts::tasks::{SimulationTask, TaskOutput, errors};
use contracts::{Envelope, JobEvent};
use serde_json::Value;
use sqs_worker::{Delivery, Handler, HandlerError, IdempotencyKey, JobContext};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::WorkerConfig;
use crate::models::{CancelFlag, ModelError, ModelOutput, Registry};

/// The `fleet.error` of a message whose body is not a valid `SimulationTask`.
pub const INVALID_TASK: &str = "Task.Invalid";
/// The bus `producer` of the worker's events.
pub const PRODUCER: &str = "simulation";
/// Step Functions refuses a `cause` longer than this.
const MAX_CAUSE_CHARS: usize = 32_768;

/// Handles `SimulationTask` messages.
pub struct SimulationHandler {
    registry: Arc<Registry>,
    sfn: aws_sdk_sfn::Client,
    s3: aws_sdk_s3::Client,
    bus: bus::Publisher,
    bucket: String,
    worker_id: String,
    heartbeat_interval: Duration,
    progress_interval: Duration,
}

impl std::fmt::Debug for SimulationHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulationHandler")
            .field("registry", &self.registry)
            .field("bucket", &self.bucket)
            .field("worker_id", &self.worker_id)
            .finish()
    }
}

impl SimulationHandler {
    pub fn new(config: &WorkerConfig, registry: Registry) -> Self {
        let sdk = &config.sdk;
        // An endpoint override means an emulator, which serves buckets by path, not by
        // virtual host.
        let s3_config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(sdk.endpoint_url().is_some())
            .build();
        SimulationHandler {
            registry: Arc::new(registry),
            sfn: aws_sdk_sfn::Client::new(sdk),
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            bus: bus::Publisher::from_sdk(sdk, &config.bus),
            bucket: config.bucket.clone(),
            worker_id: config.worker_id.clone(),
            heartbeat_interval: config.heartbeat_interval,
            progress_interval: config.progress_interval,
        }
    }

    /// The S3 key of a job's result.
    pub fn result_key(job_id: &contracts::JobId) -> String {
        format!("results/{job_id}.json")
    }

    async fn run_task(&self, task: SimulationTask, ctx: JobContext) -> Result<(), HandlerError> {
        let params = Value::Object(task.params.clone());
        let checked = self.registry.get(&task.model).and_then(|model| {
            model
                .validate(&params)
                .map(|()| model.suppresses_heartbeat(&params))
        });
        let suppress_heartbeat = match checked {
            Ok(suppress) => suppress,
            Err(e) => return self.answer_failure(&task, &e).await,
        };
        if suppress_heartbeat {
            tracing::warn!("model asked for no heartbeats: this job will look stuck");
            ctx.pause_heartbeat();
        }
        // Nothing is started or published for an attempt nobody waits for any more (an
        // older attempt delivered late, an execution that timed out or was stopped).
        if let Some(done) = self.check_token(&task).await {
            return done;
        }
        if ctx.abandoned().is_cancelled() {
            return Err(HandlerError::retryable(
                "the job was abandoned before it started",
            ));
        }
        tracing::info!(suppress_heartbeat, "job started");
        self.publish(JobStarted {
            job_id: task.job_id.clone(),
            worker: self.worker_id.clone(),
            handout: task.handout,
            attempt: ctx.receive_count(),
        })
        .await;

        // The model stops when the drain deadline passes or the execution is gone; the
        // guard also stops it if this future is dropped.
        let cancel = CancelFlag::new();
        let _stop_model = CancelOnDrop(cancel.clone());
        let gone = Arc::new(AtomicBool::new(false));
        let helpers = CancellationToken::new();
        let _stop_helpers = helpers.clone().drop_guard();
        let (progress_tx, progress_rx) = watch::channel::<Option<(f64, Option<String>)>>(None);
        let heartbeats = (!suppress_heartbeat).then(|| {
            tokio::spawn(
                heartbeat(
                    self.sfn.clone(),
                    task.task_token.clone(),
                    self.heartbeat_interval,
                    cancel.clone(),
                    gone.clone(),
                    helpers.clone(),
                )
                .in_current_span(),
            )
        });
        // An abandoned job stops its model, its heartbeats and its progress at once:
        // someone else owns the work now.
        let watcher = tokio::spawn({
            let cancel = cancel.clone();
            let abandoned = ctx.abandoned().clone();
            let helpers = helpers.clone();
            async move {
                tokio::select! {
                    _ = abandoned.cancelled() => {
                        cancel.cancel();
                        helpers.cancel();
                    }
                    _ = helpers.cancelled() => {}
                }
            }
        });
        let publisher = tokio::spawn(
            publish_progress(
                self.bus.clone(),
                task.job_id.clone(),
                progress_rx,
                self.progress_interval,
                helpers.clone(),
            )
            .in_current_span(),
        );

        let registry = self.registry.clone();
        let model_name = task.model.clone();
        let model_cancel = cancel.clone();
        let run = tokio::task::spawn_blocking(move || {
            let progress = move |fraction: f64, message: Option<&str>| {
                progress_tx.send_replace(Some((
                    fraction.clamp(0.0, 1.0),
                    message.map(str::to_string),
                )));
            };
            registry
                .get(&model_name)
                .and_then(|model| model.run(&params, &progress, &model_cancel))
        });
        let outcome = match run.await {
            Ok(outcome) => outcome,
            Err(e) => Err(ModelError::Failed(format!("the model panicked: {e}"))),
        };
        helpers.cancel();
        let last_published = publisher.await.unwrap_or(None);
        if let Some(heartbeats) = heartbeats {
            let _ = heartbeats.await;
        }
        let _ = watcher.await;

        if ctx.abandoned().is_cancelled() {
            tracing::warn!(
                lease_lost = ctx.lease_lost(),
                "the job was abandoned; nothing is published or answered for it"
            );
            return Err(HandlerError::retryable(
                "the job was abandoned: its lease was lost or the worker is stopping",
            ));
        }
        if gone.load(Ordering::Relaxed) {
            tracing::warn!("the execution no longer waits for this job; acknowledging");
            return Ok(());
        }
        match outcome {
            Ok(output) => {
                if last_published != Some(1.0) {
                    self.publish(JobProgress {
                        job_id: task.job_id.clone(),
                        progress: 1.0,
                        message: None,
                    })
                    .await;
                }
                self.answer_success(&task, output).await
            }
            Err(ModelError::Cancelled) => Err(HandlerError::retryable(
                "the worker is shutting down; another worker will run the job",
            )),
            Err(e) => self.answer_failure(&task, &e).await,
        }
    }

    /// Sends one `SendTaskHeartbeat` to learn whether anybody still waits on the task's
    /// token. `None`: the token is live, run the job. `Some(Ok)`: the token is closed,
    /// acknowledge the message without running. `Some(Err)`: Step Functions could not be
    /// asked; retry the message later.
    async fn check_token(&self, task: &SimulationTask) -> Option<Result<(), HandlerError>> {
        let result = (|| async {
            self.sfn
                .send_task_heartbeat()
                .task_token(&task.task_token)
                .send()
                .await
        })
        .retry(sfn_backoff())
        .when(|e| !is_gone(e.code()))
        .await;
        match result {
            Ok(_) => None,
            Err(e) if is_gone(e.code()) => {
                tracing::warn!(error = %DisplayErrorContext(&e), "the task token is closed: nobody waits for this attempt; acknowledging without running");
                Some(Ok(()))
            }
            Err(e) => Some(Err(HandlerError::retryable(format!(
                "could not check the task token with SendTaskHeartbeat: {}",
                DisplayErrorContext(&e)
            )))),
        }
    }

    async fn answer_success(
        &self,
        task: &SimulationTask,
        output: ModelOutput,
    ) -> Result<(), HandlerError> {
        let location = self.store_result(task, &output.result).await?;
        let task_output = TaskOutput {
            summary: output.summary,
            result: location.clone(),
            worker: self.worker_id.clone(),
        };
        let json = serde_json::to_string(&task_output).map_err(|e| {
            HandlerError::retryable(format!("could not serialize the task output: {e}"))
        })?;
        let result = (|| async {
            self.sfn
                .send_task_success()
                .task_token(&task.task_token)
                .output(&json)
                .send()
                .await
        })
        .retry(sfn_backoff())
        .when(|e| !is_gone(e.code()))
        .await;
        match result {
            Ok(_) => {
                tracing::info!(result = %location.uri(), bytes = location.bytes, "job succeeded");
                Ok(())
            }
            Err(e) if is_gone(e.code()) => {
                tracing::warn!(error = %DisplayErrorContext(&e), "the execution no longer waits for this result; acknowledging");
                Ok(())
            }
            Err(e) => Err(HandlerError::retryable(format!(
                "SendTaskSuccess failed: {}",
                DisplayErrorContext(&e)
            ))),
        }
    }

    async fn answer_failure(
        &self,
        task: &SimulationTask,
        error: &ModelError,
    ) -> Result<(), HandlerError> {
        let cause: String = error.to_string().chars().take(MAX_CAUSE_CHARS).collect();
        tracing::warn!(error = error.error_name(), cause = %cause, "job failed");
        let result = (|| async {
            self.sfn
                .send_task_failure()
                .task_token(&task.task_token)
                .error(error.error_name())
                .cause(&cause)
                .send()
                .await
        })
        .retry(sfn_backoff())
        .when(|e| !is_gone(e.code()))
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_gone(e.code()) => {
                tracing::warn!(error = %DisplayErrorContext(&e), "the execution no longer waits for this job; acknowledging");
                Ok(())
            }
            Err(e) => Err(HandlerError::retryable(format!(
                "SendTaskFailure failed: {}",
                DisplayErrorContext(&e)
            ))),
        }
    }

    /// Stores the full result; the key depends only on the job, so a retry overwrites.
    async fn store_result(
        &self,
        task: &SimulationTask,
        result: &Value,
    ) -> Result<ResultLocation, HandlerError> {
        let body = serde_json::to_vec(result)
            .map_err(|e| HandlerError::retryable(format!("could not serialize the result: {e}")))?;
        let key = Self::result_key(&task.job_id);
        let bytes = body.len() as u64;
        (|| async {
            self.s3
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .content_type("application/json")
                .body(body.clone().into())
                .send()
                .await
        })
        .retry(sfn_backoff())
        .await
        .map_err(|e| {
            HandlerError::retryable(format!(
                "storing the result at s3://{}/{key} failed: {}",
                self.bucket,
                aws_sdk_s3::error::DisplayErrorContext(&e)
            ))
        })?;
        Ok(ResultLocation {
            bucket: self.bucket.clone(),
            key,
            bytes,
        })
    }

    async fn publish(&self, event: impl Into<JobEvent>) {
        let envelope = Envelope::new(event.into(), PRODUCER);
        if let Err(e) = self.bus.publish(&envelope).await {
            // Events are for watchers; the job itself goes on.
            tracing::warn!(error = %e, detail_type = %contracts::Event::detail_type(&envelope.event), "could not publish a job event");
        }
    }

    /// Fails the execution of an invalid task at once, when its body still names a task
    /// token, instead of letting it wait for its heartbeat timeout.
    async fn fail_invalid_task(&self, body: &str, error: &contracts::ContractError) {
        let token = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v.get("taskToken")?.as_str().map(str::to_string))
            .filter(|t| !t.is_empty());
        let Some(token) = token else { return };
        let cause: String = error.to_string().chars().take(MAX_CAUSE_CHARS).collect();
        if let Err(e) = self
            .sfn
            .send_task_failure()
            .task_token(token)
            .error(errors::INVALID_PARAMS)
            .cause(cause)
            .send()
            .await
        {
            tracing::warn!(error = %DisplayErrorContext(&e), "could not fail the execution of an invalid task");
        }
    }
}

impl Handler for SimulationHandler {
    async fn handle(&self, delivery: Delivery, ctx: JobContext) -> Result<(), HandlerError> {
        let task = match SimulationTask::from_body(&delivery.body) {
            Ok(task) => task,
            Err(e) => {
                tracing::error!(message_id = %delivery.message_id, field = %e.field(), error = %e, "invalid simulation task");
                self.fail_invalid_task(&delivery.body, &e).await;
                return Err(HandlerError::fatal(INVALID_TASK, e.to_string()));
            }
        };
        let span = tracing::info_span!("job", job_id = %task.job_id, model = %task.model, attempt = ctx.receive_count(), worker = %self.worker_id);
        self.run_task(task, ctx).instrument(span).await
    }

    fn idempotency_key(&self, delivery: &Delivery) -> Option<IdempotencyKey> {
        let task = SimulationTask::from_body(&delivery.body).ok()?;
        Some(
            IdempotencyKey::with_attempt(task.job_id.to_string(), fingerprint(&task.task_token))
                .ordered(attempt_sequence(delivery)),
        )
    }
}

/// What orders the attempts of one job: the message's `SentTimestamp` in epoch
/// milliseconds (0 when unknown, which orders nothing).
///
/// Step Functions sends a new message, with a new token, when it starts each attempt of
/// the `Run` state, at least `IntervalSeconds` after the previous one failed, so a later
/// attempt's message is always sent later. A redelivery keeps its `SentTimestamp`, so it
/// stays the same attempt. (`SimulationTask` carries no attempt number; once it carries
/// `$$.State.RetryCount`, that orders attempts without relying on clocks.)
pub fn attempt_sequence(delivery: &Delivery) -> u64 {
    delivery
        .sent_at
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

/// Sends `SendTaskHeartbeat` every `interval` until `stop`; when the execution is gone it
/// sets `gone` and cancels the model.
async fn heartbeat(
    sfn: aws_sdk_sfn::Client,
    token: String,
    interval: Duration,
    cancel: CancelFlag,
    gone: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match sfn.send_task_heartbeat().task_token(&token).send().await {
            Ok(_) => tracing::debug!("heartbeat sent"),
            Err(e) if is_gone(e.code()) => {
                tracing::warn!(error = %DisplayErrorContext(&e), "heartbeat refused: the execution no longer waits; stopping the model");
                gone.store(true, Ordering::Relaxed);
                cancel.cancel();
                return;
            }
            // The next tick tries again; the state's HeartbeatSeconds leaves room for it.
            Err(e) => tracing::warn!(error = %DisplayErrorContext(&e), "heartbeat failed"),
        }
    }
}

/// Publishes the latest progress at most once per `interval`; returns the last fraction
/// published.
async fn publish_progress(
    bus: bus::Publisher,
    job_id: contracts::JobId,
    mut progress: watch::Receiver<Option<(f64, Option<String>)>>,
    interval: Duration,
    stop: CancellationToken,
) -> Option<f64> {
    let mut last: Option<f64> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return last,
            changed = progress.changed() => if changed.is_err() { return last },
        }
        let Some((fraction, message)) = progress.borrow_and_update().clone() else {
            continue;
        };
        // A job abandoned while the model reported publishes nothing more.
        if stop.is_cancelled() {
            return last;
        }
        let envelope = Envelope::new(
            JobEvent::from(JobProgress {
                job_id: job_id.clone(),
                progress: fraction,
                message,
            }),
            PRODUCER,
        );
        match bus.publish(&envelope).await {
            Ok(_) => last = Some(fraction),
            Err(e) => tracing::warn!(error = %e, "could not publish progress"),
        }
        tokio::select! {
            _ = stop.cancelled() => return last,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Whether a Step Functions error means nobody waits for this task token any more.
fn is_gone(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("TaskTimedOut" | "TaskDoesNotExist" | "InvalidToken")
    )
}

fn sfn_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(3)
        .with_jitter()
}

/// A stable 64-bit FNV-1a fingerprint of a task token, in hex: tells attempts apart
/// without storing the token itself.
pub fn fingerprint(token: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in token.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Cancels the model's flag when dropped.
struct CancelOnDrop(CancelFlag);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        assert_eq!(fingerprint(""), "cbf29ce484222325");
        assert_eq!(fingerprint("a"), "af63dc4c8601ec8c");
        assert_ne!(fingerprint("token-1"), fingerprint("token-2"));
    }

    #[test]
    fn later_sent_attempts_have_higher_sequences_and_redeliveries_keep_theirs() {
        let delivery = |sent_ms: Option<u64>, receive_count: u32| Delivery {
            message_id: "m".to_string(),
            body: String::new(),
            receive_count,
            sent_at: sent_ms.map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms)),
            attributes: Default::default(),
        };
        let first = attempt_sequence(&delivery(Some(1_700_000_000_000), 1));
        let redelivered = attempt_sequence(&delivery(Some(1_700_000_000_000), 3));
        let retried = attempt_sequence(&delivery(Some(1_700_000_005_000), 1));
        assert_eq!(first, redelivered);
        assert!(retried > first);
        assert_eq!(attempt_sequence(&delivery(None, 1)), 0);
    }

    #[test]
    fn gone_codes() {
        for code in ["TaskTimedOut", "TaskDoesNotExist", "InvalidToken"] {
            assert!(is_gone(Some(code)));
        }
        assert!(!is_gone(Some("ThrottlingException")));
        assert!(!is_gone(None));
    }
}
