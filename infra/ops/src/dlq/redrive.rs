//! Sending dead messages back where they failed: an SQS DLQ to its source queue, the
//! failures queue to the function that failed (as the original event), a rule-target DLQ
//! to its SQS or Lambda target. The copy is sent before the original is deleted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{Message, MessageAttributeValue};
use aws_smithy_types::error::metadata::ProvideErrorMetadata as _;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use topology::Target;

use super::decode::{message_attribute, original_body, sent_at};
use super::sqs::{depth, queue_url, receive, release};
use super::{DeadLetterQueue, DlqKind, DlqSource};
use crate::error::aws_error;
use crate::pattern::{Pattern, PatternError};
use crate::{Ops, OpsError};

/// A failed redrive of one message.
#[derive(Debug, Clone, Serialize)]
pub struct RedriveFailure {
    pub message_id: String,
    pub error: String,
    /// The message needs `--function` (it matched no function's rules, or several).
    pub needs_function: bool,
}

/// What a redrive did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RedriveReport {
    pub queue: String,
    pub dry_run: bool,
    /// Copied to their destination and deleted here (or, with --dry-run, would be).
    pub redriven: usize,
    /// Per destination (`queue NAME` / `function NAME`).
    pub destinations: BTreeMap<String, usize>,
    /// Left in place: did not match --filter.
    pub skipped: usize,
    /// Left in place: arrived after the redrive started (e.g. failed again meanwhile).
    pub arrived_later: usize,
    /// Copies sent whose original could not be deleted: they will be redriven again.
    pub not_deleted: usize,
    pub failed: Vec<RedriveFailure>,
}

/// How to redrive.
#[derive(Debug, Clone, Default)]
pub struct RedriveOptions {
    pub filter: Option<Filter>,
    pub max: Option<usize>,
    /// Messages per second: a positive, finite number.
    pub rate: Option<f64>,
    pub dry_run: bool,
    /// For Lambda failures: the function (logical or physical name).
    pub function: Option<String>,
    /// Told how the redrive advances (not on a dry run), e.g. to draw a progress bar.
    pub progress: Option<Arc<dyn Progress>>,
}

/// What a redrive tells as it advances.
pub trait Progress: std::fmt::Debug + Send + Sync {
    /// The redrive of `queue` starts; at most `expected` messages will be sent.
    fn started(&self, queue: &str, expected: u64);
    /// One more message was sent to its destination.
    fn redriven(&self);
    /// The redrive is over.
    fn finished(&self);
}

/// A filter: an event pattern, a substring of the body, or one message by its id.
#[derive(Debug, Clone)]
pub enum Filter {
    Pattern(Pattern),
    Substring(String),
    /// The message whose SQS message id this is (as `show` lists it).
    MessageId(String),
}

impl Filter {
    /// A JSON object is an event pattern; anything else is a substring.
    pub fn parse(text: &str) -> Result<Filter, PatternError> {
        if text.trim_start().starts_with('{') {
            Pattern::parse(text).map(Filter::Pattern)
        } else {
            Ok(Filter::Substring(text.to_owned()))
        }
    }
}

/// Where one message goes back to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Destination {
    Queue { url: String, name: String },
    Function { name: String },
}

impl Destination {
    fn label(&self) -> String {
        match self {
            Destination::Queue { name, .. } => format!("queue {name}"),
            Destination::Function { name } => format!("function {name}"),
        }
    }
}

/// Sends messages back to where they failed: an SQS DLQ to its source queue (same body
/// and attributes, without the worker's `fleet.*` reason attributes); the failures queue
/// to the function that failed, as the original event (an asynchronous `lambda:Invoke`);
/// a rule-target DLQ to its SQS or Lambda target. Messages that arrived after the start,
/// or do not match the filter, stay.
pub async fn redrive(
    ops: &Ops,
    queue: &DeadLetterQueue,
    options: &RedriveOptions,
) -> Result<RedriveReport, OpsError> {
    if let Some(rate) = options.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(OpsError::Invalid(format!(
            "rate {rate}: give a positive number of messages per second"
        )));
    }
    let url = queue_url(ops, &queue.name).await?;
    let (visible, in_flight) = depth(ops, &url).await?;
    let started = OffsetDateTime::now_utc();
    let mut report = RedriveReport {
        queue: queue.name.clone(),
        dry_run: options.dry_run,
        ..RedriveReport::default()
    };
    let expected = options.max.map_or(visible, |m| {
        visible.min(u64::try_from(m).unwrap_or(u64::MAX))
    });
    let progress = options.progress.as_deref().filter(|_| !options.dry_run);
    if let Some(progress) = progress {
        progress.started(&queue.name, expected);
    }
    // Skipped messages stay invisible until the end so the loop does not see them again;
    // they are made visible before returning, whatever happens.
    let mut held: Vec<String> = Vec::new();
    let result = redrive_loop(
        ops,
        queue,
        &url,
        options,
        started,
        &mut report,
        &mut held,
        progress,
    )
    .await;
    if let Some(progress) = progress {
        progress.finished();
    }
    release(ops, &url, &held).await;
    if in_flight > 0 {
        tracing::info!(queue = %queue.name, in_flight, "messages in flight elsewhere were not redriven");
    }
    result.map(|()| report)
}

#[allow(clippy::too_many_arguments)]
async fn redrive_loop(
    ops: &Ops,
    queue: &DeadLetterQueue,
    url: &str,
    options: &RedriveOptions,
    started: OffsetDateTime,
    report: &mut RedriveReport,
    held: &mut Vec<String>,
    progress: Option<&dyn Progress>,
) -> Result<(), OpsError> {
    let mut seen = HashSet::new();
    let mut destinations: HashMap<String, Destination> = HashMap::new();
    let interval = options.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut next_send = Instant::now();
    // A batch is held invisible while it is worked through at `rate`, plus a margin.
    let batch = 10usize;
    let visibility = options.rate.map_or(60, |r| {
        let needed = (batch as f64 / r).ceil() as i64 + 30;
        i32::try_from(needed.clamp(60, 43_200)).unwrap_or(43_200)
    });
    loop {
        if options.max.is_some_and(|m| report.redriven >= m) {
            break;
        }
        let want = options
            .max
            .map_or(batch, |m| (m - report.redriven).min(batch));
        let messages = receive(ops, url, want, visibility, 1).await?;
        if messages.is_empty() {
            break;
        }
        let mut messages = messages.into_iter();
        while let Some(message) = messages.next() {
            let Some(receipt) = message.receipt_handle().map(str::to_owned) else {
                continue;
            };
            let id = message.message_id().unwrap_or_default().to_owned();
            if !seen.insert(id.clone()) {
                held.push(receipt);
                continue;
            }
            if sent_at(&message).is_some_and(|t| t > started) {
                report.arrived_later += 1;
                held.push(receipt);
                continue;
            }
            let original = original_body(queue.kind, &message);
            if let Some(filter) = &options.filter
                && !filter_matches(filter, &original, &message)
            {
                report.skipped += 1;
                held.push(receipt);
                continue;
            }
            if options.max.is_some_and(|m| report.redriven >= m) {
                held.push(receipt);
                continue;
            }
            let destination = match destination(
                ops,
                queue,
                &message,
                &original,
                options,
                &mut destinations,
            )
            .await
            {
                Ok(d) => d,
                Err(e) => {
                    report.failed.push(RedriveFailure {
                        message_id: id,
                        needs_function: e.needs_function,
                        error: e.message,
                    });
                    held.push(receipt);
                    continue;
                }
            };
            *report.destinations.entry(destination.label()).or_default() += 1;
            if options.dry_run {
                report.redriven += 1;
                held.push(receipt);
                continue;
            }
            if let Some(interval) = interval {
                let now = Instant::now();
                if next_send > now {
                    tokio::time::sleep(next_send - now).await;
                }
                next_send = Instant::now().max(next_send) + interval;
            }
            if let Err(e) = send_copy(ops, &destination, &message, &original).await {
                // The destination refuses: every other message would fail the same way.
                held.push(receipt);
                let label = destination.label();
                if let Some(count) = report.destinations.get_mut(&label) {
                    *count -= 1;
                    if *count == 0 {
                        report.destinations.remove(&label);
                    }
                }
                report.failed.push(RedriveFailure {
                    message_id: id,
                    error: e.to_string(),
                    needs_function: false,
                });
                // The rest of the batch was received too: it is released with the held
                // ones rather than left invisible until its visibility timeout.
                held.extend(messages.filter_map(|m| m.receipt_handle().map(str::to_owned)));
                return Ok(());
            }
            report.redriven += 1;
            if let Some(progress) = progress {
                progress.redriven();
            }
            if let Err(e) = ops
                .sqs
                .delete_message()
                .queue_url(url)
                .receipt_handle(&receipt)
                .send()
                .await
            {
                report.not_deleted += 1;
                tracing::warn!(
                    queue = %queue.name,
                    message_id = %id,
                    error = %aws_smithy_types::error::display::DisplayErrorContext(&e),
                    "the copy was sent but the original could not be deleted; it will be redriven again"
                );
            }
        }
    }
    Ok(())
}

fn filter_matches(filter: &Filter, original: &str, message: &Message) -> bool {
    match filter {
        Filter::Substring(s) => {
            original.contains(s.as_str()) || message.body().unwrap_or_default().contains(s.as_str())
        }
        Filter::Pattern(p) => serde_json::from_str::<Value>(original).is_ok_and(|v| p.matches(&v)),
        Filter::MessageId(id) => message.message_id() == Some(id.as_str()),
    }
}

struct DestinationError {
    message: String,
    needs_function: bool,
}

impl DestinationError {
    fn plain(message: String) -> Self {
        DestinationError {
            message,
            needs_function: false,
        }
    }
}

async fn destination(
    ops: &Ops,
    queue: &DeadLetterQueue,
    message: &Message,
    original: &str,
    options: &RedriveOptions,
    cache: &mut HashMap<String, Destination>,
) -> Result<Destination, DestinationError> {
    match queue.kind {
        DlqKind::SqsRedrive => {
            let from_worker = message_attribute(message, sqs_worker::attributes::SOURCE_QUEUE);
            let name = match from_worker.as_deref().and_then(|u| u.rsplit('/').next()) {
                Some(name) => name.to_owned(),
                None => {
                    let sources: Vec<&str> = queue
                        .sources
                        .iter()
                        .filter_map(|s| match s {
                            DlqSource::Queue { name, .. } => Some(name.as_str()),
                            _ => None,
                        })
                        .collect();
                    match sources[..] {
                        [one] => one.to_owned(),
                        _ => {
                            return Err(DestinationError::plain(format!(
                                "cannot tell which of the source queues {sources:?} it came from"
                            )));
                        }
                    }
                }
            };
            queue_destination(ops, &name, None, cache).await
        }
        DlqKind::LambdaFailures => {
            if let Some(function) = &options.function {
                return Ok(Destination::Function {
                    name: physical_function(ops, function),
                });
            }
            let event: Value = serde_json::from_str(original).map_err(|_| DestinationError {
                message: "the failed event is not JSON, so no rule can be matched; pass --function"
                    .to_owned(),
                needs_function: true,
            })?;
            match functions_for_event(&ops.topology, &event)[..] {
                [ref one] => Ok(Destination::Function {
                    name: ops.names.function(one),
                }),
                [] => Err(DestinationError {
                    message: "the event matches no rule targeting a function; pass --function NAME"
                        .to_owned(),
                    needs_function: true,
                }),
                ref several => Err(DestinationError {
                    message: format!(
                        "the event matches the rules of several functions ({}); pass --function NAME",
                        several.join(", ")
                    ),
                    needs_function: true,
                }),
            }
        }
        DlqKind::EventbridgeTarget => {
            let Some(target) = message_attribute(message, "TARGET_ARN") else {
                return Err(DestinationError::plain(
                    "the message has no TARGET_ARN attribute naming its target".to_owned(),
                ));
            };
            let fields: Vec<&str> = target.split(':').collect();
            match fields.as_slice() {
                ["arn", _, "sqs", _, account, name] => {
                    queue_destination(ops, name, Some(account.to_string()), cache).await
                }
                ["arn", _, "lambda", ..] => Ok(Destination::Function {
                    name: target.clone(),
                }),
                _ => Err(DestinationError::plain(format!(
                    "redriving to the target {target} is not supported (only SQS queues and Lambda functions); send it with `fleet events put` instead"
                ))),
            }
        }
    }
}

async fn queue_destination(
    ops: &Ops,
    name: &str,
    owner: Option<String>,
    cache: &mut HashMap<String, Destination>,
) -> Result<Destination, DestinationError> {
    if let Some(d) = cache.get(name) {
        return Ok(d.clone());
    }
    let url = ops
        .sqs
        .get_queue_url()
        .queue_name(name)
        .set_queue_owner_aws_account_id(owner)
        .send()
        .await
        .map_err(|e| DestinationError::plain(aws_error("GetQueueUrl", name, e).to_string()))?
        .queue_url
        .unwrap_or_default();
    let d = Destination::Queue {
        url,
        name: name.to_owned(),
    };
    cache.insert(name.to_owned(), d.clone());
    Ok(d)
}

/// The physical name of a function given by its logical or physical name.
fn physical_function(ops: &Ops, name: &str) -> String {
    let prefix = format!("{}-", ops.names.prefix());
    if name.starts_with(&prefix) || name.starts_with("arn:") {
        name.to_owned()
    } else {
        ops.names.function(name)
    }
}

/// The logical names of the functions whose rules match `event`, each once.
pub fn functions_for_event(topology: &topology::Topology, event: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for rule in topology.rules() {
        let pattern = match Pattern::from_value(&rule.event_pattern) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(rule = %rule.name, error = %e, "the rule's pattern cannot be evaluated locally; ignored");
                continue;
            }
        };
        if !pattern.matches(event) {
            continue;
        }
        for target in &rule.targets {
            if let Target::Function(f) = target
                && !out.contains(f)
            {
                out.push(f.clone());
            }
        }
    }
    out
}

async fn send_copy(
    ops: &Ops,
    destination: &Destination,
    message: &Message,
    original: &str,
) -> Result<(), OpsError> {
    match destination {
        Destination::Queue { url, name } => {
            // The worker's reason attributes describe the failure being retried; a copy
            // carrying them would show a stale reason if it failed again another way.
            let attributes: HashMap<String, MessageAttributeValue> = message
                .message_attributes()
                .map(|a| {
                    a.iter()
                        .filter(|(k, _)| !k.starts_with("fleet."))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            ops.sqs
                .send_message()
                .queue_url(url)
                .message_body(original)
                .set_message_attributes((!attributes.is_empty()).then_some(attributes))
                .send()
                .await
                .map_err(|e| aws_error("SendMessage", format!("queue {name}"), e))?;
        }
        Destination::Function { name } => {
            let out = ops
                .lambda
                .invoke()
                .function_name(name)
                .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
                .payload(aws_smithy_types::Blob::new(original.as_bytes()))
                .send()
                .await
                .map_err(|e| {
                    let local = matches!(e, aws_sdk_lambda::error::SdkError::DispatchFailure(_))
                        || e.code() == Some("ResourceNotFoundException");
                    let mut error = aws_error("Invoke", format!("function {name}"), e);
                    if local && let OpsError::Aws { hint, .. } = &mut error {
                        // The usual cause locally: Lambda calls went to the emulator,
                        // which runs no functions, or to no local host at all.
                        *hint = " (locally, functions run in the local host: point AWS_ENDPOINT_URL_LAMBDA at its HTTP address, fleet dev's, http://127.0.0.1:8080 by default)".to_owned();
                    }
                    error
                })?;
            if out.status_code() != 202 {
                return Err(OpsError::Failed(format!(
                    "Invoke on function {name} answered status {} instead of 202 Accepted",
                    out.status_code()
                )));
            }
        }
    }
    Ok(())
}
