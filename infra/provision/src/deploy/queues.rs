//! SQS queues, their dead-letter queues and redrive policies, and their queue policies.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};

use topology::{Queue, ResourceKind, Target};

use super::{DeployError, Deployer, NOT_FOUND, Outcome, is_not_found, sdk_error};

impl Deployer<'_> {
    pub(super) async fn queue(&mut self, q: &Queue) -> Result<(), DeployError> {
        let mut desired = vec![
            (
                QueueAttributeName::VisibilityTimeout,
                q.visibility_timeout.as_secs().to_string(),
            ),
            (
                QueueAttributeName::MessageRetentionPeriod,
                q.retention.as_secs().to_string(),
            ),
        ];
        if let Some(dlq) = q.dlq {
            let physical = self.names.dlq(&q.name);
            let retention = Queue::DLQ_RETENTION.as_secs().to_string();
            let dlq_attrs = vec![(QueueAttributeName::MessageRetentionPeriod, retention)];
            let (_, arn) = self
                .ensure_queue(
                    ResourceKind::DeadLetterQueue,
                    &q.name,
                    &physical,
                    dlq_attrs,
                    false,
                )
                .await?;
            let redrive =
                json!({ "deadLetterTargetArn": arn, "maxReceiveCount": dlq.max_receive_count });
            desired.push((QueueAttributeName::RedrivePolicy, redrive.to_string()));
        }
        let physical = self.names.queue(&q.name);
        self.ensure_queue(ResourceKind::Queue, &q.name, &physical, desired, true)
            .await?;
        Ok(())
    }

    /// Creates the queue or aligns its attributes; returns its URL and ARN.
    /// `manage_redrive` removes a redrive policy the topology no longer asks for.
    async fn ensure_queue(
        &mut self,
        kind: ResourceKind,
        name: &str,
        physical: &str,
        desired: Vec<(QueueAttributeName, String)>,
        manage_redrive: bool,
    ) -> Result<(String, String), DeployError> {
        let (url, outcome) = match self.sqs.get_queue_url().queue_name(physical).send().await {
            Ok(out) => {
                let url = out.queue_url().unwrap_or_default().to_owned();
                let have = self.queue_attributes(kind, physical, &url).await?;
                let mut changes: HashMap<QueueAttributeName, String> = desired
                    .iter()
                    .filter(|(attr, want)| !same_attribute(attr, want, have.get(attr)))
                    .cloned()
                    .collect();
                let wants_redrive = desired
                    .iter()
                    .any(|(a, _)| *a == QueueAttributeName::RedrivePolicy);
                if manage_redrive
                    && !wants_redrive
                    && have
                        .get(&QueueAttributeName::RedrivePolicy)
                        .is_some_and(|p| !p.is_empty())
                {
                    changes.insert(QueueAttributeName::RedrivePolicy, String::new());
                }
                if changes.is_empty() {
                    (url, Outcome::Unchanged)
                } else {
                    self.sqs
                        .set_queue_attributes()
                        .queue_url(&url)
                        .set_attributes(Some(changes))
                        .send()
                        .await
                        .map_err(sdk_error(kind, physical, "SetQueueAttributes"))?;
                    (url, Outcome::Updated)
                }
            }
            Err(e) if is_not_found(&e, NOT_FOUND) => {
                let out = self
                    .sqs
                    .create_queue()
                    .queue_name(physical)
                    .set_attributes(Some(desired.into_iter().collect()))
                    .send()
                    .await
                    .map_err(sdk_error(kind, physical, "CreateQueue"))?;
                (
                    out.queue_url().unwrap_or_default().to_owned(),
                    Outcome::Created,
                )
            }
            Err(e) => return Err(sdk_error(kind, physical, "GetQueueUrl")(e)),
        };
        let arn = self
            .queue_attributes(kind, physical, &url)
            .await?
            .remove(&QueueAttributeName::QueueArn)
            .unwrap_or_default();
        self.record(
            kind,
            name,
            physical,
            Some(arn.clone()),
            Some(url.clone()),
            outcome,
        );
        Ok((url, arn))
    }

    async fn queue_attributes(
        &self,
        kind: ResourceKind,
        physical: &str,
        url: &str,
    ) -> Result<HashMap<QueueAttributeName, String>, DeployError> {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .map_err(sdk_error(kind, physical, "GetQueueAttributes"))?;
        Ok(out.attributes().cloned().unwrap_or_default())
    }

    /// One policy per queue allowing its topics and rules to send, as CloudFormation does.
    pub(super) async fn queue_policies(&mut self) -> Result<(), DeployError> {
        let kind = ResourceKind::QueuePolicy;
        let mut senders: BTreeMap<&str, Vec<(&str, String)>> = BTreeMap::new();
        for topic in self.topology.topics() {
            let arn = self.report.topic_arn(&topic.name).unwrap_or_default();
            for queue in &topic.subscriptions {
                senders
                    .entry(queue)
                    .or_default()
                    .push(("sns.amazonaws.com", arn.to_owned()));
            }
        }
        for rule in self.topology.rules() {
            let arn = self.report.rule_arn(&rule.name).unwrap_or_default();
            for target in &rule.targets {
                if let Target::Queue(queue) = target {
                    senders
                        .entry(queue)
                        .or_default()
                        .push(("events.amazonaws.com", arn.to_owned()));
                }
            }
        }
        for (queue, senders) in senders {
            let physical = self.names.queue(queue);
            let (Some(url), Some(arn)) =
                (self.report.queue_url(queue), self.report.queue_arn(queue))
            else {
                unreachable!("queue {queue} was deployed before its policy");
            };
            let (url, arn) = (url.to_owned(), arn.to_owned());
            let statements: Vec<Value> = senders
                .into_iter()
                .map(|(principal, source)| {
                    json!({
                        "Effect": "Allow",
                        "Principal": { "Service": principal },
                        "Action": "sqs:SendMessage",
                        "Resource": arn,
                        "Condition": { "ArnEquals": { "aws:SourceArn": source } },
                    })
                })
                .collect();
            let policy = json!({ "Version": "2012-10-17", "Statement": statements });
            let have = self
                .queue_attributes(kind, &physical, &url)
                .await?
                .remove(&QueueAttributeName::Policy)
                .filter(|p| !p.is_empty());
            let have: Option<Value> = have.and_then(|p| serde_json::from_str(&p).ok());
            let outcome = match have {
                Some(have) if have == policy => Outcome::Unchanged,
                Some(_) => Outcome::Updated,
                None => Outcome::Created,
            };
            if outcome != Outcome::Unchanged {
                self.sqs
                    .set_queue_attributes()
                    .queue_url(&url)
                    .attributes(QueueAttributeName::Policy, policy.to_string())
                    .send()
                    .await
                    .map_err(sdk_error(kind, &physical, "SetQueueAttributes"))?;
            }
            self.record(kind, queue, &physical, Some(arn), None, outcome);
        }
        Ok(())
    }
}

/// Whether a queue attribute already has the wanted value; redrive policies compare as
/// JSON, since SQS may answer `maxReceiveCount` as a string.
fn same_attribute(attr: &QueueAttributeName, want: &str, have: Option<&String>) -> bool {
    let Some(have) = have else {
        return false;
    };
    if *attr != QueueAttributeName::RedrivePolicy {
        return want == have;
    }
    let normalize = |text: &str| -> Option<(String, String)> {
        let v: Value = serde_json::from_str(text).ok()?;
        let arn = v.get("deadLetterTargetArn")?.as_str()?.to_owned();
        let count = match v.get("maxReceiveCount")? {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Some((arn, count))
    };
    normalize(want).is_some() && normalize(want) == normalize(have)
}
