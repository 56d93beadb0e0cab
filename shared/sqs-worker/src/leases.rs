//! The lease keeper: one task that owns every call changing a received message's state.
//!
//! It extends the visibility of running messages before it lapses (the heartbeat, with
//! the idempotency leases riding along), batches deletes, applies retry delays and
//! releases messages at shutdown. Because one task makes all these calls in the order the
//! commands arrive, an extension can never overwrite a retry delay or resurrect a deleted
//! message's lease.
//!
//! A lease is *lost* when SQS refuses its extension for good ([`LOST_LEASE_CODES`]), when
//! it lapses before an extension got through, or when another consumer took the
//! idempotency lease over. The keeper then stops tracking it, abandons the job (its
//! handler's [`crate::JobContext::abandoned`] token is cancelled and whatever it returns
//! is ignored), gives the idempotency claim back and makes the message visible again, so
//! that whoever owns the work now is not kept waiting. Releasing at the drain deadline
//! gives the claims back too.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use crate::handler::JobShared;
use crate::idempotency::IdempotencyStore;
use crate::metrics::Counted;
use crate::metrics::{Api, Metrics};
use crate::policy::{MAX_BATCH, extension};
use crate::queue::{EntryFailure, Queue, QueueError, ReceiptHandle};

/// Per-entry error codes of `ChangeMessageVisibilityBatch` that mean the receipt handle
/// is dead (the message was received again, by us or another consumer, or deleted): the
/// lease is lost at once rather than retried.
pub const LOST_LEASE_CODES: &[&str] = &[
    "ReceiptHandleIsInvalid",
    "InvalidParameterValue",
    "MessageNotInflight",
    "AWS.SimpleQueueService.MessageNotInflight",
];

/// What the keeper is asked to do. Messages are named by the runtime's local id.
#[derive(Debug)]
pub(crate) enum Command {
    /// A handler starts: keep this message leased until told otherwise.
    Track {
        id: u64,
        handle: ReceiptHandle,
        expires_at: Instant,
        /// Past this instant SQS refuses extensions (12 h from the first receipt).
        ceiling: Instant,
        job: Arc<JobShared>,
    },
    /// Done with the message: delete it (batched).
    Delete { id: u64 },
    /// Make the message visible again after `after` (a retry delay).
    Delay { id: u64, after: Duration },
    /// As `Delay`, and give the job's idempotency claim back: its handler panicked, so
    /// nothing else will.
    Retry { id: u64, after: Duration },
    /// Make these unstarted messages visible again now.
    Release { handles: Vec<ReceiptHandle> },
    /// The drain deadline passed: make every tracked message visible again now.
    ReleaseAll,
}

/// Settings of the keeper.
#[derive(Debug, Clone)]
pub(crate) struct KeeperConfig {
    pub visibility: Duration,
    pub delete_flush_interval: Duration,
    pub metrics_log: Option<Duration>,
}

pub(crate) struct Keeper<Q> {
    queue: Arc<Q>,
    metrics: Arc<Metrics>,
    store: Option<Arc<dyn IdempotencyStore>>,
    config: KeeperConfig,
    leases: HashMap<u64, Lease>,
    deletes: Vec<ReceiptHandle>,
    delete_deadline: Option<Instant>,
}

struct Lease {
    handle: ReceiptHandle,
    expires_at: Instant,
    ceiling: Instant,
    job: Arc<JobShared>,
    /// Whether the 12-hour ceiling was already logged.
    capped: bool,
}

impl<Q: Queue> Keeper<Q> {
    pub(crate) fn new(
        queue: Arc<Q>,
        metrics: Arc<Metrics>,
        store: Option<Arc<dyn IdempotencyStore>>,
        config: KeeperConfig,
    ) -> Self {
        Keeper {
            queue,
            metrics,
            store,
            config,
            leases: HashMap::new(),
            deletes: Vec::new(),
            delete_deadline: None,
        }
    }

    /// Runs until every sender of `commands` is gone, then flushes pending deletes.
    pub(crate) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        // Look at the leases four times per visibility timeout; each is extended once half
        // of it has passed, so an extension is never later than three quarters in.
        let every =
            (self.config.visibility / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let metrics_every = self.config.metrics_log.unwrap_or(Duration::from_secs(3600));
        let mut metrics_tick =
            tokio::time::interval_at(Instant::now() + metrics_every, metrics_every);
        metrics_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let flush_at = self.delete_deadline;
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(command) => self.apply(command).await,
                    None => break,
                },
                _ = sleep_until_some(flush_at) => self.flush_deletes().await,
                _ = tick.tick() => self.extend_due().await,
                _ = metrics_tick.tick(), if self.config.metrics_log.is_some() => self.metrics.log_emf(),
            }
        }
        self.flush_deletes().await;
        if !self.leases.is_empty() {
            // Only a bug leaves leases here: the runtime releases or settles every message.
            tracing::warn!(queue = %self.queue.url(), leases = self.leases.len(), "lease keeper stopped with messages still leased; they become visible when their leases lapse");
        }
    }

    async fn apply(&mut self, command: Command) {
        match command {
            Command::Track {
                id,
                handle,
                expires_at,
                ceiling,
                job,
            } => {
                self.leases.insert(
                    id,
                    Lease {
                        handle,
                        expires_at,
                        ceiling,
                        job,
                        capped: false,
                    },
                );
                // A message that waited in the buffer may already be due.
                if self.is_due(id, Instant::now()) {
                    self.extend(vec![id]).await;
                }
            }
            Command::Delete { id } => {
                if let Some(lease) = self.leases.remove(&id) {
                    self.deletes.push(lease.handle);
                    if self.deletes.len() >= MAX_BATCH {
                        self.flush_deletes().await;
                    } else if self.delete_deadline.is_none() {
                        self.delete_deadline =
                            Some(Instant::now() + self.config.delete_flush_interval);
                    }
                }
            }
            Command::Delay { id, after } => {
                if let Some(lease) = self.leases.remove(&id) {
                    self.change_visibility(vec![(lease.handle, after)], "retry delay")
                        .await;
                }
            }
            Command::Retry { id, after } => {
                if let Some(lease) = self.leases.remove(&id) {
                    self.release_claims(std::slice::from_ref(&lease.job)).await;
                    self.change_visibility(vec![(lease.handle, after)], "retry delay")
                        .await;
                }
            }
            Command::Release { handles } => {
                let entries = handles.into_iter().map(|h| (h, Duration::ZERO)).collect();
                self.change_visibility(entries, "release").await;
            }
            Command::ReleaseAll => {
                let (entries, jobs): (Vec<_>, Vec<_>) = self
                    .leases
                    .drain()
                    .map(|(_, lease)| ((lease.handle, Duration::ZERO), lease.job))
                    .unzip();
                // The claims first: once a message is visible, the next consumer may
                // receive it at once and must find its key free.
                self.release_claims(&jobs).await;
                self.change_visibility(entries, "release").await;
            }
        }
    }

    fn is_due(&self, id: u64, now: Instant) -> bool {
        self.leases.get(&id).is_some_and(|lease| {
            !lease.job.heartbeat_paused.load(Ordering::Relaxed)
                && lease.expires_at.saturating_duration_since(now) <= self.config.visibility / 2
        })
    }

    async fn extend_due(&mut self) {
        let now = Instant::now();
        // A lease that lapsed before an extension got through may already be another
        // consumer's.
        let lapsed: Vec<u64> = self
            .leases
            .iter()
            .filter(|(_, lease)| lease.expires_at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in lapsed {
            self.lose(id, "the lease lapsed before it could be extended")
                .await;
        }
        let due: Vec<u64> = self
            .leases
            .keys()
            .copied()
            .filter(|id| self.is_due(*id, now))
            .collect();
        if !due.is_empty() {
            self.extend(due).await;
        }
    }

    /// Extends the leases `ids` by the visibility timeout (less near the 12-hour ceiling),
    /// then renews their idempotency leases.
    async fn extend(&mut self, ids: Vec<u64>) {
        let now = Instant::now();
        let mut planned: Vec<(u64, Duration)> = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(lease) = self.leases.get_mut(&id) else {
                continue;
            };
            match extension(
                self.config.visibility,
                lease.ceiling.saturating_duration_since(now),
            ) {
                Some(by) => planned.push((id, by)),
                None if !lease.capped => {
                    lease.capped = true;
                    tracing::warn!(queue = %self.queue.url(), message_id = %lease.job.message_id, "message reached the 12-hour visibility ceiling; it becomes visible again when its lease lapses");
                }
                None => {}
            }
        }
        let mut renewed: Vec<u64> = Vec::new();
        let mut lost: Vec<u64> = Vec::new();
        for chunk in planned.chunks(MAX_BATCH) {
            let entries: Vec<(ReceiptHandle, Duration)> = chunk
                .iter()
                .filter_map(|(id, by)| Some((self.leases.get(id)?.handle.clone(), *by)))
                .collect();
            let sent_at = Instant::now();
            self.metrics.call(Api::ChangeVisibility);
            match self.queue.change_visibility_batch(&entries).await {
                Ok(failures) => {
                    for (index, (id, by)) in chunk.iter().enumerate() {
                        if let Some(f) = failures.iter().find(|f| f.index == index) {
                            tracing::warn!(queue = %self.queue.url(), code = %f.code, error = %f.message, "could not extend a message's lease");
                            if LOST_LEASE_CODES.contains(&f.code.as_str()) {
                                lost.push(*id);
                            }
                            continue;
                        }
                        if let Some(lease) = self.leases.get_mut(id) {
                            lease.expires_at = sent_at + *by;
                            renewed.push(*id);
                        }
                    }
                }
                // The next tick tries again while the lease still runs.
                Err(e) => {
                    tracing::warn!(queue = %self.queue.url(), error = %e, "could not extend leases")
                }
            }
        }
        for id in lost {
            self.lose(
                id,
                "SQS refused the lease's extension: the receipt handle is dead",
            )
            .await;
        }
        for id in self.renew_claims(&renewed).await {
            self.lose(id, "another consumer took the idempotency lease over")
                .await;
        }
    }

    /// Renews the idempotency leases of `ids`; returns the ids whose lease another
    /// consumer took over.
    async fn renew_claims(&self, ids: &[u64]) -> Vec<u64> {
        let Some(store) = &self.store else {
            return Vec::new();
        };
        let renewals = ids.iter().filter_map(|&id| {
            let job = &self.leases.get(&id)?.job;
            let (key, owner) = job.claim.get()?;
            Some(async move {
                match store.renew(key, owner, self.config.visibility).await {
                    Ok(true) => None,
                    Ok(false) => {
                        tracing::warn!(key = %key.key, owner = %owner, "idempotency lease was taken over by another worker");
                        Some(id)
                    }
                    // The next extension tries again while the lease still runs.
                    Err(e) => {
                        tracing::warn!(key = %key.key, error = %e, "could not renew the idempotency lease");
                        None
                    }
                }
            })
        });
        futures::future::join_all(renewals)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// The lease of `id` is lost: stop tracking it, abandon its job, give its claim back
    /// and make the message visible again for whoever owns the work now.
    async fn lose(&mut self, id: u64, why: &'static str) {
        let Some(lease) = self.leases.remove(&id) else {
            return;
        };
        tracing::warn!(queue = %self.queue.url(), message_id = %lease.job.message_id, reason = why, "lease lost: stopping the job; nothing is settled or published for it");
        self.metrics.count(Counted::LeaseLost);
        lease.job.lease_lost.store(true, Ordering::Release);
        lease.job.abandon.cancel();
        self.release_claims(std::slice::from_ref(&lease.job)).await;
        // Fails harmlessly (and is logged) when the handle is dead already.
        self.change_visibility(vec![(lease.handle, Duration::ZERO)], "release lost lease")
            .await;
    }

    /// Gives the idempotency claims of `jobs` back (a conditional delete: a claim taken
    /// over by someone else is left alone).
    async fn release_claims(&self, jobs: &[Arc<JobShared>]) {
        let Some(store) = &self.store else { return };
        let releases = jobs.iter().filter_map(|job| {
            let (key, owner) = job.claim.get()?;
            Some(async move {
                if let Err(e) = store.release(key, owner).await {
                    tracing::warn!(key = %key.key, error = %e, "could not release the idempotency lease; the next attempt waits for it to lapse");
                }
            })
        });
        futures::future::join_all(releases).await;
    }

    async fn flush_deletes(&mut self) {
        self.delete_deadline = None;
        let handles = std::mem::take(&mut self.deletes);
        for chunk in handles.chunks(MAX_BATCH) {
            let queue = &self.queue;
            let metrics = &self.metrics;
            let result = (|| async {
                metrics.call(Api::Delete);
                queue.delete_batch(chunk).await
            })
            .retry(call_backoff())
            .notify(|e: &QueueError, delay| tracing::warn!(queue = %queue.url(), error = %e, delay_ms = delay.as_millis() as u64, "retrying deletes"))
            .await;
            self.log_failures("delete", result, chunk.len());
        }
    }

    async fn change_visibility(&self, entries: Vec<(ReceiptHandle, Duration)>, what: &'static str) {
        for chunk in entries.chunks(MAX_BATCH) {
            let queue = &self.queue;
            let metrics = &self.metrics;
            let result = (|| async {
                metrics.call(Api::ChangeVisibility);
                queue.change_visibility_batch(chunk).await
            })
            .retry(call_backoff())
            .await;
            self.log_failures(what, result, chunk.len());
        }
    }

    fn log_failures(
        &self,
        what: &'static str,
        result: Result<Vec<EntryFailure>, QueueError>,
        entries: usize,
    ) {
        match result {
            Ok(failures) => {
                for f in failures {
                    // A receipt handle goes stale when the lease lapsed and the message was
                    // received again; the new receiver owns it now.
                    tracing::warn!(queue = %self.queue.url(), action = what, code = %f.code, error = %f.message, "a batch entry failed");
                }
            }
            Err(e) => {
                tracing::error!(queue = %self.queue.url(), action = what, entries, error = %e, "batch call failed after retries; the messages become visible again when their leases lapse");
            }
        }
    }
}

/// Retries of a whole SQS call: a few quick attempts, since leases are ticking.
pub(crate) fn call_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(3)
        .with_jitter()
}

/// Sleeps until `at`, or forever when there is no deadline.
pub(crate) async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
