//! Idempotent deployment through the AWS SDK, against whatever endpoint the `SdkConfig`
//! names (locally: the moto emulator).
//!
//! Each resource is looked up first and created only if missing, or updated only where it
//! differs, so a second run reports everything [`Outcome::Unchanged`]. Only what the
//! emulator can host is deployed: the bus, queues, topics and subscriptions, queue
//! policies, tables, buckets, state machines, rules and their queue and state machine
//! targets. ECS, IAM, Application Auto Scaling, CloudWatch alarms, Lambda and API Gateway
//! are CloudFormation-only; rule targets that are functions are listed in
//! [`DeployReport::lambda_targets`] for the local host instead of being created.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types as ddb;
use aws_sdk_sqs::error::SdkError; // The same type for every SDK crate.
use aws_sdk_sqs::types::QueueAttributeName;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde_json::{Value, json};

use topology::TopologyError;
use topology::{
    BusRef, Queue, ResourceKind, Rule, StateMachine, Table, Target, Topology, ValueRef,
};
use topology::{Names, Stage};

/// What a deployment did, resource by resource, and where each resource is.
#[derive(Debug, Clone)]
pub struct DeployReport {
    pub stage: Stage,
    /// In deployment order.
    pub resources: Vec<Deployed>,
    /// Rule targets that are Lambda functions: not created here; the local host serves them.
    pub lambda_targets: Vec<LambdaTarget>,
}

/// One deployed resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    pub kind: ResourceKind,
    /// The logical name (`simulation`); for subscriptions `topic/queue`, for rule targets
    /// `rule/target-id`.
    pub name: String,
    pub physical: String,
    pub arn: Option<String>,
    /// Queues only.
    pub url: Option<String>,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
}

/// A rule whose target is a Lambda function.
#[derive(Debug, Clone, PartialEq)]
pub struct LambdaTarget {
    /// The rule's logical and physical names.
    pub rule: String,
    pub rule_physical: String,
    /// The physical name of the bus the rule listens on (`default` for the default bus).
    pub bus: String,
    pub event_pattern: Value,
    /// The function's logical and physical names.
    pub function: String,
    pub function_physical: String,
}

/// A deployment step that failed, naming the resource.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Invalid(#[from] TopologyError),
    #[error(transparent)]
    Definition(#[from] crate::DefinitionError),
    #[error("{kind} {name}: {operation} failed: {detail}")]
    Sdk {
        kind: ResourceKind,
        name: String,
        operation: &'static str,
        detail: String,
    },
    #[error("{kind} {name}: {reason}")]
    Conflict {
        kind: ResourceKind,
        name: String,
        reason: String,
    },
    #[error("{kind} {name}: not {condition} after {} s", waited.as_secs())]
    Timeout {
        kind: ResourceKind,
        name: String,
        condition: &'static str,
        waited: Duration,
    },
}

/// Creates or updates `topology`'s emulator-hostable resources at `sdk`'s endpoint.
///
/// The account and partition come from the bus's ARN, as the endpoint reports it; the
/// state machines' role ARNs are placeholders in that account
/// (`arn:aws:iam::<account>:role/fleet-<stage>-<machine>`), since IAM is CloudFormation's.
pub async fn deploy(
    topology: &Topology,
    sdk: &aws_config::SdkConfig,
) -> Result<DeployReport, DeployError> {
    topology.validate()?;
    let mut s3 = aws_sdk_s3::config::Builder::from(sdk);
    if sdk.endpoint_url().is_some() {
        // A custom endpoint (the emulator) cannot resolve bucket subdomains.
        s3 = s3.force_path_style(true);
    }
    let mut d = Deployer {
        topology,
        names: topology.names(),
        region: sdk.region().map(|r| r.to_string()),
        account: String::new(),
        partition: String::new(),
        events: aws_sdk_eventbridge::Client::new(sdk),
        sqs: aws_sdk_sqs::Client::new(sdk),
        sns: aws_sdk_sns::Client::new(sdk),
        dynamodb: aws_sdk_dynamodb::Client::new(sdk),
        s3: aws_sdk_s3::Client::from_conf(s3.build()),
        sfn: aws_sdk_sfn::Client::new(sdk),
        report: DeployReport {
            stage: topology.stage.clone(),
            resources: Vec::new(),
            lambda_targets: Vec::new(),
        },
    };
    d.bus().await?;
    for topic in topology.topics() {
        d.topic(&topic.name).await?;
    }
    for queue in topology.queues() {
        d.queue(queue).await?;
    }
    for table in topology.tables() {
        d.table(table).await?;
    }
    for bucket in topology.buckets() {
        d.bucket(&bucket.name).await?;
    }
    for machine in topology.state_machines() {
        d.state_machine(machine).await?;
    }
    for rule in topology.rules() {
        d.rule(rule).await?;
    }
    d.queue_policies().await?;
    for topic in topology.topics() {
        for queue in &topic.subscriptions {
            d.subscription(&topic.name, queue).await?;
        }
    }
    for rule in topology.rules() {
        d.targets(rule).await?;
    }
    tracing::info!(stage = %topology.stage, resources = d.report.resources.len(), "deployed");
    Ok(d.report)
}

impl DeployReport {
    pub fn get(&self, kind: ResourceKind, name: &str) -> Option<&Deployed> {
        self.resources
            .iter()
            .find(|r| r.kind == kind && r.name == name)
    }

    /// Whether the deployment changed nothing.
    pub fn all_unchanged(&self) -> bool {
        self.resources
            .iter()
            .all(|r| r.outcome == Outcome::Unchanged)
    }

    pub fn bus_name(&self) -> Option<&str> {
        self.get(ResourceKind::EventBus, "bus")
            .map(|r| r.physical.as_str())
    }

    pub fn bus_arn(&self) -> Option<&str> {
        self.arn(ResourceKind::EventBus, "bus")
    }

    pub fn queue_url(&self, name: &str) -> Option<&str> {
        self.get(ResourceKind::Queue, name)?.url.as_deref()
    }

    pub fn queue_arn(&self, name: &str) -> Option<&str> {
        self.arn(ResourceKind::Queue, name)
    }

    /// The dead-letter queue of the queue `name`.
    pub fn dlq_url(&self, name: &str) -> Option<&str> {
        self.get(ResourceKind::DeadLetterQueue, name)?
            .url
            .as_deref()
    }

    pub fn dlq_arn(&self, name: &str) -> Option<&str> {
        self.arn(ResourceKind::DeadLetterQueue, name)
    }

    pub fn topic_arn(&self, name: &str) -> Option<&str> {
        self.arn(ResourceKind::Topic, name)
    }

    pub fn table_arn(&self, name: &str) -> Option<&str> {
        self.arn(ResourceKind::Table, name)
    }

    pub fn bucket_arn(&self, name: &str) -> Option<&str> {
        self.arn(ResourceKind::Bucket, name)
    }

    pub fn state_machine_arn(&self, name: &str) -> Option<&str> {
        self.arn(ResourceKind::StateMachine, name)
    }

    pub fn rule_arn(&self, name: &str) -> Option<&str> {
        self.arn(ResourceKind::Rule, name)
    }

    fn arn(&self, kind: ResourceKind, name: &str) -> Option<&str> {
        self.get(kind, name)?.arn.as_deref()
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
        })
    }
}

impl fmt::Display for DeployReport {
    /// A table: kind, physical name, outcome, and the ARN (or URL, for queues).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: Vec<[String; 4]> = self
            .resources
            .iter()
            .map(|r| {
                [
                    r.kind.to_string(),
                    r.physical.clone(),
                    r.outcome.to_string(),
                    r.url.clone().or_else(|| r.arn.clone()).unwrap_or_default(),
                ]
            })
            .collect();
        let header = ["KIND", "NAME", "OUTCOME", "ARN / URL"].map(String::from);
        let mut widths = header.clone().map(|h| h.len());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        for row in std::iter::once(&header).chain(&rows) {
            let line = format!(
                "{:w0$}  {:w1$}  {:w2$}  {}",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
            );
            writeln!(f, "{}", line.trim_end())?;
        }
        if !self.lambda_targets.is_empty() {
            writeln!(f, "\nLambda targets, served by the local host:")?;
            for t in &self.lambda_targets {
                writeln!(f, "  {} -> {}", t.rule_physical, t.function_physical)?;
            }
        }
        Ok(())
    }
}

/// How long to wait for a resource to become usable (a DynamoDB table to turn ACTIVE).
const READY_DEADLINE: Duration = Duration::from_secs(300);

/// Target ids this module creates; others (the local host's) are left alone.
const OWN_TARGET_PREFIXES: [&str; 2] = ["queue-", "state-machine-"];

struct Deployer<'a> {
    topology: &'a Topology,
    names: Names,
    region: Option<String>,
    account: String,
    partition: String,
    events: aws_sdk_eventbridge::Client,
    sqs: aws_sdk_sqs::Client,
    sns: aws_sdk_sns::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    s3: aws_sdk_s3::Client,
    sfn: aws_sdk_sfn::Client,
    report: DeployReport,
}

/// Turns an SDK error into a [`DeployError::Sdk`] naming the resource.
fn sdk_error<E: std::error::Error + 'static>(
    kind: ResourceKind,
    name: &str,
    operation: &'static str,
) -> impl FnOnce(E) -> DeployError {
    let name = name.to_owned();
    move |e| DeployError::Sdk {
        kind,
        name,
        operation,
        detail: DisplayErrorContext(&e).to_string(),
    }
}

/// Whether an SDK error says the resource does not exist.
fn is_not_found<E, R>(e: &SdkError<E, R>, codes: &[&str]) -> bool
where
    E: ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| codes.iter().any(|c| code.contains(c)))
}

const NOT_FOUND: &[&str] = &[
    "ResourceNotFound",
    "NotFound",
    "NonExistentQueue",
    "QueueDoesNotExist",
    "StateMachineDoesNotExist",
];

impl Deployer<'_> {
    fn record(
        &mut self,
        kind: ResourceKind,
        name: &str,
        physical: &str,
        arn: Option<String>,
        url: Option<String>,
        outcome: Outcome,
    ) {
        tracing::debug!(%kind, name = physical, %outcome, "deploy");
        self.report.resources.push(Deployed {
            kind,
            name: name.to_owned(),
            physical: physical.to_owned(),
            arn,
            url,
            outcome,
        });
    }

    fn arn(&self, service: &str, resource: &str) -> String {
        let region = self.region.as_deref().unwrap_or_default();
        format!(
            "arn:{}:{service}:{region}:{}:{resource}",
            self.partition, self.account
        )
    }

    /// The placeholder IAM role ARN for a role CloudFormation creates on AWS.
    fn role_arn(&self, name: &str) -> String {
        format!("arn:{}:iam::{}:role/{}", self.partition, self.account, name)
    }

    async fn bus(&mut self) -> Result<(), DeployError> {
        let kind = ResourceKind::EventBus;
        let name = self.names.bus();
        let (arn, outcome) = match self.events.describe_event_bus().name(&name).send().await {
            Ok(out) => (out.arn().map(str::to_owned), Outcome::Unchanged),
            Err(e) if is_not_found(&e, NOT_FOUND) => {
                let out = self
                    .events
                    .create_event_bus()
                    .name(&name)
                    .send()
                    .await
                    .map_err(sdk_error(kind, &name, "CreateEventBus"))?;
                (out.event_bus_arn().map(str::to_owned), Outcome::Created)
            }
            Err(e) => return Err(sdk_error(kind, &name, "DescribeEventBus")(e)),
        };
        let arn = arn.unwrap_or_default();
        // arn:<partition>:events:<region>:<account>:event-bus/<name>
        let parts: Vec<&str> = arn.split(':').collect();
        match parts.as_slice() {
            ["arn", partition, _, region, account, ..] if !account.is_empty() => {
                self.partition = (*partition).to_owned();
                self.account = (*account).to_owned();
                if self.region.is_none() {
                    self.region = Some((*region).to_owned());
                }
            }
            _ => {
                return Err(DeployError::Conflict {
                    kind,
                    name,
                    reason: format!("the endpoint reported the unusable ARN {arn:?}"),
                });
            }
        }
        self.record(kind, "bus", &name, Some(arn), None, outcome);
        Ok(())
    }

    async fn topic(&mut self, name: &str) -> Result<(), DeployError> {
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

    async fn queue(&mut self, q: &Queue) -> Result<(), DeployError> {
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
    async fn queue_policies(&mut self) -> Result<(), DeployError> {
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

    async fn subscription(&mut self, topic: &str, queue: &str) -> Result<(), DeployError> {
        let kind = ResourceKind::Subscription;
        let physical = format!("{} -> {}", self.names.topic(topic), self.names.queue(queue));
        let (Some(topic_arn), Some(queue_arn)) =
            (self.report.topic_arn(topic), self.report.queue_arn(queue))
        else {
            unreachable!("topic {topic} and queue {queue} were deployed before their subscription");
        };
        let (topic_arn, queue_arn) = (topic_arn.to_owned(), queue_arn.to_owned());
        let mut existing = None;
        let mut pages = self
            .sns
            .list_subscriptions_by_topic()
            .topic_arn(&topic_arn)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(sdk_error(kind, &physical, "ListSubscriptionsByTopic"))?;
            existing = page
                .subscriptions()
                .iter()
                .find(|s| s.protocol() == Some("sqs") && s.endpoint() == Some(queue_arn.as_str()))
                .and_then(|s| s.subscription_arn())
                .map(str::to_owned);
            if existing.is_some() {
                break;
            }
        }
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

    async fn table(&mut self, t: &Table) -> Result<(), DeployError> {
        let kind = ResourceKind::Table;
        let physical = self.names.table(&t.name);
        let build = |e: aws_smithy_types::error::operation::BuildError| DeployError::Sdk {
            kind,
            name: physical.clone(),
            operation: "build request",
            detail: e.to_string(),
        };
        let key_schema = |pk: &topology::Key, sk: Option<&topology::Key>| {
            let mut keys = vec![(pk.name.clone(), ddb::KeyType::Hash)];
            if let Some(sk) = sk {
                keys.push((sk.name.clone(), ddb::KeyType::Range));
            }
            keys.into_iter()
                .map(|(name, key_type)| {
                    ddb::KeySchemaElement::builder()
                        .attribute_name(name)
                        .key_type(key_type)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let attributes = t
            .key_attributes()
            .into_iter()
            .map(|k| {
                ddb::AttributeDefinition::builder()
                    .attribute_name(&k.name)
                    .attribute_type(ddb::ScalarAttributeType::from(k.kind.as_str()))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(build)?;
        let mut gsis = Vec::new();
        for g in &t.gsis {
            gsis.push((
                g.name.clone(),
                key_schema(&g.partition_key, g.sort_key.as_ref()).map_err(build)?,
            ));
        }
        let projection = ddb::Projection::builder()
            .projection_type(ddb::ProjectionType::All)
            .build();

        let mut outcome = match self
            .dynamodb
            .describe_table()
            .table_name(&physical)
            .send()
            .await
        {
            Ok(out) => {
                let have = out.table();
                let have_keys: Vec<(String, String)> = have
                    .map(|t| t.key_schema())
                    .unwrap_or_default()
                    .iter()
                    .map(|k| {
                        (
                            k.attribute_name().to_owned(),
                            k.key_type().as_str().to_owned(),
                        )
                    })
                    .collect();
                let want_keys: Vec<(String, String)> =
                    key_schema(&t.partition_key, t.sort_key.as_ref())
                        .map_err(build)?
                        .iter()
                        .map(|k| {
                            (
                                k.attribute_name().to_owned(),
                                k.key_type().as_str().to_owned(),
                            )
                        })
                        .collect();
                if have_keys != want_keys {
                    return Err(DeployError::Conflict {
                        kind,
                        name: physical,
                        reason: format!(
                            "exists with key schema {have_keys:?}, not {want_keys:?}; a key change needs a new table"
                        ),
                    });
                }
                let have_gsis: Vec<String> = have
                    .map(|t| t.global_secondary_indexes())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|g| g.index_name().map(str::to_owned))
                    .collect();
                let mut outcome = Outcome::Unchanged;
                // DynamoDB adds one index per update, each after the table is ACTIVE again.
                for (name, keys) in gsis.iter().filter(|(n, _)| !have_gsis.contains(n)) {
                    let create = ddb::CreateGlobalSecondaryIndexAction::builder()
                        .index_name(name)
                        .set_key_schema(Some(keys.clone()))
                        .projection(projection.clone())
                        .build()
                        .map_err(build)?;
                    self.dynamodb
                        .update_table()
                        .table_name(&physical)
                        .set_attribute_definitions(Some(attributes.clone()))
                        .global_secondary_index_updates(
                            ddb::GlobalSecondaryIndexUpdate::builder()
                                .create(create)
                                .build(),
                        )
                        .send()
                        .await
                        .map_err(sdk_error(kind, &physical, "UpdateTable"))?;
                    self.wait_for_table(&physical).await?;
                    outcome = Outcome::Updated;
                }
                outcome
            }
            Err(e) if is_not_found(&e, NOT_FOUND) => {
                let gsis = gsis
                    .into_iter()
                    .map(|(name, keys)| {
                        ddb::GlobalSecondaryIndex::builder()
                            .index_name(name)
                            .set_key_schema(Some(keys))
                            .projection(projection.clone())
                            .build()
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(build)?;
                self.dynamodb
                    .create_table()
                    .table_name(&physical)
                    .billing_mode(ddb::BillingMode::PayPerRequest)
                    .set_attribute_definitions(Some(attributes))
                    .set_key_schema(Some(
                        key_schema(&t.partition_key, t.sort_key.as_ref()).map_err(build)?,
                    ))
                    .set_global_secondary_indexes((!gsis.is_empty()).then_some(gsis))
                    .send()
                    .await
                    .map_err(sdk_error(kind, &physical, "CreateTable"))?;
                Outcome::Created
            }
            Err(e) => return Err(sdk_error(kind, &physical, "DescribeTable")(e)),
        };
        let arn = self.wait_for_table(&physical).await?;

        let ttl = self
            .dynamodb
            .describe_time_to_live()
            .table_name(&physical)
            .send()
            .await
            .map_err(sdk_error(kind, &physical, "DescribeTimeToLive"))?;
        let ttl = ttl.time_to_live_description();
        let enabled = ttl.and_then(|d| d.time_to_live_status()).is_some_and(|s| {
            matches!(
                s,
                ddb::TimeToLiveStatus::Enabled | ddb::TimeToLiveStatus::Enabling
            )
        });
        let have_attribute = ttl.and_then(|d| d.attribute_name()).filter(|_| enabled);
        let change = match (&t.ttl_attribute, have_attribute) {
            (Some(want), Some(have)) if want == have => None,
            (Some(want), _) => Some((want.clone(), true)),
            (None, Some(have)) => Some((have.to_owned(), false)),
            (None, None) => None,
        };
        if let Some((attribute, enabled)) = change {
            let spec = ddb::TimeToLiveSpecification::builder()
                .attribute_name(attribute)
                .enabled(enabled)
                .build()
                .map_err(build)?;
            self.dynamodb
                .update_time_to_live()
                .table_name(&physical)
                .time_to_live_specification(spec)
                .send()
                .await
                .map_err(sdk_error(kind, &physical, "UpdateTimeToLive"))?;
            if outcome == Outcome::Unchanged {
                outcome = Outcome::Updated;
            }
        }
        self.record(kind, &t.name, &physical, Some(arn), None, outcome);
        Ok(())
    }

    /// Waits until the table is ACTIVE and returns its ARN.
    async fn wait_for_table(&self, physical: &str) -> Result<String, DeployError> {
        let kind = ResourceKind::Table;
        let start = Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            let out = self
                .dynamodb
                .describe_table()
                .table_name(physical)
                .send()
                .await
                .map_err(sdk_error(kind, physical, "DescribeTable"))?;
            let table = out.table();
            let active = table.and_then(|t| t.table_status()) == Some(&ddb::TableStatus::Active);
            let indexes_active = table
                .map(|t| t.global_secondary_indexes())
                .unwrap_or_default()
                .iter()
                .all(|g| {
                    g.index_status()
                        .is_none_or(|s| *s == ddb::IndexStatus::Active)
                });
            if active && indexes_active {
                return Ok(table
                    .and_then(|t| t.table_arn())
                    .unwrap_or_default()
                    .to_owned());
            }
            if start.elapsed() > READY_DEADLINE {
                return Err(DeployError::Timeout {
                    kind,
                    name: physical.to_owned(),
                    condition: "ACTIVE",
                    waited: start.elapsed(),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    async fn bucket(&mut self, name: &str) -> Result<(), DeployError> {
        let kind = ResourceKind::Bucket;
        let physical = self.names.bucket(name);
        let outcome = match self.s3.head_bucket().bucket(&physical).send().await {
            Ok(_) => Outcome::Unchanged,
            Err(e)
                if e.as_service_error().is_some_and(|e| e.is_not_found())
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
            {
                let mut create = self.s3.create_bucket().bucket(&physical);
                // us-east-1 is the one region that takes no location constraint.
                if let Some(region) = self.region.as_deref().filter(|r| *r != "us-east-1") {
                    create = create.create_bucket_configuration(
                        aws_sdk_s3::types::CreateBucketConfiguration::builder()
                            .location_constraint(region.into())
                            .build(),
                    );
                }
                create
                    .send()
                    .await
                    .map_err(sdk_error(kind, &physical, "CreateBucket"))?;
                Outcome::Created
            }
            Err(e) => return Err(sdk_error(kind, &physical, "HeadBucket")(e)),
        };
        let arn = format!("arn:{}:s3:::{physical}", self.partition);
        self.record(kind, name, &physical, Some(arn), None, outcome);
        Ok(())
    }

    async fn state_machine(&mut self, m: &StateMachine) -> Result<(), DeployError> {
        let kind = ResourceKind::StateMachine;
        let physical = self.names.state_machine(&m.name);
        let mut text = crate::definition(self.topology, m)?.to_string();
        for (key, value) in &m.substitutions {
            let value = self.resolve(value);
            // The definition is JSON: substitute the value as the inside of a JSON string.
            let escaped = Value::String(value).to_string();
            text = text.replace(&format!("${{{key}}}"), &escaped[1..escaped.len() - 1]);
        }
        let definition: Value = serde_json::from_str(&text).map_err(|e| DeployError::Conflict {
            kind,
            name: physical.clone(),
            reason: format!("the definition is not JSON after substitution: {e}"),
        })?;
        let role = self.role_arn(&physical);

        let mut existing = None;
        let mut pages = self.sfn.list_state_machines().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(sdk_error(kind, &physical, "ListStateMachines"))?;
            existing = page
                .state_machines()
                .iter()
                .find(|s| s.name() == physical)
                .map(|s| s.state_machine_arn().to_owned());
            if existing.is_some() {
                break;
            }
        }
        let (arn, outcome) = match existing {
            Some(arn) => {
                let have = self
                    .sfn
                    .describe_state_machine()
                    .state_machine_arn(&arn)
                    .send()
                    .await
                    .map_err(sdk_error(kind, &physical, "DescribeStateMachine"))?;
                let same_definition = serde_json::from_str::<Value>(have.definition())
                    .ok()
                    .as_ref()
                    == Some(&definition);
                if same_definition && have.role_arn() == role {
                    (arn, Outcome::Unchanged)
                } else {
                    self.sfn
                        .update_state_machine()
                        .state_machine_arn(&arn)
                        .definition(definition.to_string())
                        .role_arn(&role)
                        .send()
                        .await
                        .map_err(sdk_error(kind, &physical, "UpdateStateMachine"))?;
                    (arn, Outcome::Updated)
                }
            }
            None => {
                let out = self
                    .sfn
                    .create_state_machine()
                    .name(&physical)
                    .definition(definition.to_string())
                    .role_arn(&role)
                    .r#type(aws_sdk_sfn::types::StateMachineType::Standard)
                    .send()
                    .await
                    .map_err(sdk_error(kind, &physical, "CreateStateMachine"))?;
                (out.state_machine_arn().to_owned(), Outcome::Created)
            }
        };
        self.record(kind, &m.name, &physical, Some(arn), None, outcome);
        Ok(())
    }

    /// The value a [`ValueRef`] has in this deployment.
    fn resolve(&self, v: &ValueRef) -> String {
        let r = &self.report;
        let names = &self.names;
        let known = |value: Option<&str>| value.unwrap_or_default().to_owned();
        match v {
            ValueRef::Literal(s) => s.clone(),
            ValueRef::Stage => names.stage().to_string(),
            ValueRef::Region => self.region.clone().unwrap_or_default(),
            ValueRef::BusName => names.bus(),
            ValueRef::BusArn => known(r.bus_arn()),
            ValueRef::QueueUrl(n) => known(r.queue_url(n)),
            ValueRef::QueueArn(n) => known(r.queue_arn(n)),
            ValueRef::DlqUrl(n) => known(r.dlq_url(n)),
            ValueRef::DlqArn(n) => known(r.dlq_arn(n)),
            ValueRef::TopicArn(n) => known(r.topic_arn(n)),
            ValueRef::TableName(n) => names.table(n),
            ValueRef::TableArn(n) => known(r.table_arn(n)),
            ValueRef::BucketName(n) => names.bucket(n),
            // Built from names: a machine may name one deployed after it.
            ValueRef::StateMachineArn(n) => self.arn(
                "states",
                &format!("stateMachine:{}", names.state_machine(n)),
            ),
            ValueRef::FunctionArn(n) => {
                self.arn("lambda", &format!("function:{}", names.function(n)))
            }
            // WebSocket APIs are not deployed to the emulator: the local host serves them
            // and its own address is their endpoint.
            ValueRef::ConnectionsEndpoint(_) => String::new(),
            ValueRef::ParameterPath(path) => names.parameter_path(path),
            // Functions are not deployed to the emulator: the local host runs them in
            // process with the local issuer's verifier.
            ValueRef::Token(_) | ValueRef::Setting { .. } => String::new(),
        }
    }

    fn bus_name(&self, bus: BusRef) -> String {
        match bus {
            BusRef::Fleet => self.names.bus(),
            BusRef::Default => "default".to_owned(),
        }
    }

    async fn rule(&mut self, r: &Rule) -> Result<(), DeployError> {
        let kind = ResourceKind::Rule;
        let physical = self.names.rule(&r.name);
        let bus = self.bus_name(r.bus);
        let put = || {
            self.events
                .put_rule()
                .name(&physical)
                .event_bus_name(&bus)
                .event_pattern(r.event_pattern.to_string())
                .state(aws_sdk_eventbridge::types::RuleState::Enabled)
                .send()
        };
        let (arn, outcome) = match self
            .events
            .describe_rule()
            .name(&physical)
            .event_bus_name(&bus)
            .send()
            .await
        {
            Ok(have) => {
                let same_pattern = have
                    .event_pattern()
                    .and_then(|p| serde_json::from_str::<Value>(p).ok())
                    .as_ref()
                    == Some(&r.event_pattern);
                let enabled = have.state() == Some(&aws_sdk_eventbridge::types::RuleState::Enabled);
                if same_pattern && enabled {
                    (
                        have.arn().unwrap_or_default().to_owned(),
                        Outcome::Unchanged,
                    )
                } else {
                    let out = put().await.map_err(sdk_error(kind, &physical, "PutRule"))?;
                    (
                        out.rule_arn().unwrap_or_default().to_owned(),
                        Outcome::Updated,
                    )
                }
            }
            Err(e) if is_not_found(&e, NOT_FOUND) => {
                let out = put().await.map_err(sdk_error(kind, &physical, "PutRule"))?;
                (
                    out.rule_arn().unwrap_or_default().to_owned(),
                    Outcome::Created,
                )
            }
            Err(e) => return Err(sdk_error(kind, &physical, "DescribeRule")(e)),
        };
        self.record(kind, &r.name, &physical, Some(arn), None, outcome);
        Ok(())
    }

    async fn targets(&mut self, r: &Rule) -> Result<(), DeployError> {
        let kind = ResourceKind::RuleTarget;
        let physical = self.names.rule(&r.name);
        let bus = self.bus_name(r.bus);
        // (id, arn, role)
        let mut desired: Vec<(String, String, Option<String>)> = Vec::new();
        for target in &r.targets {
            match target {
                Target::Queue(q) => desired.push((
                    format!("queue-{q}"),
                    self.report.queue_arn(q).unwrap_or_default().to_owned(),
                    None,
                )),
                Target::StateMachine(m) => desired.push((
                    format!("state-machine-{m}"),
                    self.report
                        .state_machine_arn(m)
                        .unwrap_or_default()
                        .to_owned(),
                    Some(self.role_arn(&format!("{physical}-events"))),
                )),
                Target::Function(f) => self.report.lambda_targets.push(LambdaTarget {
                    rule: r.name.clone(),
                    rule_physical: physical.clone(),
                    bus: bus.clone(),
                    event_pattern: r.event_pattern.clone(),
                    function: f.clone(),
                    function_physical: self.names.function(f),
                }),
            }
        }
        let have = self
            .events
            .list_targets_by_rule()
            .rule(&physical)
            .event_bus_name(&bus)
            .send()
            .await
            .map_err(sdk_error(kind, &physical, "ListTargetsByRule"))?;
        let have: Vec<(String, String, Option<String>)> = have
            .targets()
            .iter()
            .map(|t| {
                (
                    t.id().to_owned(),
                    t.arn().to_owned(),
                    t.role_arn().map(str::to_owned),
                )
            })
            .collect();

        let mut put = Vec::new();
        let mut outcomes = Vec::new();
        for (id, arn, role) in &desired {
            let outcome = match have.iter().find(|(h, _, _)| h == id) {
                Some(existing) if (&existing.1, &existing.2) == (arn, role) => Outcome::Unchanged,
                Some(_) => Outcome::Updated,
                None => Outcome::Created,
            };
            if outcome != Outcome::Unchanged {
                let target = aws_sdk_eventbridge::types::Target::builder()
                    .id(id)
                    .arn(arn)
                    .set_role_arn(role.clone())
                    .build()
                    .map_err(|e| DeployError::Sdk {
                        kind,
                        name: format!("{physical}/{id}"),
                        operation: "build request",
                        detail: e.to_string(),
                    })?;
                put.push(target);
            }
            outcomes.push((id.clone(), arn.clone(), outcome));
        }
        if !put.is_empty() {
            let out = self
                .events
                .put_targets()
                .rule(&physical)
                .event_bus_name(&bus)
                .set_targets(Some(put))
                .send()
                .await
                .map_err(sdk_error(kind, &physical, "PutTargets"))?;
            if out.failed_entry_count() > 0 {
                let detail = out
                    .failed_entries()
                    .iter()
                    .map(|e| {
                        format!(
                            "{}: {}",
                            e.target_id().unwrap_or("?"),
                            e.error_message().unwrap_or("?")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(DeployError::Sdk {
                    kind,
                    name: physical,
                    operation: "PutTargets",
                    detail,
                });
            }
        }
        let stale: Vec<String> = have
            .iter()
            .map(|(id, _, _)| id)
            .filter(|id| OWN_TARGET_PREFIXES.iter().any(|p| id.starts_with(p)))
            .filter(|id| !desired.iter().any(|(d, _, _)| d == *id))
            .cloned()
            .collect();
        if !stale.is_empty() {
            tracing::info!(rule = %physical, targets = ?stale, "removing stale rule targets");
            self.events
                .remove_targets()
                .rule(&physical)
                .event_bus_name(&bus)
                .set_ids(Some(stale))
                .send()
                .await
                .map_err(sdk_error(kind, &physical, "RemoveTargets"))?;
        }
        for (id, arn, outcome) in outcomes {
            let name = format!("{}/{id}", r.name);
            let target_physical = format!("{physical}/{id}");
            self.record(kind, &name, &target_physical, Some(arn), None, outcome);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: ResourceKind, physical: &str, arn: &str, outcome: Outcome) -> Deployed {
        Deployed {
            kind,
            name: physical.to_owned(),
            physical: physical.to_owned(),
            arn: Some(arn.to_owned()),
            url: None,
            outcome,
        }
    }

    #[test]
    fn the_report_prints_as_a_table() {
        let mut queue = row(
            ResourceKind::Queue,
            "fleet-dev-jobs",
            "arn:q",
            Outcome::Created,
        );
        queue.url = Some("http://q".to_owned());
        let report = DeployReport {
            stage: Stage::default(),
            resources: vec![
                row(
                    ResourceKind::EventBus,
                    "fleet-dev",
                    "arn:bus",
                    Outcome::Unchanged,
                ),
                queue,
                row(
                    ResourceKind::StateMachine,
                    "fleet-dev-job",
                    "arn:sm",
                    Outcome::Updated,
                ),
            ],
            lambda_targets: vec![LambdaTarget {
                rule: "job-requested".to_owned(),
                rule_physical: "fleet-dev-job-requested".to_owned(),
                bus: "fleet-dev".to_owned(),
                event_pattern: json!({ "source": ["fleet.jobs"] }),
                function: "on-job".to_owned(),
                function_physical: "fleet-dev-on-job".to_owned(),
            }],
        };
        let expected = "\
KIND           NAME            OUTCOME    ARN / URL
event bus      fleet-dev       unchanged  arn:bus
queue          fleet-dev-jobs  created    http://q
state machine  fleet-dev-job   updated    arn:sm

Lambda targets, served by the local host:
  fleet-dev-job-requested -> fleet-dev-on-job
";
        assert_eq!(report.to_string(), expected);
    }
}
