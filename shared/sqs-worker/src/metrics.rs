//! Counters a worker keeps per queue: shared as `Arc<Metrics>` (a benchmark reads them
//! while the worker runs) and logged as CloudWatch Embedded Metric Format lines.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::{Value, json};

use crate::sqs::epoch_millis;

/// The CloudWatch namespace of the EMF lines.
pub const NAMESPACE: &str = "Fleet/Workers";

/// The SQS calls, by API, that [`Metrics`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Receive,
    Delete,
    ChangeVisibility,
    Send,
    /// `GetQueueAttributes`, `GetQueueUrl`.
    Other,
}

/// Atomic counters for one queue. Every field only grows, except `in_flight`.
#[derive(Debug, Default)]
pub struct Metrics {
    queue: String,
    received: AtomicU64,
    succeeded: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    /// Acknowledged without running: the idempotency record says the work is done.
    duplicates: AtomicU64,
    /// Put back because another worker holds the idempotency lease.
    deferred: AtomicU64,
    /// Acknowledged without running: a newer attempt of the work holds the record.
    superseded: AtomicU64,
    /// Handlers stopped because their lease was lost (extension failed or too late, or
    /// the idempotency lease was taken over).
    lease_lost: AtomicU64,
    /// Made visible again unprocessed at shutdown.
    released: AtomicU64,
    /// Dropped unstarted because their lease had lapsed in the buffer.
    expired: AtomicU64,
    in_flight: AtomicU64,
    handler_count: AtomicU64,
    handler_micros_sum: AtomicU64,
    handler_micros_max: AtomicU64,
    receive_calls: AtomicU64,
    delete_calls: AtomicU64,
    change_visibility_calls: AtomicU64,
    send_calls: AtomicU64,
    other_calls: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MetricsSnapshot {
    pub queue: String,
    pub received: u64,
    pub succeeded: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub duplicates: u64,
    pub deferred: u64,
    pub superseded: u64,
    pub lease_lost: u64,
    pub released: u64,
    pub expired: u64,
    pub in_flight: u64,
    pub handler_count: u64,
    pub handler_micros_sum: u64,
    pub handler_micros_max: u64,
    pub requests: SqsRequests,
}

/// SQS calls by API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SqsRequests {
    pub receive: u64,
    pub delete: u64,
    pub change_visibility: u64,
    pub send: u64,
    pub other: u64,
}

impl SqsRequests {
    pub fn total(&self) -> u64 {
        self.receive + self.delete + self.change_visibility + self.send + self.other
    }
}

impl Metrics {
    pub fn new(queue: impl Into<String>) -> Self {
        Metrics {
            queue: queue.into(),
            ..Metrics::default()
        }
    }

    pub fn queue(&self) -> &str {
        &self.queue
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            queue: self.queue.clone(),
            received: get(&self.received),
            succeeded: get(&self.succeeded),
            retried: get(&self.retried),
            dead_lettered: get(&self.dead_lettered),
            duplicates: get(&self.duplicates),
            deferred: get(&self.deferred),
            superseded: get(&self.superseded),
            lease_lost: get(&self.lease_lost),
            released: get(&self.released),
            expired: get(&self.expired),
            in_flight: get(&self.in_flight),
            handler_count: get(&self.handler_count),
            handler_micros_sum: get(&self.handler_micros_sum),
            handler_micros_max: get(&self.handler_micros_max),
            requests: self.requests(),
        }
    }

    pub fn requests(&self) -> SqsRequests {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SqsRequests {
            receive: get(&self.receive_calls),
            delete: get(&self.delete_calls),
            change_visibility: get(&self.change_visibility_calls),
            send: get(&self.send_calls),
            other: get(&self.other_calls),
        }
    }

    pub(crate) fn call(&self, api: Api) {
        let counter = match api {
            Api::Receive => &self.receive_calls,
            Api::Delete => &self.delete_calls,
            Api::ChangeVisibility => &self.change_visibility_calls,
            Api::Send => &self.send_calls,
            Api::Other => &self.other_calls,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_received(&self, n: usize) {
        self.received.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn count(&self, outcome: Counted) {
        let counter = match outcome {
            Counted::Succeeded => &self.succeeded,
            Counted::Retried => &self.retried,
            Counted::DeadLettered => &self.dead_lettered,
            Counted::Duplicate => &self.duplicates,
            Counted::Deferred => &self.deferred,
            Counted::Superseded => &self.superseded,
            Counted::LeaseLost => &self.lease_lost,
            Counted::Released => &self.released,
            Counted::Expired => &self.expired,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn finished(&self) {
        // Never below zero, even if a bug made the calls unbalanced.
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }

    pub(crate) fn handler_took(&self, duration: Duration) {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.handler_count.fetch_add(1, Ordering::Relaxed);
        self.handler_micros_sum.fetch_add(micros, Ordering::Relaxed);
        self.handler_micros_max.fetch_max(micros, Ordering::Relaxed);
    }

    /// The counters as one CloudWatch Embedded Metric Format document, with the queue as
    /// the dimension. Counters are cumulative since the worker started.
    pub fn emf(&self) -> Value {
        let s = self.snapshot();
        let count = |name: &str| json!({ "Name": name, "Unit": "Count" });
        let micros = |name: &str| json!({ "Name": name, "Unit": "Microseconds" });
        json!({
            "_aws": {
                "Timestamp": epoch_millis(SystemTime::now()),
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Queue"]],
                    "Metrics": [
                        count("Received"), count("Succeeded"), count("Retried"),
                        count("DeadLettered"), count("Duplicates"), count("Deferred"),
                        count("Superseded"), count("LeaseLost"),
                        count("Released"), count("Expired"), count("InFlight"),
                        count("HandlerCount"), micros("HandlerDurationSum"),
                        micros("HandlerDurationMax"), count("SqsReceiveRequests"),
                        count("SqsDeleteRequests"), count("SqsChangeVisibilityRequests"),
                        count("SqsSendRequests"), count("SqsOtherRequests"),
                    ],
                }],
            },
            "Queue": s.queue,
            "Received": s.received,
            "Succeeded": s.succeeded,
            "Retried": s.retried,
            "DeadLettered": s.dead_lettered,
            "Duplicates": s.duplicates,
            "Deferred": s.deferred,
            "Superseded": s.superseded,
            "LeaseLost": s.lease_lost,
            "Released": s.released,
            "Expired": s.expired,
            "InFlight": s.in_flight,
            "HandlerCount": s.handler_count,
            "HandlerDurationSum": s.handler_micros_sum,
            "HandlerDurationMax": s.handler_micros_max,
            "SqsReceiveRequests": s.requests.receive,
            "SqsDeleteRequests": s.requests.delete,
            "SqsChangeVisibilityRequests": s.requests.change_visibility,
            "SqsSendRequests": s.requests.send,
            "SqsOtherRequests": s.requests.other,
        })
    }

    /// Writes [`Metrics::emf`] as one line on stdout, where the CloudWatch agent (or
    /// Lambda) picks EMF documents up. It bypasses `tracing` because EMF must be the whole
    /// log event, not a field inside one.
    pub fn log_emf(&self) {
        let line = self.emf().to_string();
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, "{line}") {
            tracing::warn!(queue = %self.queue, error = %e, "could not write the metrics line");
        }
    }
}

/// An outcome [`Metrics`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counted {
    Succeeded,
    Retried,
    DeadLettered,
    Duplicate,
    Deferred,
    Superseded,
    LeaseLost,
    Released,
    Expired,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_names_every_metric_it_carries() {
        let metrics = Metrics::new("q");
        metrics.call(Api::Receive);
        metrics.add_received(3);
        metrics.handler_took(Duration::from_millis(2));
        metrics.handler_took(Duration::from_millis(5));
        let emf = metrics.emf();
        let declared = &emf["_aws"]["CloudWatchMetrics"][0]["Metrics"];
        for m in declared.as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            assert!(emf[name].is_u64(), "metric {name} has no value");
        }
        assert_eq!(emf["Queue"], "q");
        assert_eq!(emf["Received"], 3);
        assert_eq!(emf["HandlerDurationSum"], 7000);
        assert_eq!(emf["HandlerDurationMax"], 5000);
        assert_eq!(emf["SqsReceiveRequests"], 1);
        assert_eq!(
            emf["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Queue"]])
        );
    }

    #[test]
    fn in_flight_never_goes_below_zero() {
        let metrics = Metrics::new("q");
        metrics.finished();
        metrics.started();
        metrics.started();
        metrics.finished();
        assert_eq!(metrics.snapshot().in_flight, 1);
    }
}
