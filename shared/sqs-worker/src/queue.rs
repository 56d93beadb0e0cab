//! The port to the queue: the few SQS calls the runtime makes, as a trait. [`SqsQueue`]
//! (the real adapter) and [`MemoryQueue`] (an in-memory twin for unit tests) implement it.
//!
//! [`SqsQueue`]: crate::sqs::SqsQueue
//! [`MemoryQueue`]: crate::memory::MemoryQueue

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, SystemTime};

use crate::config::QueueUrl;

/// A receipt handle: what deletes and visibility changes name a received message by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReceiptHandle(pub String);

/// One message as a receive returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub receipt_handle: ReceiptHandle,
    pub body: String,
    /// `ApproximateReceiveCount`: 1 on the first delivery.
    pub receive_count: u32,
    /// `ApproximateFirstReceiveTimestamp`; the 12-hour visibility ceiling counts from it.
    pub first_received_at: Option<SystemTime>,
    /// `SentTimestamp`.
    pub sent_at: Option<SystemTime>,
    /// The string-valued message attributes.
    pub attributes: BTreeMap<String, String>,
}

/// What the runtime needs to know about its queue at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueAttributes {
    pub visibility_timeout: Duration,
    /// From `RedrivePolicy`, when the queue has one.
    pub redrive: Option<Redrive>,
}

/// The queue's `RedrivePolicy`, with the dead-letter queue's URL resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    pub dead_letter_queue: QueueUrl,
    pub max_receive_count: u32,
}

/// One entry of a batch call that failed while others succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFailure {
    /// The entry's index in the request.
    pub index: usize,
    pub code: String,
    pub message: String,
}

/// A whole call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SQS {api} on {queue} failed: {code}: {message}")]
pub struct QueueError {
    pub api: &'static str,
    pub queue: String,
    pub code: String,
    pub message: String,
}

/// The SQS calls the runtime makes on one queue (and, to dead-letter, on its DLQ).
///
/// Batch calls take at most [`crate::policy::MAX_BATCH`] entries and report the entries
/// that failed; `Err` means the whole call failed.
pub trait Queue: Send + Sync + 'static {
    fn url(&self) -> &QueueUrl;

    /// `GetQueueAttributes` (and, for a redrive policy, the DLQ's URL).
    fn attributes(&self) -> impl Future<Output = Result<QueueAttributes, QueueError>> + Send;

    /// `ReceiveMessage` of up to `max` messages, long-polling up to `wait`, each leased for
    /// `visibility`.
    fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> impl Future<Output = Result<Vec<ReceivedMessage>, QueueError>> + Send;

    /// `DeleteMessageBatch`.
    fn delete_batch(
        &self,
        handles: &[ReceiptHandle],
    ) -> impl Future<Output = Result<Vec<EntryFailure>, QueueError>> + Send;

    /// `ChangeMessageVisibilityBatch`: each message becomes visible after its duration.
    fn change_visibility_batch(
        &self,
        entries: &[(ReceiptHandle, Duration)],
    ) -> impl Future<Output = Result<Vec<EntryFailure>, QueueError>> + Send;

    /// `SendMessage` of `body` with string attributes to the queue at `to`.
    fn send(
        &self,
        to: &QueueUrl,
        body: &str,
        attributes: &[(String, String)],
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// A shared queue is a queue: tests keep an `Arc` to inspect the twin the worker uses.
impl<Q: Queue> Queue for std::sync::Arc<Q> {
    fn url(&self) -> &QueueUrl {
        (**self).url()
    }

    fn attributes(&self) -> impl Future<Output = Result<QueueAttributes, QueueError>> + Send {
        (**self).attributes()
    }

    fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> impl Future<Output = Result<Vec<ReceivedMessage>, QueueError>> + Send {
        (**self).receive(max, wait, visibility)
    }

    fn delete_batch(
        &self,
        handles: &[ReceiptHandle],
    ) -> impl Future<Output = Result<Vec<EntryFailure>, QueueError>> + Send {
        (**self).delete_batch(handles)
    }

    fn change_visibility_batch(
        &self,
        entries: &[(ReceiptHandle, Duration)],
    ) -> impl Future<Output = Result<Vec<EntryFailure>, QueueError>> + Send {
        (**self).change_visibility_batch(entries)
    }

    fn send(
        &self,
        to: &QueueUrl,
        body: &str,
        attributes: &[(String, String)],
    ) -> impl Future<Output = Result<(), QueueError>> + Send {
        (**self).send(to, body, attributes)
    }
}
