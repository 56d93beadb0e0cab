//! `core`: what every service shares.

use crate::model::{EventBus, Queue, Service, Topic};

/// The topic every asynchronous function names as its dead letter, and the queue that
/// collects its messages.
pub const FAILURES: &str = "failures";

/// What every service shares: the bus, and the failures topic with its queue.
///
/// The failures queue subscribes with raw message delivery off, so each message keeps
/// the SNS envelope whose `MessageAttributes` carry Lambda's `RequestID`, `ErrorCode`
/// and `ErrorMessage`.
pub fn core() -> Service {
    Service::new(crate::validate::CORE)
        .with(EventBus)
        .with(Queue::new(FAILURES).with_retention(Queue::DLQ_RETENTION))
        .with(Topic::new(FAILURES).subscribe(FAILURES))
}
