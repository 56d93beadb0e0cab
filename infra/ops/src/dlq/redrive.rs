//! `fleet dlq`: the stage's dead-letter queues, what sits in them and why, and replaying
//! them safely.
//!
//! Three kinds of DLQ exist: the DLQ of an SQS queue (its `RedrivePolicy` moves a message
//! there after `maxReceiveCount` receives, or a worker sends it there at once with its
//! `fleet.*` reason attributes), the failures queue (Lambda publishes an asynchronous
//! invocation that failed every retry to the SNS failures topic, which delivers the SNS
//! envelope here) and the DLQ of an EventBridge rule target (discovered from the rules'
//! `DeadLetterConfig`).
//!
//! Looking never consumes: messages are received with a short visibility timeout and made
//! visible again (`ChangeMessageVisibility 0`) before the command returns; a crash leaves
//! them invisible for at most that timeout. Redriving sends the copy before deleting the
//! original, so a crash midway duplicates at most one message and loses none.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageAttributeValue,
    MessageSystemAttributeName, QueueAttributeName,
};
use aws_smithy_types::error::metadata::ProvideErrorMetadata as _;
use clap::{Args, Subcommand};
use contracts::tasks::SimulationTask;
use contracts::{BusEvent, JobEvent};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use topology::{DeadLetterSource, Stage, Target};

use super::pattern::Pattern;
use super::table::Table;
use super::{Ops, aws_error, between, human_duration, human_time_opt, print_json, redact};
use crate::UsageError;

/// `fleet dlq ...`
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Every dead-letter queue of the stage: kind, depth, age of the oldest message and
    /// what feeds it.
    Ls,
    /// Peek at the messages of a DLQ without consuming them: the decoded body, receive
    /// count, first failure, reason and correlation id. Task tokens are shown redacted.
    Show {
        /// The DLQ: its full name (fleet-<stage>-simulation-dlq) or without the
        /// `fleet-<stage>-` prefix (simulation-dlq, failures).
        name: String,
        /// At most this many messages.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Send messages back where they failed: an SQS DLQ to its source queue (same body
    /// and attributes, without the worker's fleet.* reason attributes); the failures
    /// queue to the function that failed, as the original event (an asynchronous
    /// `lambda:Invoke`); an EventBridge target DLQ to its SQS or Lambda target. The copy
    /// is sent before the original is deleted.
    Redrive(RedriveArgs),
    /// Delete every message of a DLQ. Asks for confirmation on a terminal; elsewhere
    /// needs --yes.
    Purge {
        name: String,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
    /// Write the messages of a DLQ to stdout as JSON lines, without consuming them.
    Export {
        name: String,
        /// At most this many messages (default: all).
        #[arg(long)]
        limit: Option<usize>,
        /// Keep task tokens in full in the exported bodies (they are redacted otherwise).
        #[arg(long)]
        unredacted: bool,
    },
}

/// `fleet dlq redrive NAME ...`
#[derive(Debug, Clone, Args)]
pub struct RedriveArgs {
    /// The DLQ, as for `fleet dlq show`.
    pub name: String,
    /// Only messages that match: a JSON object is an EventBridge event pattern matched
    /// against the event (the original event for Lambda failures) or the job; anything
    /// else is a substring of the body.
    #[arg(long)]
    pub filter: Option<String>,
    /// Redrive at most this many messages.
    #[arg(long)]
    pub max: Option<usize>,
    /// At most this many messages per second.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Show what would be redriven and where, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// For the failures queue: the function to re-deliver to (its name with or without
    /// the `fleet-<stage>-` prefix). Without it, each event goes to the function whose
    /// rules' event patterns it matches; an event that matches none or several needs
    /// --function.
    #[arg(long)]
    pub function: Option<String>,
}

/// What feeds a dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DlqKind {
    /// The DLQ of an SQS queue.
    SqsRedrive,
    /// Lambda's asynchronous failures, delivered through the SNS failures topic.
    LambdaFailures,
    /// The DLQ of an EventBridge rule target.
    EventbridgeTarget,
}

impl DlqKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DlqKind::SqsRedrive => "sqs-redrive",
            DlqKind::LambdaFailures => "lambda-failures",
            DlqKind::EventbridgeTarget => "eventbridge-target",
        }
    }
}

/// One source of a DLQ, by physical name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DlqSource {
    Queue {
        name: String,
        max_receive_count: u32,
    },
    Function {
        name: String,
    },
    RuleTarget {
        rule: String,
        target_id: String,
        target_arn: String,
    },
}

impl std::fmt::Display for DlqSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DlqSource::Queue {
                name,
                max_receive_count,
            } => write!(f, "queue {name} (after {max_receive_count} receives)"),
            DlqSource::Function { name } => write!(f, "function {name}"),
            DlqSource::RuleTarget {
                rule, target_id, ..
            } => write!(f, "rule {rule} target {target_id}"),
        }
    }
}

/// A dead-letter queue of the stage.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterQueue {
    /// The physical queue name.
    pub name: String,
    pub kind: DlqKind,
    /// The topology service owning it (none for a discovered rule-target DLQ).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub sources: Vec<DlqSource>,
}

/// A DLQ with its current depth.
#[derive(Debug, Clone, Serialize)]
pub struct DlqStatus {
    #[serde(flatten)]
    pub queue: DeadLetterQueue,
    pub url: String,
    /// Visible plus in flight.
    pub depth: u64,
    pub visible: u64,
    pub in_flight: u64,
    /// Age of the oldest message among those peeked (SQS samples, so on a deep queue it
    /// is a lower bound); absent when the queue is empty or was not peeked.
    pub oldest_age_seconds: Option<u64>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub oldest_sent_at: Option<OffsetDateTime>,
}

/// Why a message is in a DLQ.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Reason {
    /// Lambda's attributes on a failed asynchronous invocation.
    Lambda {
        request_id: Option<String>,
        error_code: Option<String>,
        error_message: Option<String>,
    },
    /// A worker dead-lettered it at once (the `fleet.*` attributes of `sqs-worker`).
    Worker {
        error: Option<String>,
        reason: Option<String>,
        source_queue: Option<String>,
        worker: Option<String>,
    },
    /// EventBridge could not deliver it to a target.
    EventbridgeTarget {
        error_code: Option<String>,
        error_message: Option<String>,
        rule_arn: Option<String>,
        target_arn: Option<String>,
    },
    /// No reason attributes: the source queue's redrive policy moved it after
    /// `maxReceiveCount` receives (the handler failed or timed out each time).
    MaxReceives { max_receive_count: Option<u32> },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let or = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".to_owned());
        match self {
            Reason::Lambda {
                request_id,
                error_code,
                error_message,
            } => write!(
                f,
                "lambda request {} failed (ErrorCode {}): {}",
                or(request_id),
                or(error_code),
                or(error_message)
            ),
            Reason::Worker { error, reason, .. } => {
                write!(f, "worker: {}: {}", or(error), or(reason))
            }
            Reason::EventbridgeTarget {
                error_code,
                error_message,
                ..
            } => write!(
                f,
                "eventbridge delivery: {}: {}",
                or(error_code),
                or(error_message)
            ),
            Reason::MaxReceives {
                max_receive_count: Some(n),
            } => write!(f, "received {n} times without success (redrive policy)"),
            Reason::MaxReceives { .. } => {
                write!(f, "received too often without success (redrive policy)")
            }
        }
    }
}

/// What a message body is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Body {
    /// An EventBridge event; `decoded` names the contract it passed (or `error` says why
    /// not).
    Event {
        id: String,
        source: String,
        detail_type: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        decoded: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        detail: Value,
    },
    /// A job handed to a simulation worker; the task token is redacted.
    SimulationTask {
        job_id: String,
        model: String,
        params: Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        requested_by: Option<String>,
        task_token: String,
    },
    Json {
        value: Value,
    },
    Text {
        text: String,
    },
}

/// A dead message, decoded.
#[derive(Debug, Clone, Serialize)]
pub struct DeadMessage {
    pub message_id: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub sent_at: Option<OffsetDateTime>,
    /// When it failed for good: the worker's `fleet.failed-at`, SNS's timestamp for a
    /// Lambda failure, else when it was sent to the DLQ.
    #[serde(with = "time::serde::rfc3339::option")]
    pub first_failed_at: Option<OffsetDateTime>,
    /// Receives on the source queue when the worker recorded them (`fleet.receive-count`),
    /// else SQS's `ApproximateReceiveCount` (which counts peeks at the DLQ too).
    pub receive_count: Option<u64>,
    pub reason: Reason,
    pub correlation_id: Option<String>,
    pub body: Body,
}

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

/// Peeks keep messages invisible this long; a crash leaves them hidden no longer.
const PEEK_VISIBILITY: i32 = 30;
/// `dlq ls` peeks at most this many messages per queue for the oldest age.
const AGE_SAMPLE: usize = 50;

/// Runs `fleet dlq ...` for `stage` against the endpoint `sdk` names.
pub async fn run_dlq(
    stage: &Stage,
    sdk: &aws_config::SdkConfig,
    command: DlqCommand,
    json: bool,
) -> anyhow::Result<()> {
    let ops = Ops::for_stage(stage, sdk);
    match command {
        DlqCommand::Ls => {
            let statuses = list(&ops).await?;
            if json {
                print_json(&statuses)
            } else {
                print!("{}", ls_table(&statuses));
                Ok(())
            }
        }
        DlqCommand::Show { name, limit } => {
            let queue = resolve(&ops, &name).await?;
            let messages = show(&ops, &queue, limit).await?;
            if json {
                print_json(&messages)
            } else {
                print!("{}", show_text(&queue, &messages));
                Ok(())
            }
        }
        DlqCommand::Export {
            name,
            limit,
            unredacted,
        } => {
            let queue = resolve(&ops, &name).await?;
            let mut stdout = std::io::stdout().lock();
            export(&ops, &queue, limit, unredacted, &mut stdout).await
        }
        DlqCommand::Purge { name, yes } => {
            let queue = resolve(&ops, &name).await?;
            let url = queue_url(&ops, &queue.name).await?;
            let depth = depth(&ops, &url).await?;
            if !yes {
                confirm_purge(&queue.name, depth.0 + depth.1)?;
            }
            purge(&ops, &url, &queue.name).await?;
            if json {
                print_json(&serde_json::json!({"queue": queue.name, "purged": depth.0 + depth.1}))
            } else {
                println!("purged {} ({} messages)", queue.name, depth.0 + depth.1);
                Ok(())
            }
        }
        DlqCommand::Redrive(args) => {
            let queue = resolve(&ops, &args.name).await?;
            let options = RedriveOptions::from_args(&args)?;
            let report = redrive(&ops, &queue, &options).await?;
            if json {
                print_json(&report)?;
            } else {
                print!("{}", redrive_text(&report));
            }
            redrive_outcome(&report)
        }
    }
}

/// Every DLQ of the stage: the topology's, then rule-target DLQs found on the rules.
pub async fn dead_letter_queues(ops: &Ops) -> anyhow::Result<Vec<DeadLetterQueue>> {
    let names = &ops.names;
    let mut out: Vec<DeadLetterQueue> = Vec::new();
    for dead in ops.topology.dead_letters() {
        let (kind, sources) = match &dead.source {
            DeadLetterSource::Queue {
                name,
                max_receive_count,
            } => (
                DlqKind::SqsRedrive,
                vec![DlqSource::Queue {
                    name: names.queue(name),
                    max_receive_count: *max_receive_count,
                }],
            ),
            DeadLetterSource::Functions { functions, .. } => (
                DlqKind::LambdaFailures,
                functions
                    .iter()
                    .map(|f| DlqSource::Function {
                        name: names.function(f),
                    })
                    .collect(),
            ),
        };
        push_dlq(
            &mut out,
            dead.queue.clone(),
            kind,
            Some(dead.service.clone()),
            sources,
        );
    }
    // The failures topic's queues are DLQs even while no function names the topic yet
    // (the topology's `dead_letters` lists them only once one does).
    for topic in ops
        .topology
        .topics()
        .filter(|t| t.name == topology::FAILURES)
    {
        for queue in &topic.subscriptions {
            let service = ops
                .topology
                .resources()
                .find(|(_, r)| matches!(r, topology::Resource::Queue(q) if &q.name == queue))
                .map(|(s, _)| s.name.clone());
            push_dlq(
                &mut out,
                names.queue(queue),
                DlqKind::LambdaFailures,
                service,
                Vec::new(),
            );
        }
    }
    for (queue, source) in rule_target_dlqs(ops).await? {
        push_dlq(
            &mut out,
            queue,
            DlqKind::EventbridgeTarget,
            None,
            vec![source],
        );
    }
    Ok(out)
}

fn push_dlq(
    out: &mut Vec<DeadLetterQueue>,
    name: String,
    kind: DlqKind,
    service: Option<String>,
    sources: Vec<DlqSource>,
) {
    if let Some(existing) = out.iter_mut().find(|d| d.name == name) {
        for source in sources {
            if !existing.sources.contains(&source) {
                existing.sources.push(source);
            }
        }
        return;
    }
    out.push(DeadLetterQueue {
        name,
        kind,
        service,
        sources,
    });
}

/// The DLQs named by the `DeadLetterConfig` of targets of the stage's rules (on the
/// stage's bus, and the stage's rules on the default bus).
async fn rule_target_dlqs(ops: &Ops) -> anyhow::Result<Vec<(String, DlqSource)>> {
    let mut out = Vec::new();
    let prefix = ops.names.prefix();
    for (bus, name_prefix) in [
        (ops.names.bus(), None),
        ("default".to_owned(), Some(prefix.clone())),
    ] {
        let mut token = None;
        loop {
            let page = ops
                .events
                .list_rules()
                .event_bus_name(&bus)
                .set_name_prefix(name_prefix.clone())
                .set_next_token(token.take())
                .send()
                .await;
            let page = match page {
                Ok(page) => page,
                // A stage that was never deployed has no bus, and so no rule-target DLQs.
                Err(e) if e.code() == Some("ResourceNotFoundException") => break,
                Err(e) => return Err(aws_error("ListRules", format!("bus {bus}"), e)),
            };
            for rule in page.rules() {
                let Some(rule_name) = rule.name() else {
                    continue;
                };
                let targets = ops
                    .events
                    .list_targets_by_rule()
                    .rule(rule_name)
                    .event_bus_name(&bus)
                    .send()
                    .await
                    .map_err(|e| aws_error("ListTargetsByRule", format!("rule {rule_name}"), e))?;
                for target in targets.targets() {
                    let Some(arn) = target.dead_letter_config().and_then(|d| d.arn()) else {
                        continue;
                    };
                    let Some(queue) = arn
                        .strip_prefix("arn:")
                        .and_then(|_| arn.rsplit(':').next())
                    else {
                        continue;
                    };
                    out.push((
                        queue.to_owned(),
                        DlqSource::RuleTarget {
                            rule: rule_name.to_owned(),
                            target_id: target.id().to_owned(),
                            target_arn: target.arn().to_owned(),
                        },
                    ));
                }
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
    }
    Ok(out)
}

/// Finds a DLQ of the stage by its physical name or its name without the stage prefix.
pub async fn resolve(ops: &Ops, name: &str) -> anyhow::Result<DeadLetterQueue> {
    let all = dead_letter_queues(ops).await?;
    let prefix = format!("{}-", ops.names.prefix());
    let wanted = if name.starts_with(&prefix) {
        name.to_owned()
    } else {
        format!("{prefix}{name}")
    };
    match all.iter().find(|d| d.name == wanted || d.name == name) {
        Some(d) => Ok(d.clone()),
        None => Err(UsageError(format!(
            "{name} is not a dead-letter queue of stage {}; its DLQs are: {}",
            ops.stage(),
            all.iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into()),
    }
}

/// Every DLQ with its depth and the age of its oldest message.
pub async fn list(ops: &Ops) -> anyhow::Result<Vec<DlqStatus>> {
    let mut out = Vec::new();
    for queue in dead_letter_queues(ops).await? {
        let url = queue_url(ops, &queue.name).await?;
        let attributes = ops
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| aws_error("GetQueueAttributes", &queue.name, e))?;
        let attrs = attributes.attributes();
        let count = |name: QueueAttributeName| -> u64 {
            attrs
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let visible = count(QueueAttributeName::ApproximateNumberOfMessages);
        let in_flight = count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible);
        // Receiving from a queue with its own redrive policy counts towards moving its
        // messages on: such a queue is not peeked.
        let has_redrive = attrs.is_some_and(|a| a.contains_key(&QueueAttributeName::RedrivePolicy));
        let mut oldest_sent_at = None;
        if visible > 0 && !has_redrive {
            let sample = usize::try_from(visible)
                .unwrap_or(usize::MAX)
                .min(AGE_SAMPLE);
            let messages = peek(ops, &url, sample, PEEK_VISIBILITY).await?;
            oldest_sent_at = messages.iter().filter_map(sent_at).min();
        }
        let now = OffsetDateTime::now_utc();
        out.push(DlqStatus {
            queue,
            url,
            depth: visible + in_flight,
            visible,
            in_flight,
            oldest_age_seconds: oldest_sent_at.map(|t| between(t, now).as_secs()),
            oldest_sent_at,
        });
    }
    Ok(out)
}

/// Up to `limit` messages of the DLQ, decoded, left in the queue.
pub async fn show(
    ops: &Ops,
    queue: &DeadLetterQueue,
    limit: usize,
) -> anyhow::Result<Vec<DeadMessage>> {
    let url = queue_url(ops, &queue.name).await?;
    let (visible, _) = depth(ops, &url).await?;
    let wanted = limit.min(usize::try_from(visible).unwrap_or(usize::MAX));
    let messages = peek(ops, &url, wanted, PEEK_VISIBILITY).await?;
    Ok(messages.iter().map(|m| describe(queue, m)).collect())
}

/// Writes every message (or `limit`) as one JSON line each: the decoded view plus the
/// raw `body` and `attributes`, left in the queue.
pub async fn export(
    ops: &Ops,
    queue: &DeadLetterQueue,
    limit: Option<usize>,
    unredacted: bool,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let url = queue_url(ops, &queue.name).await?;
    let (visible, _) = depth(ops, &url).await?;
    let visible = usize::try_from(visible).unwrap_or(usize::MAX);
    let wanted = limit.map_or(visible, |l| l.min(visible));
    // Long enough to list a deep queue without seeing the first messages again.
    let visibility =
        PEEK_VISIBILITY.max(i32::try_from(wanted / 10).unwrap_or(i32::MAX).min(43_200));
    let messages = peek(ops, &url, wanted, visibility).await?;
    for message in &messages {
        let mut line = serde_json::to_value(describe(queue, message))?;
        let raw = message.body().unwrap_or_default();
        let body = if unredacted {
            raw.to_owned()
        } else {
            redact_tokens(raw)
        };
        let attributes: BTreeMap<&str, Option<&str>> = message
            .message_attributes()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| (k.as_str(), v.string_value()))
                    .collect()
            })
            .unwrap_or_default();
        if let Value::Object(map) = &mut line {
            map.insert("raw_body".to_owned(), Value::String(body));
            map.insert("attributes".to_owned(), serde_json::to_value(attributes)?);
        }
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

/// Deletes every message of the DLQ.
pub async fn purge(ops: &Ops, url: &str, name: &str) -> anyhow::Result<()> {
    ops.sqs
        .purge_queue()
        .queue_url(url)
        .send()
        .await
        .map_err(|e| aws_error("PurgeQueue", name, e))?;
    Ok(())
}

fn confirm_purge(name: &str, depth: u64) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(UsageError(format!(
            "purging {name} deletes its {depth} messages for good; pass --yes to confirm (no terminal to ask on)"
        ))
        .into());
    }
    eprint!("Delete all {depth} messages of {name} for good? Type the queue name to confirm: ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if answer.trim() != name {
        return Err(UsageError("not confirmed; nothing was purged".to_owned()).into());
    }
    Ok(())
}

/// How to redrive.
#[derive(Debug, Clone, Default)]
pub struct RedriveOptions {
    pub filter: Option<Filter>,
    pub max: Option<usize>,
    /// Messages per second.
    pub rate: Option<f64>,
    pub dry_run: bool,
    /// For Lambda failures: the function (logical or physical name).
    pub function: Option<String>,
    /// Draw a progress bar on stderr (when it is a terminal).
    pub progress: bool,
}

/// `--filter`: an event pattern, or a substring of the body.
#[derive(Debug, Clone)]
pub enum Filter {
    Pattern(Pattern),
    Substring(String),
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, UsageError> {
        if text.trim_start().starts_with('{') {
            Pattern::parse(text)
                .map(Filter::Pattern)
                .map_err(|e| UsageError(format!("--filter: {e}")))
        } else {
            Ok(Filter::Substring(text.to_owned()))
        }
    }
}

impl RedriveOptions {
    fn from_args(args: &RedriveArgs) -> Result<RedriveOptions, UsageError> {
        if let Some(rate) = args.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(UsageError(format!(
                "--rate {rate}: give a positive number of messages per second"
            )));
        }
        Ok(RedriveOptions {
            filter: args.filter.as_deref().map(Filter::parse).transpose()?,
            max: args.max,
            rate: args.rate,
            dry_run: args.dry_run,
            function: args.function.clone(),
            progress: true,
        })
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

/// Sends messages back to where they failed; see [`DlqCommand::Redrive`].
pub async fn redrive(
    ops: &Ops,
    queue: &DeadLetterQueue,
    options: &RedriveOptions,
) -> anyhow::Result<RedriveReport> {
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
    let bar = progress_bar(options.progress && !options.dry_run, expected, &queue.name);
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
        &bar,
    )
    .await;
    bar.finish_and_clear();
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
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
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
                    error: format!("{e:#}"),
                    needs_function: false,
                });
                // The rest of the batch was received too: it is released with the held
                // ones rather than left invisible until its visibility timeout.
                held.extend(messages.filter_map(|m| m.receipt_handle().map(str::to_owned)));
                return Ok(());
            }
            report.redriven += 1;
            bar.inc(1);
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

/// The body to redrive: the original event inside the SNS envelope for Lambda failures,
/// the body itself otherwise.
fn original_body(kind: DlqKind, message: &Message) -> String {
    let body = message.body().unwrap_or_default();
    if kind == DlqKind::LambdaFailures
        && let Some(envelope) = sns_envelope(body)
        && let Some(inner) = envelope.get("Message").and_then(Value::as_str)
    {
        return inner.to_owned();
    }
    body.to_owned()
}

fn sns_envelope(body: &str) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_str::<Value>(body).ok()? {
        Value::Object(map) if map.get("Type").and_then(Value::as_str) == Some("Notification") => {
            Some(map)
        }
        _ => None,
    }
}

fn filter_matches(filter: &Filter, original: &str, message: &Message) -> bool {
    match filter {
        Filter::Substring(s) => {
            original.contains(s.as_str()) || message.body().unwrap_or_default().contains(s.as_str())
        }
        Filter::Pattern(p) => serde_json::from_str::<Value>(original).is_ok_and(|v| p.matches(&v)),
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
        .map_err(|e| DestinationError::plain(format!("{:#}", aws_error("GetQueueUrl", name, e))))?
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
) -> anyhow::Result<()> {
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
                    let error = aws_error("Invoke", format!("function {name}"), e);
                    if local {
                        // The usual cause locally: Lambda calls went to the emulator,
                        // which runs no functions, or to no local host at all.
                        anyhow::anyhow!(
                            "{error:#} (locally, functions run in the local host: point AWS_ENDPOINT_URL_LAMBDA at its HTTP address, fleet dev's, http://127.0.0.1:8080 by default)"
                        )
                    } else {
                        error
                    }
                })?;
            if out.status_code() != 202 {
                anyhow::bail!(
                    "Invoke on function {name} answered status {} instead of 202 Accepted",
                    out.status_code()
                );
            }
        }
    }
    Ok(())
}

fn progress_bar(enabled: bool, length: u64, queue: &str) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(length),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {pos}/{len} ({per_sec}, {eta} left)",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(format!("redriving {queue}"));
    bar
}

fn redrive_outcome(report: &RedriveReport) -> anyhow::Result<()> {
    if report.failed.is_empty() {
        return Ok(());
    }
    let needs_function = report.failed.iter().all(|f| f.needs_function);
    let first = &report.failed[0];
    let message = format!(
        "{} message(s) could not be redriven and stay in {} (first: {}: {})",
        report.failed.len(),
        report.queue,
        first.message_id,
        first.error
    );
    if needs_function {
        Err(UsageError(message).into())
    } else {
        Err(anyhow::anyhow!(message))
    }
}

/// Receives up to `limit` distinct messages with every attribute, then makes them visible
/// again, even when a call fails midway.
pub async fn peek(
    ops: &Ops,
    url: &str,
    limit: usize,
    visibility: i32,
) -> anyhow::Result<Vec<Message>> {
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
        anyhow::Ok(())
    }
    .await;
    release(ops, url, &receipts).await;
    result.map(|()| out)
}

async fn receive(
    ops: &Ops,
    url: &str,
    max: usize,
    visibility: i32,
    wait: i32,
) -> anyhow::Result<Vec<Message>> {
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
async fn release(ops: &Ops, url: &str, receipts: &[String]) {
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

async fn queue_url(ops: &Ops, name: &str) -> anyhow::Result<String> {
    match ops.sqs.get_queue_url().queue_name(name).send().await {
        Ok(out) => Ok(out.queue_url.unwrap_or_default()),
        Err(e)
            if e.code().is_some_and(|c| {
                c.contains("NonExistentQueue") || c.contains("QueueDoesNotExist")
            }) =>
        {
            Err(anyhow::anyhow!(
                "the queue {name} does not exist at this endpoint: is stage {} deployed (`fleet --stage {} infra deploy`)?",
                ops.stage(),
                ops.stage()
            ))
        }
        Err(e) => Err(aws_error("GetQueueUrl", name, e)),
    }
}

/// (visible, in flight)
async fn depth(ops: &Ops, url: &str) -> anyhow::Result<(u64, u64)> {
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

fn sent_at(message: &Message) -> Option<OffsetDateTime> {
    message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
        .and_then(|v| super::from_epoch_millis(v))
}

fn message_attribute(message: &Message, name: &str) -> Option<String> {
    message
        .message_attributes()
        .and_then(|a| a.get(name))
        .and_then(|v| v.string_value())
        .map(str::to_owned)
}

/// Decodes one message of `queue`.
pub fn describe(queue: &DeadLetterQueue, message: &Message) -> DeadMessage {
    let body_text = message.body().unwrap_or_default();
    let sent = sent_at(message);
    let sqs_receives = message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|v| v.parse::<u64>().ok());
    let envelope = (queue.kind == DlqKind::LambdaFailures)
        .then(|| sns_envelope(body_text))
        .flatten();
    let (reason, failed_at, receives, inner) = match envelope {
        Some(envelope) => {
            let attribute = |name: &str| {
                envelope
                    .get("MessageAttributes")
                    .and_then(|a| a.get(name))
                    .and_then(|a| a.get("Value"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            let reason = Reason::Lambda {
                request_id: attribute("RequestID"),
                error_code: attribute("ErrorCode"),
                error_message: attribute("ErrorMessage"),
            };
            let failed_at = envelope
                .get("Timestamp")
                .and_then(Value::as_str)
                .and_then(|t| {
                    OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
                });
            let inner = envelope
                .get("Message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            // Lambda does not record how many attempts it made.
            (reason, failed_at.or(sent), None, inner)
        }
        None => {
            let worker_error = message_attribute(message, sqs_worker::attributes::ERROR);
            let target_error = message_attribute(message, "ERROR_CODE");
            let reason = if worker_error.is_some()
                || message_attribute(message, sqs_worker::attributes::REASON).is_some()
            {
                Reason::Worker {
                    error: worker_error,
                    reason: message_attribute(message, sqs_worker::attributes::REASON),
                    source_queue: message_attribute(message, sqs_worker::attributes::SOURCE_QUEUE),
                    worker: message_attribute(message, sqs_worker::attributes::WORKER),
                }
            } else if target_error.is_some() || queue.kind == DlqKind::EventbridgeTarget {
                Reason::EventbridgeTarget {
                    error_code: target_error,
                    error_message: message_attribute(message, "ERROR_MESSAGE"),
                    rule_arn: message_attribute(message, "RULE_ARN"),
                    target_arn: message_attribute(message, "TARGET_ARN"),
                }
            } else {
                Reason::MaxReceives {
                    max_receive_count: queue.sources.iter().find_map(|s| match s {
                        DlqSource::Queue {
                            max_receive_count, ..
                        } => Some(*max_receive_count),
                        _ => None,
                    }),
                }
            };
            let failed_at =
                message_attribute(message, sqs_worker::attributes::FAILED_AT).and_then(|t| {
                    OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).ok()
                });
            let receives = message_attribute(message, sqs_worker::attributes::RECEIVE_COUNT)
                .and_then(|n| n.parse().ok())
                .or(sqs_receives);
            (reason, failed_at.or(sent), receives, body_text.to_owned())
        }
    };
    let (body, correlation_id) = decode_body(&inner);
    DeadMessage {
        message_id: message.message_id().unwrap_or_default().to_owned(),
        sent_at: sent,
        first_failed_at: failed_at,
        receive_count: receives,
        reason,
        correlation_id,
        body,
    }
}

/// Decodes a body: an event (checked against the job contracts), a simulation task, any
/// JSON, or text. Returns it with its correlation id.
pub fn decode_body(text: &str) -> (Body, Option<String>) {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return (
            Body::Text {
                text: text.to_owned(),
            },
            None,
        );
    };
    if value.get("detail-type").is_some()
        && let Ok(event) = BusEvent::from_json(text)
    {
        let meta_correlation = event
            .detail
            .get("meta")
            .and_then(|m| m.get("correlationId"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let (decoded, error, correlation) = if event.source == contracts::jobs::SOURCE {
            match JobEvent::decode(&event.detail_type, &event.detail, &event.received()) {
                Ok(envelope) => (
                    Some(format!(
                        "{} v{}",
                        event.detail_type, envelope.meta.schema_version
                    )),
                    None,
                    Some(envelope.meta.correlation_id),
                ),
                Err(e) => (None, Some(e.to_string()), meta_correlation),
            }
        } else {
            (None, None, meta_correlation)
        };
        let correlation = correlation.or_else(|| {
            event
                .detail
                .get("jobId")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        return (
            Body::Event {
                id: event.id,
                source: event.source,
                detail_type: event.detail_type,
                decoded,
                error,
                detail: event.detail,
            },
            correlation,
        );
    }
    if value.get("taskToken").is_some()
        && let Ok(task) = SimulationTask::from_body(text)
    {
        let job_id = task.job_id.to_string();
        return (
            Body::SimulationTask {
                job_id: job_id.clone(),
                model: task.model,
                params: Value::Object(task.params),
                requested_by: task.requested_by,
                task_token: redact(&task.task_token),
            },
            Some(job_id),
        );
    }
    let correlation = value
        .get("jobId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    (Body::Json { value }, correlation)
}

/// The body with every `taskToken` string (at any depth, in nested JSON strings too, as
/// in an SNS envelope) redacted.
pub fn redact_tokens(text: &str) -> String {
    fn walk(value: &mut Value) -> bool {
        let mut changed = false;
        match value {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if k == "taskToken"
                        && let Value::String(s) = v
                    {
                        *s = redact(s);
                        changed = true;
                    } else if let Value::String(s) = v
                        && let Ok(mut inner) = serde_json::from_str::<Value>(s)
                        && inner.is_object()
                        && walk(&mut inner)
                    {
                        *s = inner.to_string();
                        changed = true;
                    } else {
                        changed |= walk(v);
                    }
                }
            }
            Value::Array(items) => {
                for v in items {
                    changed |= walk(v);
                }
            }
            _ => {}
        }
        changed
    }
    let Ok(mut value) = serde_json::from_str::<Value>(text) else {
        return text.to_owned();
    };
    if walk(&mut value) {
        value.to_string()
    } else {
        text.to_owned()
    }
}

fn ls_table(statuses: &[DlqStatus]) -> String {
    let mut table = Table::new(&["name", "kind", "depth", "oldest", "sources"]).unlimited(4);
    for s in statuses {
        let oldest = s
            .oldest_age_seconds
            .map(|a| human_duration(Duration::from_secs(a)))
            .unwrap_or_else(|| "-".to_owned());
        let sources = if s.queue.sources.is_empty() {
            "-".to_owned()
        } else {
            s.queue
                .sources
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        table.row(vec![
            s.queue.name.clone(),
            s.queue.kind.as_str().to_owned(),
            s.depth.to_string(),
            oldest,
            sources,
        ]);
    }
    table.to_string()
}

fn show_text(queue: &DeadLetterQueue, messages: &[DeadMessage]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if messages.is_empty() {
        let _ = writeln!(
            out,
            "{} ({}) has no visible messages",
            queue.name,
            queue.kind.as_str()
        );
        return out;
    }
    let _ = writeln!(
        out,
        "{} ({}): {} message(s), left in the queue\n",
        queue.name,
        queue.kind.as_str(),
        messages.len()
    );
    for m in messages {
        let _ = writeln!(out, "message {}", m.message_id);
        let _ = writeln!(out, "  failed at:   {}", human_time_opt(m.first_failed_at));
        let _ = writeln!(
            out,
            "  receives:    {}",
            m.receive_count
                .map_or_else(|| "-".to_owned(), |n| n.to_string())
        );
        let _ = writeln!(out, "  reason:      {}", m.reason);
        if let Reason::Worker {
            source_queue: Some(q),
            ..
        } = &m.reason
        {
            let _ = writeln!(out, "  from:        {q}");
        }
        let _ = writeln!(
            out,
            "  correlation: {}",
            m.correlation_id.as_deref().unwrap_or("-")
        );
        let body = match &m.body {
            Body::Event {
                source,
                detail_type,
                decoded,
                error,
                detail,
                ..
            } => {
                let status = match (decoded, error) {
                    (Some(d), _) => format!(" [{d}]"),
                    (None, Some(e)) => format!(" [does not decode: {e}]"),
                    _ => String::new(),
                };
                format!("event {source} {detail_type}{status} {detail}")
            }
            Body::SimulationTask {
                job_id,
                model,
                params,
                task_token,
                ..
            } => format!(
                "simulation task job {job_id}, model {model}, params {params}, token {task_token}"
            ),
            Body::Json { value } => value.to_string(),
            Body::Text { text } => text.clone(),
        };
        let _ = writeln!(out, "  body:        {}\n", super::table::cut(&body, 400));
    }
    out
}

fn redrive_text(report: &RedriveReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let verb = if report.dry_run {
        "would redrive"
    } else {
        "redrove"
    };
    let _ = writeln!(
        out,
        "{verb} {} message(s) from {}",
        report.redriven, report.queue
    );
    for (destination, count) in &report.destinations {
        let _ = writeln!(out, "  {count} to {destination}");
    }
    if report.skipped > 0 {
        let _ = writeln!(
            out,
            "  {} left in place: did not match --filter",
            report.skipped
        );
    }
    if report.arrived_later > 0 {
        let _ = writeln!(
            out,
            "  {} left in place: arrived after the redrive started",
            report.arrived_later
        );
    }
    if report.not_deleted > 0 {
        let _ = writeln!(
            out,
            "  {} copied but not deleted here: they will be redriven again (handlers are idempotent)",
            report.not_deleted
        );
    }
    for failure in &report.failed {
        let _ = writeln!(out, "  failed {}: {}", failure.message_id, failure.error);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn task_tokens_are_redacted_even_inside_an_sns_envelope() {
        let task = json!({"taskToken": "774a59e0-f515-4401-876b-def622c6b40a", "jobId": "j-1"});
        let redacted = redact_tokens(&task.to_string());
        assert!(!redacted.contains("f515-4401"), "{redacted}");
        assert!(redacted.contains("774a59e0…(36 chars)"), "{redacted}");
        let envelope = json!({"Type": "Notification", "Message": task.to_string()});
        let redacted = redact_tokens(&envelope.to_string());
        assert!(!redacted.contains("f515-4401"), "{redacted}");
        assert_eq!(redact_tokens("not json taskToken"), "not json taskToken");
    }

    #[test]
    fn bodies_decode_as_job_events_tasks_json_or_text() {
        let event = json!({
            "id": "e-1", "source": "fleet.jobs", "detail-type": "JobRequested",
            "detail": {"model": "sir", "params": {}, "jobId": "job-7",
                "meta": {"eventId": "e-1", "schemaVersion": 1, "occurredAt": "2026-01-01T00:00:00Z",
                         "producer": "jobs-api", "correlationId": "job-7"}}
        });
        let (body, correlation) = decode_body(&event.to_string());
        assert!(
            matches!(body, Body::Event { decoded: Some(ref d), .. } if d == "JobRequested v1"),
            "{body:?}"
        );
        assert_eq!(correlation.as_deref(), Some("job-7"));

        let bad = json!({"id": "e-2", "source": "fleet.jobs", "detail-type": "JobProgress",
            "detail": {"jobId": "job-8", "progress": 7}});
        let (body, correlation) = decode_body(&bad.to_string());
        assert!(
            matches!(body, Body::Event { error: Some(_), .. }),
            "{body:?}"
        );
        assert_eq!(correlation.as_deref(), Some("job-8"));

        let task = json!({"taskToken": "secret-token-value", "jobId": "job-9", "model": "sir", "params": {"beta": 1}});
        let (body, correlation) = decode_body(&task.to_string());
        let Body::SimulationTask { task_token, .. } = &body else {
            panic!("{body:?}")
        };
        assert_eq!(task_token, "secret-t…(18 chars)");
        assert_eq!(correlation.as_deref(), Some("job-9"));

        assert!(matches!(decode_body("[1]").0, Body::Json { .. }));
        assert!(matches!(decode_body("plain").0, Body::Text { .. }));
    }
}
