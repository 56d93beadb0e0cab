//! SNS topics and their queue subscriptions.

use topology::ResourceKind;

use super::{DeployError, Deployer, Outcome, sdk_error};

impl Deployer<'_> {
    pub(super) async fn topic(&mut self, name: &str) -> Result<(), DeployError> {
        let kind = ResourceKind::Topic;
        let physical = self.names.topic(name);
        let mut existing = None;
        let mut pages = self.sns.list_topics().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(sdk_error(kind, &physical, "ListTopics"))?;
            existing = page
                .topics()
                .iter()
                .filter_map(|t| t.topic_arn())
                .find(|arn| arn.rsplit(':').next() == Some(physical.as_str()))
                .map(str::to_owned);
            if existing.is_some() {
                break;
            }
        }
        let (arn, outcome) = match existing {
            Some(arn) => (arn, Outcome::Unchanged),
            None => {
                let out = self
                    .sns
                    .create_topic()
                    .name(&physical)
                    .send()
                    .await
                    .map_err(sdk_error(kind, &physical, "CreateTopic"))?;
                (
                    out.topic_arn().unwrap_or_default().to_owned(),
                    Outcome::Created,
                )
            }
        };
        self.record(kind, name, &physical, Some(arn), None, outcome);
        Ok(())
    }

    pub(super) async fn subscription(
        &mut self,
        topic: &str,
        queue: &str,
    ) -> Result<(), DeployError> {
        let kind = ResourceKind::Subscription;
        let physical = format!("{} -> {}", self.names.topic(topic), self.names.queue(queue));
        let (Some(topic_arn), Some(queue_arn)) =
            (self.report.topic_arn(topic), self.report.queue_arn(queue))
        else {
            unreachable!("topic {topic} and queue {queue} were deployed before their subscription");
        };
        let (topic_arn, queue_arn) = (topic_arn.to_owned(), queue_arn.to_owned());
        let existing = self
            .find_subscription(&physical, &topic_arn, &queue_arn)
            .await?;
        // Raw delivery stays off so the SNS envelope (and Lambda's error attributes) survive.
        let (arn, outcome) = match existing {
            Some(arn) => {
                let out = self
                    .sns
                    .get_subscription_attributes()
                    .subscription_arn(&arn)
                    .send()
                    .await
                    .map_err(sdk_error(kind, &physical, "GetSubscriptionAttributes"))?;
                let raw = out
                    .attributes()
                    .and_then(|a| a.get("RawMessageDelivery"))
                    .is_some_and(|v| v == "true");
                if raw {
                    self.sns
                        .set_subscription_attributes()
                        .subscription_arn(&arn)
                        .attribute_name("RawMessageDelivery")
                        .attribute_value("false")
                        .send()
                        .await
                        .map_err(sdk_error(kind, &physical, "SetSubscriptionAttributes"))?;
                    (arn, Outcome::Updated)
                } else {
                    (arn, Outcome::Unchanged)
                }
            }
            None => {
                let out = self
                    .sns
                    .subscribe()
                    .topic_arn(&topic_arn)
                    .protocol("sqs")
                    .endpoint(&queue_arn)
                    .attributes("RawMessageDelivery", "false")
                    .return_subscription_arn(true)
                    .send()
                    .await
                    .map_err(sdk_error(kind, &physical, "Subscribe"))?;
                (
                    out.subscription_arn().unwrap_or_default().to_owned(),
                    Outcome::Created,
                )
            }
        };
        self.record(
            kind,
            &format!("{topic}/{queue}"),
            &physical,
            Some(arn),
            None,
            outcome,
        );
        Ok(())
    }

    /// The ARN of the topic's SQS subscription for the queue, if it has one.
    async fn find_subscription(
        &self,
        physical: &str,
        topic_arn: &str,
        queue_arn: &str,
    ) -> Result<Option<String>, DeployError> {
        let kind = ResourceKind::Subscription;
        let mut existing = None;
        let mut pages = self
            .sns
            .list_subscriptions_by_topic()
            .topic_arn(topic_arn)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(sdk_error(kind, physical, "ListSubscriptionsByTopic"))?;
            existing = page
                .subscriptions()
                .iter()
                .find(|s| s.protocol() == Some("sqs") && s.endpoint() == Some(queue_arn))
                .and_then(|s| s.subscription_arn())
                .map(str::to_owned);
            if existing.is_some() {
                break;
            }
        }
        Ok(existing)
    }
}
