//! Long polling a queue with bounded concurrency: the loop both queue-fed integrations
//! share. Work is spawned on a `JoinSet` the loop drains before it returns.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageSystemAttributeName,
};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::Config;

/// SQS's ceiling on messages per receive.
const MAX_PER_RECEIVE: usize = 10;

/// What one unit of work is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Unit {
    /// Each message on its own (asynchronous invocation: one event per invocation).
    Message,
    /// Up to this many messages together (an event source mapping's batch).
    Batch(usize),
}

/// A queue to poll.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub(crate) url: String,
    /// The physical name, for the logs.
    pub(crate) name: String,
}

/// Polls `source` until `token` is cancelled, running `work` on each unit with at most
/// `config.concurrency` units in flight; then waits for the work in flight.
///
/// Messages received after cancellation are made visible again at once, so they wait for
/// no visibility timeout when the host starts again.
pub(crate) async fn poll<F, Fut>(
    sqs: aws_sdk_sqs::Client,
    source: Source,
    unit: Unit,
    config: Config,
    token: CancellationToken,
    mut work: F,
) where
    F: FnMut(Vec<Message>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(config.concurrency.get()));
    let mut tasks = JoinSet::new();
    loop {
        while let Some(done) = tasks.try_join_next() {
            report(&source, done);
        }
        let first = tokio::select! {
            biased;
            () = token.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => unreachable!("the semaphore is never closed"),
            },
        };
        let mut held = vec![first];
        let max = match unit {
            Unit::Message => {
                while held.len() < MAX_PER_RECEIVE {
                    match Arc::clone(&permits).try_acquire_owned() {
                        Ok(permit) => held.push(permit),
                        Err(_) => break,
                    }
                }
                held.len()
            }
            Unit::Batch(size) => size.clamp(1, MAX_PER_RECEIVE),
        };
        // Not raced against the token: a receive dropped mid-flight may still take
        // messages out of sight for a whole visibility timeout.
        let received = sqs
            .receive_message()
            .queue_url(&source.url)
            .max_number_of_messages(max as i32)
            .wait_time_seconds(config.poll_wait_seconds())
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await;
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(
                    queue = %source.name,
                    error = %aws_smithy_types::error::display::DisplayErrorContext(&e),
                    "receive failed"
                );
                if pause(&token, config.error_backoff).await {
                    break;
                }
                continue;
            }
        };
        if token.is_cancelled() {
            release(&sqs, &source, &messages).await;
            break;
        }
        match unit {
            Unit::Message => {
                for (message, permit) in messages.into_iter().zip(held) {
                    let job = work(vec![message]);
                    tasks.spawn(
                        async move {
                            job.await;
                            drop(permit);
                        }
                        .in_current_span(),
                    );
                }
            }
            Unit::Batch(_) if messages.is_empty() => {}
            Unit::Batch(_) => {
                let job = work(messages);
                tasks.spawn(
                    async move {
                        job.await;
                        drop(held);
                    }
                    .in_current_span(),
                );
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        report(&source, done);
    }
}

/// Sleeps for `duration` unless `token` is cancelled first; returns whether it was.
pub(crate) async fn pause(token: &CancellationToken, duration: Duration) -> bool {
    tokio::select! {
        () = token.cancelled() => true,
        () = tokio::time::sleep(duration) => false,
    }
}

/// Makes `messages` visible again at once (best effort: otherwise they reappear after
/// their visibility timeout).
pub(crate) async fn release(sqs: &aws_sdk_sqs::Client, source: &Source, messages: &[Message]) {
    let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = messages
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(i.to_string())
                .set_receipt_handle(m.receipt_handle.clone())
                .visibility_timeout(0)
                .build()
                .ok()
        })
        .collect();
    if entries.is_empty() {
        return;
    }
    if let Err(e) = sqs
        .change_message_visibility_batch()
        .queue_url(&source.url)
        .set_entries(Some(entries))
        .send()
        .await
    {
        tracing::warn!(
            queue = %source.name,
            error = %aws_smithy_types::error::display::DisplayErrorContext(&e),
            "could not release received messages; they reappear after the visibility timeout"
        );
    }
}

fn report(source: &Source, done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        tracing::error!(queue = %source.name, error = %e, "a message task failed");
    }
}
