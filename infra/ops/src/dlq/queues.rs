//! Which dead-letter queues the stage has (the topology's, and rule-target DLQs found on
//! the rules), finding one by name, and their depths.

use aws_sdk_sqs::types::QueueAttributeName;
use aws_smithy_types::error::metadata::ProvideErrorMetadata as _;
use time::OffsetDateTime;
use topology::DeadLetterSource;

use super::decode::sent_at;
use super::sqs::{peek, queue_url};
use super::{AGE_SAMPLE, DeadLetterQueue, DlqKind, DlqSource, DlqStatus, PEEK_VISIBILITY};
use crate::error::aws_error;
use crate::times::between;
use crate::{Ops, OpsError};

/// Every DLQ of the stage: the topology's, then rule-target DLQs found on the rules.
pub async fn dead_letter_queues(ops: &Ops) -> Result<Vec<DeadLetterQueue>, OpsError> {
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
async fn rule_target_dlqs(ops: &Ops) -> Result<Vec<(String, DlqSource)>, OpsError> {
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
pub async fn resolve(ops: &Ops, name: &str) -> Result<DeadLetterQueue, OpsError> {
    let all = dead_letter_queues(ops).await?;
    let prefix = format!("{}-", ops.names.prefix());
    let wanted = if name.starts_with(&prefix) {
        name.to_owned()
    } else {
        format!("{prefix}{name}")
    };
    match all.iter().find(|d| d.name == wanted || d.name == name) {
        Some(d) => Ok(d.clone()),
        None => Err(OpsError::Invalid(format!(
            "{name} is not a dead-letter queue of stage {}; its DLQs are: {}",
            ops.stage(),
            all.iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Every DLQ with its depth and the age of its oldest message.
pub async fn list(ops: &Ops) -> Result<Vec<DlqStatus>, OpsError> {
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
