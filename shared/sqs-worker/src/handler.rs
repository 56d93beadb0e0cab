//! What a worker implements: a [`Handler`] for one message at a time, the [`Delivery`] it
//! gets, the [`JobContext`] it may consult, and the [`HandlerError`] that says what to do
//! with a message that failed.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

/// One message handed to a handler.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub message_id: String,
    pub body: String,
    /// 1 on the first delivery.
    pub receive_count: u32,
    pub sent_at: Option<SystemTime>,
    /// The message's string attributes.
    pub attributes: BTreeMap<String, String>,
}

/// Why a handler did not finish a message, and so what happens to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// A later attempt can succeed (a dependency was down, the worker is shutting down):
    /// the message becomes visible again after a backoff, and the queue's redrive policy
    /// dead-letters it after `maxReceiveCount` attempts.
    #[error("retryable: {reason}")]
    Retryable { reason: String },
    /// No attempt can succeed (the message is malformed): the message goes to the
    /// dead-letter queue at once, unchanged, with `name` and `reason` as attributes.
    #[error("{name}: {reason}")]
    Fatal { name: String, reason: String },
}

impl HandlerError {
    pub fn retryable(reason: impl Into<String>) -> Self {
        HandlerError::Retryable {
            reason: reason.into(),
        }
    }

    /// `name` is a stable error name such as `Message.Invalid`.
    pub fn fatal(name: impl Into<String>, reason: impl Into<String>) -> Self {
        HandlerError::Fatal {
            name: name.into(),
            reason: reason.into(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, HandlerError::Retryable { .. })
    }
}

/// Identifies the work a message asks for, so that the work runs once however often the
/// message is delivered.
///
/// Records are kept per `key`. `attempt` distinguishes deliberate new attempts of the same
/// work, which must run even when an earlier attempt completed: Step Functions sends a new
/// message, with a new task token, each time it retries a state. A message with the same
/// `attempt` as a completed record is acknowledged without running.
///
/// `sequence` orders the attempts of one key: a message of another `attempt` supersedes the
/// record only when its `sequence` is at least the record's. An older attempt (a lower
/// `sequence`), redelivered late or still running somewhere, never displaces a newer one:
/// it is acknowledged without running ([`crate::idempotency::Claim::Superseded`]). Keys
/// whose attempts all have the same `sequence` (0 unless [`IdempotencyKey::ordered`]) are
/// not ordered: any other attempt supersedes the record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    pub key: String,
    pub attempt: String,
    /// Higher is newer; see the type's documentation.
    pub sequence: u64,
}

impl IdempotencyKey {
    /// A key whose attempts are all the same: completed once, never run again.
    pub fn new(key: impl Into<String>) -> Self {
        IdempotencyKey {
            key: key.into(),
            attempt: String::new(),
            sequence: 0,
        }
    }

    pub fn with_attempt(key: impl Into<String>, attempt: impl Into<String>) -> Self {
        IdempotencyKey {
            key: key.into(),
            attempt: attempt.into(),
            sequence: 0,
        }
    }

    /// The same key with `sequence` ordering its attempts (higher is newer).
    pub fn ordered(self, sequence: u64) -> Self {
        IdempotencyKey { sequence, ..self }
    }
}

/// A queue consumer's business logic.
///
/// `handle` runs once per delivery (at most `Config::concurrency` at a time). `Ok` deletes
/// the message; errors say whether to retry it (see [`HandlerError`]). The runtime keeps
/// the message leased while `handle` runs, however long that is.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        delivery: Delivery,
        ctx: JobContext,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// The message's idempotency key, when the runtime is configured with an idempotency
    /// table. `None` (the default) runs every delivery.
    fn idempotency_key(&self, delivery: &Delivery) -> Option<IdempotencyKey> {
        let _ = delivery;
        None
    }
}

/// What a running handler can ask of the runtime.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub(crate) inner: Arc<JobShared>,
}

#[derive(Debug)]
pub(crate) struct JobShared {
    pub(crate) receive_count: u32,
    pub(crate) message_id: String,
    pub(crate) worker_id: String,
    /// Cancelled when the worker starts shutting down.
    pub(crate) shutdown: CancellationToken,
    /// Cancelled when the drain deadline passes or the lease is lost: the message is
    /// released (or already someone else's) and the result of the handler is ignored.
    pub(crate) abandon: CancellationToken,
    /// Set (before `abandon` is cancelled) when the lease was lost: an extension failed for
    /// good, the lease lapsed, or another consumer took the idempotency lease over.
    pub(crate) lease_lost: AtomicBool,
    pub(crate) heartbeat_paused: AtomicBool,
    /// The idempotency key and owner, once this job holds the key's lease; the lease
    /// keeper renews that lease with the message's.
    pub(crate) claim: OnceLock<(IdempotencyKey, String)>,
}

impl JobContext {
    /// A context outside any runtime, for calling a handler directly in tests: never
    /// cancelled, with this receive count.
    pub fn standalone(receive_count: u32) -> JobContext {
        JobContext {
            inner: Arc::new(JobShared {
                receive_count,
                message_id: "standalone".to_string(),
                worker_id: "standalone".to_string(),
                shutdown: CancellationToken::new(),
                abandon: CancellationToken::new(),
                lease_lost: AtomicBool::new(false),
                heartbeat_paused: AtomicBool::new(false),
                claim: OnceLock::new(),
            }),
        }
    }

    /// `ApproximateReceiveCount`: 1 on the first delivery.
    pub fn receive_count(&self) -> u32 {
        self.inner.receive_count
    }

    pub fn message_id(&self) -> &str {
        &self.inner.message_id
    }

    pub fn worker_id(&self) -> &str {
        &self.inner.worker_id
    }

    /// Cancelled when the worker starts shutting down. A handler should still finish its
    /// job: the runtime waits for it until the drain deadline.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// Cancelled when the handler must stop, and whatever it returns afterwards is
    /// ignored: the drain deadline passed and the runtime made the message visible again
    /// for another worker, or the message's lease was lost ([`JobContext::lease_lost`]) and
    /// another consumer (or a newer attempt) owns the work now. A handler must not publish
    /// or answer anything for the job once this is cancelled.
    pub fn abandoned(&self) -> &CancellationToken {
        &self.inner.abandon
    }

    /// Whether the job was abandoned because its lease was lost: an extension of the
    /// message's visibility failed for good or came too late, or another consumer took the
    /// idempotency lease over.
    pub fn lease_lost(&self) -> bool {
        self.inner.lease_lost.load(Ordering::Acquire)
    }

    /// Stops extending the message's lease (and the idempotency lease): the message
    /// becomes visible again when its current lease lapses, as if this worker were stuck.
    /// Used by fault-injection models.
    pub fn pause_heartbeat(&self) {
        self.inner.heartbeat_paused.store(true, Ordering::Relaxed);
    }

    pub fn resume_heartbeat(&self) {
        self.inner.heartbeat_paused.store(false, Ordering::Relaxed);
    }

    pub fn heartbeat_paused(&self) -> bool {
        self.inner.heartbeat_paused.load(Ordering::Relaxed)
    }
}
