//! The publisher every service uses to put events on the bus.
//!
//! `PutEvents` takes at most 10 entries and 256 KB per call, and may accept some entries
//! of a call while refusing others. The publisher packs entries into calls within both
//! limits, retries only the entries that failed with a retryable code (exponential
//! backoff with jitter, via `backon`), and returns the entries that finally failed so the
//! caller decides what to do with them. It never drops an entry silently.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use contracts::{Entry, Envelope, Event};

mod eventbridge;

/// At most this many entries per `PutEvents` call.
pub const MAX_ENTRIES_PER_CALL: usize = 10;
/// At most this many bytes per call (and so per entry).
pub const MAX_BYTES_PER_CALL: usize = 256 * 1024;

/// What the bus said about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryResult {
    Accepted { event_id: String },
    Rejected { code: String, message: String },
}

/// The port to the bus: one `PutEvents` call. The real adapter wraps the SDK client; tests
/// use a scripted twin.
pub trait EventSink: Send + Sync {
    /// Puts `entries` on `bus`; the results align with the entries.
    fn put_events(
        &self,
        bus: &str,
        entries: &[Entry],
    ) -> impl Future<Output = Result<Vec<EntryResult>, SinkError>> + Send;
}

/// A whole call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("PutEvents failed: {message}")]
pub struct SinkError {
    pub message: String,
    /// Throttling, timeouts and 5xx are retryable; validation and auth errors are not.
    pub retryable: bool,
}

/// Retry settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Attempts per entry, the first included.
    pub max_attempts: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_attempts: 5,
            min_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// An entry that could not be published, with the last reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedEntry {
    pub entry: Entry,
    pub code: String,
    pub message: String,
}

/// The outcome of [`Publisher::put`]: event ids of accepted entries, in input order
/// (`None` for failed ones), and the failures.
#[derive(Debug, Clone, Default)]
pub struct PutOutcome {
    pub event_ids: Vec<Option<String>>,
    pub failed: Vec<FailedEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the event was not published ({code}): {message}")]
    Rejected { code: String, message: String },
}

/// Publishes to one bus.
#[derive(Debug, Clone)]
pub struct Publisher<S = aws_sdk_eventbridge::Client> {
    sink: S,
    bus: String,
    config: Config,
}

impl Publisher<aws_sdk_eventbridge::Client> {
    /// A publisher on `bus` using the SDK client.
    pub fn from_sdk(sdk: &aws_config::SdkConfig, bus: impl Into<String>) -> Self {
        Publisher::new(
            aws_sdk_eventbridge::Client::new(sdk),
            bus,
            Config::default(),
        )
    }
}

impl<S: EventSink> Publisher<S> {
    pub fn new(sink: S, bus: impl Into<String>, config: Config) -> Self {
        Publisher {
            sink,
            bus: bus.into(),
            config,
        }
    }

    pub fn bus(&self) -> &str {
        &self.bus
    }

    /// Publishes one event; returns its EventBridge event id.
    pub async fn publish<E: Event>(&self, envelope: &Envelope<E>) -> Result<String, PublishError> {
        self.put_one(envelope.to_entry()).await
    }

    /// Publishes one raw entry; returns its EventBridge event id.
    pub async fn put_one(&self, entry: Entry) -> Result<String, PublishError> {
        let mut outcome = self.put(vec![entry]).await;
        match (outcome.event_ids.pop().flatten(), outcome.failed.pop()) {
            (Some(id), _) => Ok(id),
            (None, Some(f)) => Err(PublishError::Rejected {
                code: f.code,
                message: f.message,
            }),
            (None, None) => Err(PublishError::Rejected {
                code: "Unknown".to_string(),
                message: "the bus returned no result for the entry".to_string(),
            }),
        }
    }

    /// Publishes many entries; never fails as a whole: see [`PutOutcome::failed`].
    pub async fn put(&self, entries: Vec<Entry>) -> PutOutcome {
        let mut outcome = PutOutcome {
            event_ids: vec![None; entries.len()],
            failed: Vec::new(),
        };
        // Entries still to send, with their index in the input.
        let mut pending: Vec<(usize, Entry)> = Vec::with_capacity(entries.len());
        for (i, entry) in entries.into_iter().enumerate() {
            if entry.size() > MAX_BYTES_PER_CALL {
                let message = format!(
                    "entry is {} bytes; EventBridge takes at most {MAX_BYTES_PER_CALL}: store the payload in S3 and publish its location",
                    entry.size()
                );
                outcome.failed.push(FailedEntry {
                    entry,
                    code: "EntryTooLarge".to_string(),
                    message,
                });
            } else {
                pending.push((i, entry));
            }
        }
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(self.config.min_delay)
            .with_max_delay(self.config.max_delay)
            .with_max_times(self.config.max_attempts.saturating_sub(1))
            .with_jitter()
            .build();
        loop {
            let mut retry: Vec<(usize, Entry)> = Vec::new();
            let mut retry_errors = Vec::new();
            for batch in batches(pending) {
                let entries: Vec<Entry> = batch.iter().map(|(_, e)| e.clone()).collect();
                match self.sink.put_events(&self.bus, &entries).await {
                    Ok(results) => {
                        for ((index, entry), result) in
                            batch
                                .into_iter()
                                .zip(results.into_iter().chain(std::iter::repeat(
                                    EntryResult::Rejected {
                                        code: "InternalFailure".to_string(),
                                        message: "no result returned for this entry".to_string(),
                                    },
                                )))
                        {
                            match result {
                                EntryResult::Accepted { event_id } => {
                                    outcome.event_ids[index] = Some(event_id);
                                }
                                EntryResult::Rejected { code, message } if is_retryable(&code) => {
                                    retry_errors.push((code, message));
                                    retry.push((index, entry));
                                }
                                EntryResult::Rejected { code, message } => {
                                    outcome.failed.push(FailedEntry {
                                        entry,
                                        code,
                                        message,
                                    });
                                }
                            }
                        }
                    }
                    Err(e) if e.retryable => {
                        for item in batch {
                            retry_errors.push(("CallFailed".to_string(), e.message.clone()));
                            retry.push(item);
                        }
                    }
                    Err(e) => {
                        for (_, entry) in batch {
                            outcome.failed.push(FailedEntry {
                                entry,
                                code: "CallFailed".to_string(),
                                message: e.message.clone(),
                            });
                        }
                    }
                }
            }
            if retry.is_empty() {
                break;
            }
            match delays.next() {
                Some(delay) => {
                    tracing::warn!(
                        bus = %self.bus,
                        entries = retry.len(),
                        delay_ms = delay.as_millis() as u64,
                        "retrying entries the bus did not accept"
                    );
                    tokio::time::sleep(delay).await;
                    pending = retry;
                }
                None => {
                    for ((_, entry), (code, message)) in retry.into_iter().zip(retry_errors) {
                        outcome.failed.push(FailedEntry {
                            entry,
                            code,
                            message,
                        });
                    }
                    break;
                }
            }
        }
        for f in &outcome.failed {
            tracing::error!(bus = %self.bus, source = %f.entry.source, detail_type = %f.entry.detail_type, code = %f.code, message = %f.message, "event not published");
        }
        outcome
    }
}

/// Codes for which a later attempt can succeed.
fn is_retryable(code: &str) -> bool {
    matches!(
        code,
        "ThrottlingException"
            | "InternalException"
            | "InternalFailure"
            | "ServiceUnavailable"
            | "ServiceUnavailableException"
            | "CallFailed"
    )
}

/// Packs entries into calls of at most [`MAX_ENTRIES_PER_CALL`] entries and
/// [`MAX_BYTES_PER_CALL`] bytes, keeping their order.
fn batches(entries: Vec<(usize, Entry)>) -> Vec<Vec<(usize, Entry)>> {
    let mut out: Vec<Vec<(usize, Entry)>> = Vec::new();
    let mut current: Vec<(usize, Entry)> = Vec::new();
    let mut bytes = 0;
    for item in entries {
        let size = item.1.size();
        if current.len() == MAX_ENTRIES_PER_CALL || bytes + size > MAX_BYTES_PER_CALL {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(item);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests;
