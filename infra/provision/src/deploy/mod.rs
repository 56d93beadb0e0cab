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
//!
//! This module holds the entry point and the [`Deployer`] that walks the model; each
//! resource kind is deployed by the `impl Deployer` block in the file of that kind, and
//! `report` holds what a deployment returns.

mod buckets;
mod bus;
mod queues;
mod report;
mod rules;
mod state_machines;
mod tables;
mod targets;
mod topics;
mod values;

use std::time::Duration;

use aws_sdk_sqs::error::SdkError; // The same type for every SDK crate.
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use topology::{Names, ResourceKind, Topology, TopologyError};

pub use report::{DeployReport, Deployed, LambdaTarget, Outcome};

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
        d.bucket(bucket).await?;
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
}
