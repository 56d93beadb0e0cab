//! Looking at a DLQ without consuming it (`show`, `export`), and purging it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::decode::{describe, redact_tokens};
use super::sqs::{depth, peek, queue_url};
use super::{DeadLetterQueue, DeadMessage, PEEK_VISIBILITY};
use crate::error::aws_error;
use crate::{Ops, OpsError};

/// Up to `limit` messages of the DLQ, decoded, left in the queue.
pub async fn show(
    ops: &Ops,
    queue: &DeadLetterQueue,
    limit: usize,
) -> Result<Vec<DeadMessage>, OpsError> {
    let url = queue_url(ops, &queue.name).await?;
    let (visible, _) = depth(ops, &url).await?;
    let wanted = limit.min(usize::try_from(visible).unwrap_or(usize::MAX));
    let messages = peek(ops, &url, wanted, PEEK_VISIBILITY).await?;
    Ok(messages.iter().map(|m| describe(queue, m)).collect())
}

/// A message as `export` gives it: the decoded view plus the raw body (task tokens
/// redacted unless asked otherwise) and the string message attributes.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedMessage {
    #[serde(flatten)]
    pub message: DeadMessage,
    pub raw_body: String,
    pub attributes: BTreeMap<String, Option<String>>,
}

/// Every message (or `limit`), decoded and raw, left in the queue.
pub async fn export(
    ops: &Ops,
    queue: &DeadLetterQueue,
    limit: Option<usize>,
    unredacted: bool,
) -> Result<Vec<ExportedMessage>, OpsError> {
    let url = queue_url(ops, &queue.name).await?;
    let (visible, _) = depth(ops, &url).await?;
    let visible = usize::try_from(visible).unwrap_or(usize::MAX);
    let wanted = limit.map_or(visible, |l| l.min(visible));
    // Long enough to list a deep queue without seeing the first messages again.
    let visibility =
        PEEK_VISIBILITY.max(i32::try_from(wanted / 10).unwrap_or(i32::MAX).min(43_200));
    let messages = peek(ops, &url, wanted, visibility).await?;
    Ok(messages
        .iter()
        .map(|message| {
            let raw = message.body().unwrap_or_default();
            let raw_body = if unredacted {
                raw.to_owned()
            } else {
                redact_tokens(raw)
            };
            let attributes = message
                .message_attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.clone(), v.string_value().map(str::to_owned)))
                        .collect()
                })
                .unwrap_or_default();
            ExportedMessage {
                message: describe(queue, message),
                raw_body,
                attributes,
            }
        })
        .collect())
}

/// Deletes every message of the DLQ.
pub async fn purge(ops: &Ops, url: &str, name: &str) -> Result<(), OpsError> {
    ops.sqs
        .purge_queue()
        .queue_url(url)
        .send()
        .await
        .map_err(|e| aws_error("PurgeQueue", name, e))?;
    Ok(())
}
