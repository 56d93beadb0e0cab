//! How a worker consumes its queue: the [`Config`] struct and the types its fields use.

use std::fmt;
use std::time::Duration;

/// The URL of an SQS queue (`https://sqs.<region>.amazonaws.com/<account>/<name>`, or an
/// emulator's `http://127.0.0.1:<port>/<account>/<name>`), never a bare name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueUrl(String);

/// Why a string is not a [`QueueUrl`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a queue URL: expected http(s)://<host>/<account>/<queue-name>, as CreateQueue and GetQueueUrl return it"
)]
pub struct QueueUrlError(pub String);

impl QueueUrl {
    pub fn parse(url: impl Into<String>) -> Result<QueueUrl, QueueUrlError> {
        let url = url.into();
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        let segments: Vec<&str> = rest.map(|r| r.split('/').collect()).unwrap_or_default();
        let valid = segments.len() == 3 && segments.iter().all(|s| !s.is_empty());
        if valid {
            Ok(QueueUrl(url))
        } else {
            Err(QueueUrlError(url))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The queue's name: the last path segment.
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for QueueUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for QueueUrl {
    type Error = QueueUrlError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        QueueUrl::parse(value)
    }
}

/// Everything about how one worker consumes one queue.
///
/// Built with [`Config::new`], which fills in production defaults, then adjusted field by
/// field (`Config { concurrency: 4, ..Config::new(url, "worker-1") }`).
#[derive(Debug, Clone)]
pub struct Config {
    pub queue_url: QueueUrl,
    /// Who this worker is: the owner of idempotency leases and the `fleet.worker`
    /// attribute of dead-lettered messages. Unique per process.
    pub worker_id: String,
    /// Handlers running at once in this process (at least 1).
    pub concurrency: usize,
    /// The lease each receive takes and each heartbeat renews; `None` uses the queue's own
    /// `VisibilityTimeout`. SQS counts it in whole seconds, so it is rounded up.
    pub visibility_timeout: Option<Duration>,
    /// Long-polling wait of each `ReceiveMessage` (SQS allows at most 20 s).
    pub wait_time: Duration,
    /// The most received-but-unstarted messages held beyond the free slots; the runtime
    /// holds fewer when handlers are slow (see [`crate::policy::receive_size`]). 20 lets
    /// no-op handlers always have the next batch of 10 on its way.
    pub max_prefetch: usize,
    /// How long a finished message may wait for nine more before its delete is sent.
    pub delete_flush_interval: Duration,
    /// After shutdown is requested, how long running handlers may take to finish
    /// (Fargate's `stopTimeout` allows at most 120 s; leave a few seconds for the flush).
    pub drain_timeout: Duration,
    /// How long a message waits before its next attempt after a retryable error.
    pub retry: RetryPolicy,
    /// Where messages with a non-retryable error go.
    pub dead_letter: DeadLetter,
    /// Skip messages whose work is already done; `None` runs every delivery.
    pub idempotency: Option<IdempotencyConfig>,
    /// Log the metrics as a CloudWatch EMF line this often (and at shutdown); `None`
    /// emits nothing (tests, benchmarks).
    pub metrics_log: Option<Duration>,
}

impl Config {
    /// Production defaults: one job at a time, the queue's visibility timeout, 20 s long
    /// polls, the dead-letter queue from the queue's `RedrivePolicy`, no idempotency.
    pub fn new(queue_url: QueueUrl, worker_id: impl Into<String>) -> Config {
        Config {
            queue_url,
            worker_id: worker_id.into(),
            concurrency: 1,
            visibility_timeout: None,
            wait_time: Duration::from_secs(20),
            max_prefetch: 20,
            delete_flush_interval: Duration::from_millis(100),
            drain_timeout: Duration::from_secs(100),
            retry: RetryPolicy::default(),
            dead_letter: DeadLetter::FromRedrivePolicy,
            idempotency: None,
            metrics_log: Some(Duration::from_secs(60)),
        }
    }
}

/// The delay before a retry: exponential in the receive count, capped, with jitter. See
/// [`crate::policy::retry_delay`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// The delay after the first failed attempt.
    pub base_delay: Duration,
    /// No delay is longer (SQS allows at most 12 h).
    pub max_delay: Duration,
    /// Randomize each delay within its upper half, so failures that happened together do
    /// not retry together.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(900),
            jitter: true,
        }
    }
}

/// Where a message goes when its handler says it can never succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetter {
    /// The queue named by the source queue's `RedrivePolicy`; the worker refuses to start
    /// when there is none, rather than lose such messages.
    FromRedrivePolicy,
    /// This queue.
    Queue(QueueUrl),
}

/// The DynamoDB table that records which idempotency keys are in progress or done.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyConfig {
    pub table: String,
    /// The table's partition key, a string attribute (`jobId` for the simulation table).
    pub key_attribute: String,
    /// How long a `completed` record is kept (its `expiresAt` TTL attribute); a
    /// redelivery later than that runs again.
    pub completed_ttl: Duration,
}

impl IdempotencyConfig {
    pub fn new(table: impl Into<String>, key_attribute: impl Into<String>) -> Self {
        IdempotencyConfig {
            table: table.into(),
            key_attribute: key_attribute.into(),
            completed_ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_url(input: &str, name: Option<&str>) {
        let parsed = QueueUrl::parse(input);
        assert_eq!(parsed.as_ref().ok().map(QueueUrl::name), name, "{input}");
    }

    #[test]
    fn queue_urls() {
        check_url(
            "https://sqs.us-east-1.amazonaws.com/123456789012/fleet-dev-simulation",
            Some("fleet-dev-simulation"),
        );
        check_url("http://127.0.0.1:4566/123456789012/q", Some("q"));
        check_url("fleet-dev-simulation", None);
        check_url("https://sqs.us-east-1.amazonaws.com/q", None);
        check_url("https://sqs.us-east-1.amazonaws.com/123/q/", None);
    }
}
