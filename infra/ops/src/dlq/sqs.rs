//! The SQS calls of the DLQ operations: peeking (receive, then make visible again at
//! once), a queue's URL and depth.
//!
//! `sqs-worker` has receive and batch helpers too, but over its own message type (without
//! the system attributes and binary message attributes a redrive copies) and its own
//! errors; these keep the SDK's `Message` whole.

use std::collections::HashSet;

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageSystemAttributeName,
    QueueAttributeName,
};
use aws_smithy_types::error::metadata::ProvideErrorMetadata as _;

use crate::error::aws_error;
use crate::{Ops, OpsError};

/// Receives up to `limit` distinct messages with every attribute, then makes them visible
/// again, even when a call fails midway.
pub async fn peek(
    ops: &Ops,
    url: &str,
    limit: usize,
    visibility: i32,
) -> Result<Vec<Message>, OpsError> {
    let mut receipts = Vec::new();
    let mut out = Vec::new();
    let result = async {
        let mut seen = HashSet::new();
        while out.len() < limit {
            let want = (limit - out.len()).min(10);
            let messages = receive(ops, url, want, visibility, 1).await?;
            if messages.is_empty() {
                break;
            }
            let mut fresh = 0;
            for m in messages {
                if let Some(r) = m.receipt_handle() {
                    receipts.push(r.to_owned());
                }
                if seen.insert(m.message_id().unwrap_or_default().to_owned()) {
                    fresh += 1;
                    out.push(m);
                }
            }
            if fresh == 0 {
                break;
            }
        }
        Ok::<(), OpsError>(())
    }
    .await;
    release(ops, url, &receipts).await;
    result.map(|()| out)
}

pub(super) async fn receive(
    ops: &Ops,
    url: &str,
    max: usize,
    visibility: i32,
    wait: i32,
) -> Result<Vec<Message>, OpsError> {
    let out = ops
        .sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(i32::try_from(max.clamp(1, 10)).unwrap_or(10))
        .visibility_timeout(visibility)
        .wait_time_seconds(wait)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .map_err(|e| aws_error("ReceiveMessage", url, e))?;
    Ok(out.messages.unwrap_or_default())
}

/// Makes the messages visible again at once.
pub(super) async fn release(ops: &Ops, url: &str, receipts: &[String]) {
    for chunk in receipts.chunks(10) {
        let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect();
        let result = ops
            .sqs
            .change_message_visibility_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await;
        match result {
            Ok(out) if out.failed().is_empty() => {}
            Ok(out) => tracing::warn!(
                queue = %url,
                failed = out.failed().len(),
                "some peeked messages could not be made visible again; they reappear after their visibility timeout"
            ),
            Err(e) => tracing::warn!(
                queue = %url,
                error = %aws_smithy_types::error::display::DisplayErrorContext(&e),
                "peeked messages could not be made visible again; they reappear after their visibility timeout"
            ),
        }
    }
}

/// The URL of the queue `name`; a missing queue means the stage is not deployed.
pub async fn queue_url(ops: &Ops, name: &str) -> Result<String, OpsError> {
    match ops.sqs.get_queue_url().queue_name(name).send().await {
        Ok(out) => Ok(out.queue_url.unwrap_or_default()),
        Err(e)
            if e.code().is_some_and(|c| {
                c.contains("NonExistentQueue") || c.contains("QueueDoesNotExist")
            }) =>
        {
            Err(OpsError::Missing(format!(
                "the queue {name} does not exist at this endpoint: is stage {} deployed (`fleet --stage {} infra deploy`)?",
                ops.stage(),
                ops.stage()
            )))
        }
        Err(e) => Err(aws_error("GetQueueUrl", name, e)),
    }
}

/// (visible, in flight)
pub async fn depth(ops: &Ops, url: &str) -> Result<(u64, u64), OpsError> {
    let out = ops
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| aws_error("GetQueueAttributes", url, e))?;
    let get = |name: QueueAttributeName| -> u64 {
        out.attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((
        get(QueueAttributeName::ApproximateNumberOfMessages),
        get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    ))
}
