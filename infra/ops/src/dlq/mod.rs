//! The stage's dead-letter queues (`fleet dlq`), what sits in them and why, and replaying
//! them safely.
//!
//! Three kinds of DLQ exist: the DLQ of an SQS queue (its `RedrivePolicy` moves a message
//! there after `maxReceiveCount` receives, or a worker sends it there at once with its
//! `fleet.*` reason attributes), the failures queue (Lambda publishes an asynchronous
//! invocation that failed every retry to the SNS failures topic, which delivers the SNS
//! envelope here) and the DLQ of an EventBridge rule target (discovered from the rules'
//! `DeadLetterConfig`).
//!
//! Looking never consumes: messages are received with a short visibility timeout and made
//! visible again (`ChangeMessageVisibility 0`) before the operation returns; a crash leaves
//! them invisible for at most that timeout. Redriving sends the copy before deleting the
//! original, so a crash midway duplicates at most one message and loses none.

mod decode;
mod inspect;
mod queues;
mod redrive;
mod sqs;

use serde::Serialize;
use time::OffsetDateTime;

pub use decode::{Body, DeadMessage, Reason, decode_body, describe, redact_tokens};
pub use inspect::{ExportedMessage, export, purge, show};
pub use queues::{dead_letter_queues, list, resolve};
pub use redrive::{
    Filter, Progress, RedriveFailure, RedriveOptions, RedriveReport, functions_for_event, redrive,
};
pub use sqs::{depth, peek, queue_url};

/// What feeds a dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DlqKind {
    /// The DLQ of an SQS queue.
    SqsRedrive,
    /// Lambda's asynchronous failures, delivered through the SNS failures topic.
    LambdaFailures,
    /// The DLQ of an EventBridge rule target.
    EventbridgeTarget,
}

impl DlqKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DlqKind::SqsRedrive => "sqs-redrive",
            DlqKind::LambdaFailures => "lambda-failures",
            DlqKind::EventbridgeTarget => "eventbridge-target",
        }
    }
}

/// One source of a DLQ, by physical name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DlqSource {
    Queue {
        name: String,
        max_receive_count: u32,
    },
    Function {
        name: String,
    },
    RuleTarget {
        rule: String,
        target_id: String,
        target_arn: String,
    },
}

impl std::fmt::Display for DlqSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DlqSource::Queue {
                name,
                max_receive_count,
            } => write!(f, "queue {name} (after {max_receive_count} receives)"),
            DlqSource::Function { name } => write!(f, "function {name}"),
            DlqSource::RuleTarget {
                rule, target_id, ..
            } => write!(f, "rule {rule} target {target_id}"),
        }
    }
}

/// A dead-letter queue of the stage.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterQueue {
    /// The physical queue name.
    pub name: String,
    pub kind: DlqKind,
    /// The topology service owning it (none for a discovered rule-target DLQ).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub sources: Vec<DlqSource>,
}

/// A DLQ with its current depth.
#[derive(Debug, Clone, Serialize)]
pub struct DlqStatus {
    #[serde(flatten)]
    pub queue: DeadLetterQueue,
    pub url: String,
    /// Visible plus in flight.
    pub depth: u64,
    pub visible: u64,
    pub in_flight: u64,
    /// Age of the oldest message among those peeked (SQS samples, so on a deep queue it
    /// is a lower bound); absent when the queue is empty or was not peeked.
    pub oldest_age_seconds: Option<u64>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub oldest_sent_at: Option<OffsetDateTime>,
}

/// Peeks keep messages invisible this long; a crash leaves them hidden no longer.
const PEEK_VISIBILITY: i32 = 30;
/// `dlq ls` peeks at most this many messages per queue for the oldest age.
const AGE_SAMPLE: usize = 50;
