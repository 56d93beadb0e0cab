//! SNS topics and their queue subscriptions.

use serde_json::json;

use topology::{RefKind, Resource, Topic, camel};

use super::Synth;
use super::values::{Attr, Kind};

impl<'a> Synth<'a> {
    pub(super) fn topic(&mut self, at: usize, t: &Topic) {
        self.exported(at, Kind::Topic, &t.name);
        self.stacks[at].resource(
            Kind::Topic.logical_id(&t.name),
            "AWS::SNS::Topic",
            json!({ "TopicName": self.names.topic(&t.name) }),
        );
    }

    /// SNS→SQS subscriptions, each in the later of the topic's and the queue's stacks.
    pub(super) fn subscriptions(&mut self) {
        for (topic_owner, topic) in self.topics() {
            for queue in &topic.subscriptions {
                let at = topic_owner.max(self.owner(RefKind::Queue, queue));
                let props = json!({
                    "TopicArn": self.topic_arn(at, &topic.name),
                    "Protocol": "sqs",
                    "Endpoint": self.queue_attr(at, queue, Attr::Arn),
                    // Off, so the SNS envelope and its MessageAttributes (Lambda's
                    // RequestID, ErrorCode, ErrorMessage) reach the queue.
                    "RawMessageDelivery": false,
                });
                self.stacks[at].resource(
                    format!("{}Topic{}Subscription", camel(&topic.name), camel(queue)),
                    "AWS::SNS::Subscription",
                    props,
                );
            }
        }
    }

    pub(super) fn topics(&self) -> Vec<(usize, &'a Topic)> {
        self.topology
            .services
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                s.resources.iter().filter_map(move |r| match r {
                    Resource::Topic(t) => Some((i, t)),
                    _ => None,
                })
            })
            .collect()
    }
}
