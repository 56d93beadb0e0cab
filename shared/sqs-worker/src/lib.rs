//! The SQS consumer runtime every queue-fed worker uses.
//!
//! A [`Worker`] long-polls one queue and runs a [`Handler`] per message, at most
//! [`Config::concurrency`] at a time. Around each handler it:
//!
//! - **prefetches** only what can start well within the lease ([`policy::receive_size`]);
//! - **heartbeats**: extends the message's visibility at half the visibility timeout
//!   while the handler runs (never past SQS's 12-hour ceiling), so a long job is never
//!   handed to a second worker; a handler can pause this to simulate a stuck worker;
//! - **settles** by outcome: `Ok` deletes (batched, up to 10 per call); a retryable error
//!   makes the message visible again after an exponential backoff from its receive count
//!   ([`policy::retry_delay`]), so the queue's `RedrivePolicy` dead-letters it after
//!   `maxReceiveCount` attempts; a fatal error sends the unchanged body to the dead-letter
//!   queue at once, with the reason as `fleet.*` attributes ([`attributes`]), and only
//!   then deletes the original;
//! - **deduplicates** (optional): an idempotency record per key in DynamoDB
//!   ([`idempotency`]), leased with the message and marked completed on success;
//! - **drains** on shutdown: no more receives, unstarted messages released at once,
//!   running handlers given until the drain deadline, then released as well;
//! - **counts** everything in [`Metrics`], logged as CloudWatch EMF lines.
//!
//! The queue is a port ([`Queue`]): [`SqsQueue`] is the real adapter, [`MemoryQueue`] an
//! in-memory twin with the same lease and redrive rules for unit tests. All calls that
//! change a received message go through one task (`leases`), so they never race.

pub mod bench;
pub mod config;
pub mod handler;
pub mod idempotency;
pub mod memory;
pub mod metrics;
pub mod policy;
pub mod queue;
pub mod sqs;

mod leases;
mod worker;

pub use bench::{BenchReport, BenchRun, bench};
pub use config::{Config, DeadLetter, IdempotencyConfig, QueueUrl, RetryPolicy};
pub use handler::{Delivery, Handler, HandlerError, IdempotencyKey, JobContext};
pub use memory::MemoryQueue;
pub use metrics::{Metrics, MetricsSnapshot, SqsRequests};
pub use queue::Queue;
pub use sqs::SqsQueue;
pub use worker::{Worker, WorkerError, attributes};
