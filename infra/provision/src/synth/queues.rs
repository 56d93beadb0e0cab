//! Queues, their dead-letter queues (with an alarm each) and their queue policies.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use topology::{Queue, RefKind, Target};

use super::rules::rule_arn_pattern;
use super::values::{Attr, Kind};
use super::{POLICY_VERSION, Synth};

impl Synth<'_> {
    pub(super) fn queue(&mut self, at: usize, q: &Queue) {
        let mut props = json!({
            "QueueName": self.names.queue(&q.name),
            "VisibilityTimeout": q.visibility_timeout.as_secs(),
            "MessageRetentionPeriod": q.retention.as_secs(),
        });
        if let Some(dlq) = q.dlq {
            let dlq_id = Kind::Dlq.logical_id(&q.name);
            self.stacks[at].resource(
                dlq_id.clone(),
                "AWS::SQS::Queue",
                json!({
                    "QueueName": self.names.dlq(&q.name),
                    "MessageRetentionPeriod": Queue::DLQ_RETENTION.as_secs(),
                }),
            );
            self.exported(at, Kind::Dlq, &q.name);
            props["RedrivePolicy"] = json!({
                "deadLetterTargetArn": Kind::Dlq.local(&dlq_id, Attr::Arn),
                "maxReceiveCount": dlq.max_receive_count,
            });
            self.stacks[at].resource(
                format!("{dlq_id}Alarm"),
                "AWS::CloudWatch::Alarm",
                json!({
                    "AlarmName": format!("{}-not-empty", self.names.dlq(&q.name)),
                    "AlarmDescription": format!(
                        "Messages of {} failed {} times and wait in its dead-letter queue.",
                        self.names.queue(&q.name),
                        dlq.max_receive_count
                    ),
                    "Namespace": "AWS/SQS",
                    "MetricName": "ApproximateNumberOfMessagesVisible",
                    "Dimensions": [
                        { "Name": "QueueName", "Value": Kind::Dlq.local(&dlq_id, Attr::Name) }
                    ],
                    "Statistic": "Maximum",
                    "Period": 60,
                    "EvaluationPeriods": 1,
                    "Threshold": 0,
                    "ComparisonOperator": "GreaterThanThreshold",
                    "TreatMissingData": "notBreaching",
                }),
            );
        }
        self.stacks[at].resource(Kind::Queue.logical_id(&q.name), "AWS::SQS::Queue", props);
        self.exported(at, Kind::Queue, &q.name);
    }

    /// One policy per queue, in the queue's stack, allowing every topic and rule that
    /// sends to it. SQS keeps one policy per queue, so these cannot be split.
    pub(super) fn queue_policies(&mut self) {
        let mut senders: BTreeMap<String, Vec<(&str, Value)>> = BTreeMap::new();
        for (_, topic) in self.topics() {
            for queue in &topic.subscriptions {
                let arn = format!(
                    "arn:${{AWS::Partition}}:sns:${{AWS::Region}}:${{AWS::AccountId}}:{}",
                    self.names.topic(&topic.name)
                );
                senders
                    .entry(queue.clone())
                    .or_default()
                    .push(("sns.amazonaws.com", json!({ "Fn::Sub": arn })));
            }
        }
        for rule in self.topology.rules() {
            for target in &rule.targets {
                if let Target::Queue(queue) = target {
                    let arn = rule_arn_pattern(&self.names, rule);
                    senders
                        .entry(queue.clone())
                        .or_default()
                        .push(("events.amazonaws.com", json!({ "Fn::Sub": arn })));
                }
            }
        }
        for (queue, senders) in senders {
            let at = self.owner(RefKind::Queue, &queue);
            let id = Kind::Queue.logical_id(&queue);
            let statements: Vec<Value> = senders
                .into_iter()
                .map(|(principal, source)| {
                    json!({
                        "Effect": "Allow",
                        "Principal": { "Service": principal },
                        "Action": "sqs:SendMessage",
                        "Resource": Kind::Queue.local(&id, Attr::Arn),
                        "Condition": { "ArnEquals": { "aws:SourceArn": source } },
                    })
                })
                .collect();
            self.stacks[at].resource(
                format!("{id}Policy"),
                "AWS::SQS::QueuePolicy",
                json!({
                    "Queues": [ Kind::Queue.local(&id, Attr::Url) ],
                    "PolicyDocument": { "Version": POLICY_VERSION, "Statement": statements },
                }),
            );
        }
    }
}
