//! `fleet events tail`: live events on the bus, without taking them from anyone.
//!
//! A consumer's queue is never read: the tail adds a temporary rule of its own on the bus
//! and a temporary queue as the rule's only target, prints what arrives there, and removes
//! both on exit, on Ctrl-C (SIGINT) and on SIGTERM alike. Both are named
//! `fleet-<stage>-tail-<random>`, so anything a killed tail (SIGKILL) left behind is easy
//! to find.

use std::future::Future;
use std::io::Write;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName};
use clap::Args;
use serde_json::{Value, json};
use topology::Stage;

use super::pattern::Pattern;
use super::{Ops, aws_error};
use crate::UsageError;

/// `fleet events tail ...`
#[derive(Debug, Clone, Args)]
pub struct TailArgs {
    /// Only events matching this EventBridge event pattern, e.g.
    /// '{"source": ["fleet.jobs"], "detail-type": [{"prefix": "Job"}]}' (default: every
    /// event).
    #[arg(long)]
    pub pattern: Option<String>,
    /// The bus (default: fleet-<stage>).
    #[arg(long)]
    pub bus: Option<String>,
}

/// The pattern matching every event: EventBridge has no "match all", but every event has
/// a source, and every source starts with the empty string.
const EVERY_EVENT: &str = r#"{"source": [{"prefix": ""}]}"#;
/// The id of the rule's only target.
const TARGET_ID: &str = "fleet-tail";
/// How long a receive waits; the shutdown signal interrupts it at once.
const RECEIVE_WAIT_SECONDS: i32 = 10;

/// Runs `fleet events tail` until Ctrl-C or SIGTERM; prints one JSON event per line.
pub async fn run_tail(
    stage: &Stage,
    sdk: &aws_config::SdkConfig,
    args: TailArgs,
    _json: bool,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Installed before anything is created, so a signal during setup is not lost: it
    // ends the tail as soon as setup is done, and cleanup runs.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    };
    let ops = Ops::for_stage(stage, sdk);
    let bus = args.bus.unwrap_or_else(|| ops.names.bus());
    let pattern = match &args.pattern {
        Some(text) => Pattern::parse(text).map_err(|e| UsageError(format!("--pattern: {e}")))?,
        None => Pattern::parse(EVERY_EVENT)
            .map_err(|e| anyhow::anyhow!("the match-all pattern is valid: {e}"))?,
    };
    let mut stdout = std::io::stdout();
    tail(&ops, &bus, &pattern, shutdown, &mut stdout, |t| {
        eprintln!(
            "tailing bus {} through the temporary rule {} and queue {}; Ctrl-C stops and removes them",
            t.bus, t.rule, t.queue
        );
    })
    .await
}

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

/// Creates the temporary rule and queue, writes every event arriving there to `out` (one
/// JSON object per line) until `shutdown` completes, then removes both. `ready` is called
/// once events flow.
pub async fn tail(
    ops: &Ops,
    bus: &str,
    pattern: &Pattern,
    shutdown: impl Future<Output = ()>,
    out: &mut dyn Write,
    ready: impl FnOnce(&TailResources),
) -> anyhow::Result<()> {
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
        pump(ops, &url, shutdown, out).await
    }
    .await;
    let cleaned = cleanup(ops, &resources).await;
    match (result, cleaned) {
        (Err(e), Err(c)) => Err(e.context(format!("and cleaning up failed too: {c:#}"))),
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(())) => Ok(()),
    }
}

async fn setup(ops: &Ops, r: &mut TailResources, pattern: &Pattern) -> anyhow::Result<()> {
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
        .map_err(|e| anyhow::anyhow!("the tail's rule target: {e}"))?;
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
        anyhow::bail!("PutTargets on rule {} failed: {}", r.rule, why.join(", "));
    }
    r.target_added = true;
    Ok(())
}

async fn pump(
    ops: &Ops,
    url: &str,
    shutdown: impl Future<Output = ()>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
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
            if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
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
async fn cleanup(ops: &Ops, r: &TailResources) -> anyhow::Result<()> {
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
        failures.push(format!("{:#}", aws_error("RemoveTargets", &r.rule, e)));
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
        failures.push(format!("{:#}", aws_error("DeleteRule", &r.rule, e)));
    }
    if let Some(url) = &r.queue_url
        && let Err(e) = ops.sqs.delete_queue().queue_url(url).send().await
    {
        failures.push(format!("{:#}", aws_error("DeleteQueue", &r.queue, e)));
    }
    if failures.is_empty() {
        tracing::info!(rule = %r.rule, queue = %r.queue, "tail stopped; temporary rule and queue removed");
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "could not remove everything the tail created: {}",
            failures.join("; ")
        ))
    }
}
