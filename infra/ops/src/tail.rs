//! A live tail of the bus (`fleet events tail`), without taking them from anyone.
//!
//! A consumer's queue is never read: the tail adds a temporary rule of its own on the bus
//! and a temporary queue as the rule's only target, hands on what arrives there, and removes
//! both on exit, on Ctrl-C (SIGINT) and on SIGTERM alike. Both are named
//! `fleet-<stage>-tail-<random>`, so anything a killed tail (SIGKILL) left behind is easy
//! to find.

use std::future::Future;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName};
use serde_json::{Value, json};

use crate::error::aws_error;
use crate::pattern::Pattern;
use crate::{Ops, OpsError};

/// The pattern matching every event: EventBridge has no "match all", but every event has
/// a source, and every source starts with the empty string.
pub const EVERY_EVENT: &str = r#"{"source": [{"prefix": ""}]}"#;
/// The id of the rule's only target.
const TARGET_ID: &str = "fleet-tail";
/// How long a receive waits; the shutdown signal interrupts it at once.
const RECEIVE_WAIT_SECONDS: i32 = 10;

/// The temporary rule and queue of one tail.
#[derive(Debug, Clone)]
pub struct TailResources {
    pub bus: String,
    pub rule: String,
    pub queue: String,
    queue_url: Option<String>,
    rule_created: bool,
    target_added: bool,
}

/// Creates the temporary rule and queue, hands every event arriving there to `on_event`
/// (as compact JSON text, or the body as it is when it is not JSON) until `shutdown`
/// completes, then removes both. `ready` is called once events flow. An error from
/// `on_event` ends the tail with that error, except a broken pipe (the reader went
/// away), which ends it quietly.
pub async fn tail(
    ops: &Ops,
    bus: &str,
    pattern: &Pattern,
    shutdown: impl Future<Output = ()>,
    mut on_event: impl FnMut(&str) -> std::io::Result<()>,
    ready: impl FnOnce(&TailResources),
) -> Result<(), OpsError> {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let name = format!("{}-tail-{suffix}", ops.names.prefix());
    let mut resources = TailResources {
        bus: bus.to_owned(),
        rule: name.clone(),
        queue: name,
        queue_url: None,
        rule_created: false,
        target_added: false,
    };
    let result = async {
        setup(ops, &mut resources, pattern).await?;
        ready(&resources);
        let url = resources.queue_url.clone().unwrap_or_default();
        pump(ops, &url, shutdown, &mut on_event).await
    }
    .await;
    let cleaned = cleanup(ops, &resources).await;
    match (result, cleaned) {
        (Err(e), Err(c)) => Err(OpsError::CleanupFailed {
            cleanup: c.to_string(),
            error: Box::new(e),
        }),
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(())) => Ok(()),
    }
}

async fn setup(ops: &Ops, r: &mut TailResources, pattern: &Pattern) -> Result<(), OpsError> {
    let url = ops
        .sqs
        .create_queue()
        .queue_name(&r.queue)
        // A tail reads as events come: nothing needs keeping for long.
        .attributes(QueueAttributeName::MessageRetentionPeriod, "300")
        .send()
        .await
        .map_err(|e| aws_error("CreateQueue", &r.queue, e))?
        .queue_url
        .unwrap_or_default();
    r.queue_url = Some(url.clone());
    let queue_arn = ops
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| aws_error("GetQueueAttributes", &r.queue, e))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .unwrap_or_default();
    let rule_arn = ops
        .events
        .put_rule()
        .name(&r.rule)
        .event_bus_name(&r.bus)
        .event_pattern(pattern.to_json())
        .description("fleet events tail: temporary, removed when the tail stops")
        .send()
        .await
        .map_err(|e| aws_error("PutRule", format!("rule {} on bus {}", r.rule, r.bus), e))?
        .rule_arn
        .unwrap_or_default();
    r.rule_created = true;
    // As on AWS, the queue admits only its rule.
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
        }],
    });
    ops.sqs
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::Policy, policy.to_string())
        .send()
        .await
        .map_err(|e| aws_error("SetQueueAttributes", &r.queue, e))?;
    let target = aws_sdk_eventbridge::types::Target::builder()
        .id(TARGET_ID)
        .arn(&queue_arn)
        .build()
        .map_err(|e| OpsError::Failed(format!("the tail's rule target: {e}")))?;
    let put = ops
        .events
        .put_targets()
        .rule(&r.rule)
        .event_bus_name(&r.bus)
        .targets(target)
        .send()
        .await
        .map_err(|e| aws_error("PutTargets", &r.rule, e))?;
    if put.failed_entry_count() > 0 {
        let why: Vec<&str> = put
            .failed_entries()
            .iter()
            .filter_map(|e| e.error_message())
            .collect();
        return Err(OpsError::Failed(format!(
            "PutTargets on rule {} failed: {}",
            r.rule,
            why.join(", ")
        )));
    }
    r.target_added = true;
    Ok(())
}

async fn pump(
    ops: &Ops,
    url: &str,
    shutdown: impl Future<Output = ()>,
    on_event: &mut impl FnMut(&str) -> std::io::Result<()>,
) -> Result<(), OpsError> {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let received = tokio::select! {
            () = &mut shutdown => return Ok(()),
            r = ops
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(RECEIVE_WAIT_SECONDS)
                .send() => r.map_err(|e| aws_error("ReceiveMessage", url, e))?,
        };
        let messages = received.messages();
        if messages.is_empty() {
            continue;
        }
        let mut entries = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let body = m.body().unwrap_or_default();
            let line = serde_json::from_str::<Value>(body)
                .map_or_else(|_| body.to_owned(), |v| v.to_string());
            if let Err(e) = on_event(&line) {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    // The reader went away (`fleet events tail | head`): stop quietly.
                    return Ok(());
                }
                return Err(e.into());
            }
            if let Some(receipt) = m.receipt_handle()
                && let Ok(entry) = DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(receipt)
                    .build()
            {
                entries.push(entry);
            }
        }
        // The queue is the tail's own: a failed delete only means an event printed twice.
        if let Err(e) = ops
            .sqs
            .delete_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            tracing::warn!(error = %aws_smithy_types::error::display::DisplayErrorContext(&e), "could not delete printed events from the tail's queue");
        }
    }
}

/// Removes what [`setup`] created, each step tried even when another fails.
async fn cleanup(ops: &Ops, r: &TailResources) -> Result<(), OpsError> {
    let mut failures = Vec::new();
    if r.target_added
        && let Err(e) = ops
            .events
            .remove_targets()
            .rule(&r.rule)
            .event_bus_name(&r.bus)
            .ids(TARGET_ID)
            .send()
            .await
    {
        failures.push(aws_error("RemoveTargets", &r.rule, e).to_string());
    }
    if r.rule_created
        && let Err(e) = ops
            .events
            .delete_rule()
            .name(&r.rule)
            .event_bus_name(&r.bus)
            .send()
            .await
    {
        failures.push(aws_error("DeleteRule", &r.rule, e).to_string());
    }
    if let Some(url) = &r.queue_url
        && let Err(e) = ops.sqs.delete_queue().queue_url(url).send().await
    {
        failures.push(aws_error("DeleteQueue", &r.queue, e).to_string());
    }
    if failures.is_empty() {
        tracing::info!(rule = %r.rule, queue = %r.queue, "tail stopped; temporary rule and queue removed");
        Ok(())
    } else {
        Err(OpsError::Failed(format!(
            "could not remove everything the tail created: {}",
            failures.join("; ")
        )))
    }
}
