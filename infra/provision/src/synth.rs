//! CloudFormation synthesis: one stack for `core` and one per microservice.
//!
//! References inside a stack use `Ref`/`Fn::GetAtt`; references to an earlier stack use
//! `Fn::ImportValue` of the exports every stack publishes for its shareable resources
//! (`<stack>:<LogicalId><Attr>`, e.g. `fleet-dev-core:BusArn`). Queue policies name their
//! senders by constructed ARNs instead, so a queue never depends on a later stack.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use topology::Names;
use topology::{
    BusRef, FargateService, Function, FunctionKind, Permission, Queue, Resource, ResourceRef, Rule,
    Sources, StateMachine, Table, Target, TokenSetting, Topology, ValueRef,
};
use topology::{Owners, RefKind, TopologyError, camel};

/// One CloudFormation stack's template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub stack_name: String,
    pub body: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error(transparent)]
    Invalid(#[from] TopologyError),
    #[error(transparent)]
    Definition(#[from] crate::DefinitionError),
    #[error("stack {stack}: two resources would both have the logical id {id}")]
    DuplicateLogicalId { stack: String, id: String },
    #[error("cannot write the template {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The templates for `topology`: `fleet-<stage>-core` first, then one per service.
pub fn synth(topology: &Topology) -> Result<Vec<Template>, SynthError> {
    topology.validate()?;
    let names = topology.names();
    let mut ctx = Synth {
        topology,
        owners: Owners::new(topology),
        stacks: topology
            .services
            .iter()
            .map(|s| Stack::new(names.stack(&s.name), &names, &s.name))
            .collect(),
        names,
    };
    for (at, service) in topology.services.iter().enumerate() {
        for resource in &service.resources {
            match resource {
                Resource::EventBus(_) => ctx.bus(at),
                Resource::Queue(q) => ctx.queue(at, q),
                Resource::Topic(t) => {
                    ctx.exported(at, Kind::Topic, &t.name);
                    ctx.stacks[at].resource(
                        Kind::Topic.logical_id(&t.name),
                        "AWS::SNS::Topic",
                        json!({ "TopicName": ctx.names.topic(&t.name) }),
                    );
                }
                Resource::Table(t) => ctx.table(at, t),
                Resource::Bucket(b) => {
                    ctx.exported(at, Kind::Bucket, &b.name);
                    ctx.stacks[at].resource(
                        Kind::Bucket.logical_id(&b.name),
                        "AWS::S3::Bucket",
                        json!({
                            "BucketName": ctx.names.bucket(&b.name),
                            "PublicAccessBlockConfiguration": {
                                "BlockPublicAcls": true,
                                "BlockPublicPolicy": true,
                                "IgnorePublicAcls": true,
                                "RestrictPublicBuckets": true,
                            },
                            "BucketEncryption": {
                                "ServerSideEncryptionConfiguration": [
                                    { "ServerSideEncryptionByDefault": { "SSEAlgorithm": "AES256" } }
                                ]
                            },
                            "OwnershipControls": { "Rules": [ { "ObjectOwnership": "BucketOwnerEnforced" } ] },
                        }),
                    );
                }
                Resource::StateMachine(m) => ctx.state_machine(at, m)?,
                Resource::Rule(r) => ctx.rule(at, r),
                Resource::Function(f) => ctx.function(at, &service.name, f),
                Resource::FargateService(f) => ctx.fargate(at, &service.name, f),
            }
        }
    }
    ctx.subscriptions();
    ctx.queue_policies();
    ctx.stacks.into_iter().map(Stack::finish).collect()
}

/// Writes each template to `<dir>/<stack>.json`, creating `dir`, and returns the paths.
pub fn write(dir: &Path, templates: &[Template]) -> Result<Vec<PathBuf>, SynthError> {
    std::fs::create_dir_all(dir).map_err(|source| SynthError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths = Vec::new();
    for template in templates {
        let path = dir.join(format!("{}.json", template.stack_name));
        let mut text = serde_json::to_string_pretty(&template.body)
            .unwrap_or_else(|e| unreachable!("a JSON value always serializes: {e}"));
        text.push('\n');
        std::fs::write(&path, text).map_err(|source| SynthError::Write {
            path: path.clone(),
            source,
        })?;
        paths.push(path);
    }
    Ok(paths)
}

/// The Lambda runtime every function uses: a custom runtime running `bootstrap`.
pub const LAMBDA_RUNTIME: &str = "provided.al2023";
pub const LAMBDA_ARCHITECTURE: &str = "arm64";
/// The template parameters that locate the build's artifacts.
pub const PARAM_ARTIFACT_BUCKET: &str = "ArtifactBucket";
pub const PARAM_ARTIFACT_PREFIX: &str = "ArtifactPrefix";
pub const PARAM_WORKER_IMAGE: &str = "WorkerImage";
pub const PARAM_VPC: &str = "VpcId";
pub const PARAM_SUBNETS: &str = "SubnetIds";
pub const PARAM_ASSIGN_PUBLIC_IP: &str = "AssignPublicIp";

const POLICY_VERSION: &str = "2012-10-17";
const LOG_RETENTION_DAYS: u32 = 30;

/// The shareable resource kinds, each with its logical id and exported attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bus,
    Queue,
    Dlq,
    Topic,
    Table,
    Bucket,
    StateMachine,
    Function,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attr {
    Name,
    Arn,
    Url,
}

impl Attr {
    fn as_str(self) -> &'static str {
        match self {
            Attr::Name => "Name",
            Attr::Arn => "Arn",
            Attr::Url => "Url",
        }
    }
}

impl Kind {
    fn logical_id(self, name: &str) -> String {
        let suffix = match self {
            Kind::Bus => return "Bus".to_owned(),
            Kind::Queue => "Queue",
            Kind::Dlq => "Dlq",
            Kind::Topic => "Topic",
            Kind::Table => "Table",
            Kind::Bucket => "Bucket",
            Kind::StateMachine => "StateMachine",
            Kind::Function => "Function",
        };
        format!("{}{suffix}", camel(name))
    }

    fn attrs(self) -> &'static [Attr] {
        match self {
            Kind::Queue | Kind::Dlq => &[Attr::Url, Attr::Arn, Attr::Name],
            _ => &[Attr::Name, Attr::Arn],
        }
    }

    /// The intrinsic that reads `attr` of the resource `id` in its own stack.
    fn local(self, id: &str, attr: Attr) -> Value {
        let get_att = |a: &str| json!({ "Fn::GetAtt": [id, a] });
        match (self, attr) {
            (Kind::Queue | Kind::Dlq, Attr::Url) => json!({ "Ref": id }),
            (Kind::Queue | Kind::Dlq, Attr::Name) => get_att("QueueName"),
            (Kind::Topic | Kind::StateMachine, Attr::Arn) => json!({ "Ref": id }),
            (Kind::Topic, Attr::Name) => get_att("TopicName"),
            (Kind::StateMachine, Attr::Name) => get_att("Name"),
            (_, Attr::Arn) => get_att("Arn"),
            (_, Attr::Name) => json!({ "Ref": id }),
            (_, Attr::Url) => {
                unreachable!("only queues have URLs; {self:?} was asked for one")
            }
        }
    }
}

struct Synth<'a> {
    topology: &'a Topology,
    names: Names,
    owners: Owners,
    stacks: Vec<Stack>,
}

impl<'a> Synth<'a> {
    fn stack_name(&self, index: usize) -> &str {
        &self.stacks[index].name
    }

    /// Outputs (and exports) every attribute of a shareable resource.
    fn exported(&mut self, at: usize, kind: Kind, name: &str) {
        let id = kind.logical_id(name);
        for &attr in kind.attrs() {
            let value = kind.local(&id, attr);
            self.stacks[at].export(format!("{id}{}", attr.as_str()), value);
        }
    }

    /// `attr` of a resource owned by stack `owner`, as seen from stack `at`.
    fn attr(&self, at: usize, owner: usize, kind: Kind, name: &str, attr: Attr) -> Value {
        let id = kind.logical_id(name);
        if owner == at {
            kind.local(&id, attr)
        } else {
            json!({ "Fn::ImportValue": format!("{}:{id}{}", self.stack_name(owner), attr.as_str()) })
        }
    }

    /// Validation guarantees every reference resolves; a miss is a broken invariant.
    fn owner(&self, kind: RefKind, name: &str) -> usize {
        self.owners
            .get(kind, name)
            .unwrap_or_else(|| panic!("validated topology: {kind:?} {name} must be defined"))
    }

    fn queue_attr(&self, at: usize, name: &str, attr: Attr) -> Value {
        self.attr(
            at,
            self.owner(RefKind::Queue, name),
            Kind::Queue,
            name,
            attr,
        )
    }

    fn dlq_attr(&self, at: usize, name: &str, attr: Attr) -> Value {
        self.attr(at, self.owner(RefKind::Queue, name), Kind::Dlq, name, attr)
    }

    fn topic_arn(&self, at: usize, name: &str) -> Value {
        self.attr(
            at,
            self.owner(RefKind::Topic, name),
            Kind::Topic,
            name,
            Attr::Arn,
        )
    }

    fn table_attr(&self, at: usize, name: &str, attr: Attr) -> Value {
        self.attr(
            at,
            self.owner(RefKind::Table, name),
            Kind::Table,
            name,
            attr,
        )
    }

    fn bucket_attr(&self, at: usize, name: &str, attr: Attr) -> Value {
        self.attr(
            at,
            self.owner(RefKind::Bucket, name),
            Kind::Bucket,
            name,
            attr,
        )
    }

    fn machine_arn(&self, at: usize, name: &str) -> Value {
        let owner = self.owner(RefKind::StateMachine, name);
        self.attr(at, owner, Kind::StateMachine, name, Attr::Arn)
    }

    fn function_arn(&self, at: usize, name: &str) -> Value {
        let owner = self.owner(RefKind::Function, name);
        self.attr(at, owner, Kind::Function, name, Attr::Arn)
    }

    fn bus_attr(&self, at: usize, attr: Attr) -> Value {
        self.attr(at, 0, Kind::Bus, "", attr)
    }

    /// The ARN an IAM statement names for `r`, as seen from stack `at`.
    fn resource_arn(&self, at: usize, r: &ResourceRef) -> Value {
        let sub = |pattern: &str, arn: Value| json!({ "Fn::Sub": [pattern, { "Arn": arn }] });
        match r {
            ResourceRef::Bus => self.bus_attr(at, Attr::Arn),
            ResourceRef::Queue(n) => self.queue_attr(at, n, Attr::Arn),
            ResourceRef::Dlq(n) => self.dlq_attr(at, n, Attr::Arn),
            ResourceRef::Topic(n) => self.topic_arn(at, n),
            ResourceRef::Table(n) => self.table_attr(at, n, Attr::Arn),
            ResourceRef::TableIndexes(n) => {
                sub("${Arn}/index/*", self.table_attr(at, n, Attr::Arn))
            }
            ResourceRef::Bucket(n) => self.bucket_attr(at, n, Attr::Arn),
            ResourceRef::BucketObjects(n) => sub("${Arn}/*", self.bucket_attr(at, n, Attr::Arn)),
            ResourceRef::StateMachine(n) => self.machine_arn(at, n),
            ResourceRef::Executions(n) => json!({
                "Fn::Sub": format!(
                    "arn:${{AWS::Partition}}:states:${{AWS::Region}}:${{AWS::AccountId}}:execution:{}:*",
                    self.names.state_machine(n)
                )
            }),
            ResourceRef::Function(n) => self.function_arn(at, n),
            // Task tokens are not scoped to a state machine; validation allows `*` only
            // for the three SendTask* actions.
            ResourceRef::TaskTokens => json!("*"),
            ResourceRef::Parameters(path) => json!({
                "Fn::Sub": format!(
                    "arn:${{AWS::Partition}}:ssm:${{AWS::Region}}:${{AWS::AccountId}}:parameter{}/*",
                    self.names.parameter_path(path)
                )
            }),
            ResourceRef::Connections(_) => json!({
                "Fn::Sub": format!(
                    "arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{WebSocketApi}}/{}/*/@connections/*",
                    self.names.stage().as_str()
                )
            }),
        }
    }

    fn value(&self, at: usize, v: &ValueRef) -> Value {
        match v {
            ValueRef::Literal(s) => json!(s),
            ValueRef::Stage => json!(self.names.stage().as_str()),
            ValueRef::Region => json!({ "Ref": "AWS::Region" }),
            ValueRef::BusName => self.bus_attr(at, Attr::Name),
            ValueRef::BusArn => self.bus_attr(at, Attr::Arn),
            ValueRef::QueueUrl(n) => self.queue_attr(at, n, Attr::Url),
            ValueRef::QueueArn(n) => self.queue_attr(at, n, Attr::Arn),
            ValueRef::DlqUrl(n) => self.dlq_attr(at, n, Attr::Url),
            ValueRef::DlqArn(n) => self.dlq_attr(at, n, Attr::Arn),
            ValueRef::TopicArn(n) => self.topic_arn(at, n),
            ValueRef::TableName(n) => self.table_attr(at, n, Attr::Name),
            ValueRef::TableArn(n) => self.table_attr(at, n, Attr::Arn),
            ValueRef::BucketName(n) => self.bucket_attr(at, n, Attr::Name),
            ValueRef::StateMachineArn(n) => self.machine_arn(at, n),
            ValueRef::FunctionArn(n) => self.function_arn(at, n),
            ValueRef::ParameterPath(path) => json!(self.names.parameter_path(path)),
            ValueRef::Token(setting) => json!({ "Ref": setting.parameter() }),
            ValueRef::Setting { parameter, .. } => json!({ "Ref": parameter }),
            // Validation keeps it within the API's own stack.
            ValueRef::ConnectionsEndpoint(_) => json!({
                "Fn::Sub": format!(
                    "https://${{WebSocketApi}}.execute-api.${{AWS::Region}}.amazonaws.com/{}",
                    self.names.stage().as_str()
                )
            }),
        }
    }

    fn statements(&self, at: usize, permissions: &[Permission]) -> Vec<Value> {
        permissions
            .iter()
            .map(|p| {
                let mut statement = statement(&p.actions, self.resource_arn(at, &p.resource));
                if let Some(sources) = &p.sources {
                    statement["Condition"] = source_condition(sources);
                }
                statement
            })
            .collect()
    }

    fn bus(&mut self, at: usize) {
        self.exported(at, Kind::Bus, "");
        self.stacks[at].resource(
            Kind::Bus.logical_id(""),
            "AWS::Events::EventBus",
            json!({ "Name": self.names.bus() }),
        );
    }

    fn queue(&mut self, at: usize, q: &Queue) {
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

    fn table(&mut self, at: usize, t: &Table) {
        let key_schema = |pk: &topology::Key, sk: Option<&topology::Key>| {
            let mut keys = vec![json!({ "AttributeName": pk.name, "KeyType": "HASH" })];
            if let Some(sk) = sk {
                keys.push(json!({ "AttributeName": sk.name, "KeyType": "RANGE" }));
            }
            Value::Array(keys)
        };
        let mut props = json!({
            "TableName": self.names.table(&t.name),
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": t.key_attributes().iter().map(|k| json!({
                "AttributeName": k.name,
                "AttributeType": k.kind.as_str(),
            })).collect::<Vec<_>>(),
            "KeySchema": key_schema(&t.partition_key, t.sort_key.as_ref()),
        });
        if !t.gsis.is_empty() {
            props["GlobalSecondaryIndexes"] = t
                .gsis
                .iter()
                .map(|g| {
                    json!({
                        "IndexName": g.name,
                        "KeySchema": key_schema(&g.partition_key, g.sort_key.as_ref()),
                        "Projection": { "ProjectionType": "ALL" },
                    })
                })
                .collect();
        }
        if let Some(ttl) = &t.ttl_attribute {
            props["TimeToLiveSpecification"] = json!({ "AttributeName": ttl, "Enabled": true });
        }
        self.stacks[at].resource(
            Kind::Table.logical_id(&t.name),
            "AWS::DynamoDB::Table",
            props,
        );
        self.exported(at, Kind::Table, &t.name);
    }

    fn state_machine(&mut self, at: usize, m: &StateMachine) -> Result<(), SynthError> {
        let definition = crate::definition(self.topology, m)?;
        let id = Kind::StateMachine.logical_id(&m.name);
        let role = format!("{id}Role");
        let statements = self.statements(at, &m.permissions);
        self.stacks[at].resource(
            role.clone(),
            "AWS::IAM::Role",
            role_props("states.amazonaws.com", statements),
        );
        let mut props = json!({
            "StateMachineName": self.names.state_machine(&m.name),
            "StateMachineType": "STANDARD",
            "Definition": definition,
            "RoleArn": { "Fn::GetAtt": [role, "Arn"] },
        });
        if !m.substitutions.is_empty() {
            props["DefinitionSubstitutions"] = m
                .substitutions
                .iter()
                .map(|(k, v)| (k.clone(), self.value(at, v)))
                .collect::<Map<_, _>>()
                .into();
        }
        self.stacks[at].resource(id, "AWS::StepFunctions::StateMachine", props);
        self.exported(at, Kind::StateMachine, &m.name);
        Ok(())
    }

    fn rule(&mut self, at: usize, r: &Rule) {
        let id = format!("{}Rule", camel(&r.name));
        let mut targets = Vec::new();
        for target in &r.targets {
            match target {
                Target::Queue(q) => targets.push(json!({
                    "Id": format!("queue-{q}"),
                    "Arn": self.queue_attr(at, q, Attr::Arn),
                })),
                Target::StateMachine(m) => {
                    let role = format!("{id}{}Role", camel(m));
                    let start = statement(&["states:StartExecution"], self.machine_arn(at, m));
                    self.stacks[at].resource(
                        role.clone(),
                        "AWS::IAM::Role",
                        role_props("events.amazonaws.com", vec![start]),
                    );
                    targets.push(json!({
                        "Id": format!("state-machine-{m}"),
                        "Arn": self.machine_arn(at, m),
                        "RoleArn": { "Fn::GetAtt": [role, "Arn"] },
                    }));
                }
                Target::Function(f) => {
                    let arn = self.function_arn(at, f);
                    self.stacks[at].resource(
                        format!("{id}{}Permission", camel(f)),
                        "AWS::Lambda::Permission",
                        json!({
                            "Action": "lambda:InvokeFunction",
                            "FunctionName": arn,
                            "Principal": "events.amazonaws.com",
                            "SourceArn": { "Fn::GetAtt": [id, "Arn"] },
                        }),
                    );
                    targets.push(json!({ "Id": format!("function-{f}"), "Arn": arn }));
                }
            }
        }
        let mut props = json!({
            "Name": self.names.rule(&r.name),
            "EventPattern": r.event_pattern,
            "State": "ENABLED",
            "Targets": targets,
        });
        if r.bus == BusRef::Fleet {
            props["EventBusName"] = self.bus_attr(at, Attr::Name);
        }
        self.stacks[at].resource(id, "AWS::Events::Rule", props);
    }

    fn function(&mut self, at: usize, service: &str, f: &Function) {
        let id = Kind::Function.logical_id(&f.name);
        let physical = self.names.function(&f.name);
        let log_group = format!("{id}LogGroup");
        let role = format!("{id}Role");
        self.stacks[at].uses_artifacts = true;
        self.stacks[at].resource(
            log_group.clone(),
            "AWS::Logs::LogGroup",
            json!({
                "LogGroupName": format!("/aws/lambda/{physical}"),
                "RetentionInDays": LOG_RETENTION_DAYS,
            }),
        );
        let mut statements = vec![statement(
            &["logs:CreateLogStream", "logs:PutLogEvents"],
            json!({ "Fn::GetAtt": [log_group, "Arn"] }),
        )];
        if let Some(topic) = &f.dead_letter {
            statements.push(statement(&["sns:Publish"], self.topic_arn(at, topic)));
        }
        if let FunctionKind::Sqs { queue, .. } = &f.kind {
            statements.push(statement(
                &[
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes",
                ],
                self.queue_attr(at, queue, Attr::Arn),
            ));
        }
        statements.extend(self.statements(at, &f.permissions));
        self.stacks[at].resource(
            role.clone(),
            "AWS::IAM::Role",
            role_props("lambda.amazonaws.com", statements),
        );

        let mut props = json!({
            "FunctionName": physical,
            "Runtime": LAMBDA_RUNTIME,
            "Architectures": [LAMBDA_ARCHITECTURE],
            "Handler": "bootstrap",
            "Code": {
                "S3Bucket": { "Ref": PARAM_ARTIFACT_BUCKET },
                "S3Key": { "Fn::Sub": format!("${{{PARAM_ARTIFACT_PREFIX}}}/{}.zip", f.name) },
            },
            "Role": { "Fn::GetAtt": [role, "Arn"] },
            "MemorySize": f.memory_mb,
            "Timeout": f.timeout.as_secs(),
            "LoggingConfig": { "LogGroup": { "Ref": log_group } },
        });
        if f.env.iter().any(|(_, v)| matches!(v, ValueRef::Token(_))) {
            self.stacks[at].uses_tokens = true;
        }
        for (_, v) in &f.env {
            if let ValueRef::Setting {
                parameter,
                description,
            } = v
            {
                self.stacks[at].settings.insert(parameter, description);
            }
        }
        if !f.env.is_empty() {
            let vars: Map<String, Value> = f
                .env
                .iter()
                .map(|(k, v)| (k.clone(), self.value(at, v)))
                .collect();
            props["Environment"] = json!({ "Variables": vars });
        }
        if let Some(topic) = &f.dead_letter {
            props["DeadLetterConfig"] = json!({ "TargetArn": self.topic_arn(at, topic) });
        }
        self.stacks[at].resource(id.clone(), "AWS::Lambda::Function", props);
        self.exported(at, Kind::Function, &f.name);

        match &f.kind {
            FunctionKind::Async => {}
            FunctionKind::Sqs { queue, batch_size } => {
                let queue_arn = self.queue_attr(at, queue, Attr::Arn);
                self.stacks[at].resource(
                    format!("{id}EventSourceMapping"),
                    "AWS::Lambda::EventSourceMapping",
                    json!({
                        "EventSourceArn": queue_arn,
                        "FunctionName": { "Ref": id },
                        "BatchSize": batch_size,
                        "FunctionResponseTypes": ["ReportBatchItemFailures"],
                    }),
                );
            }
            FunctionKind::Http { routes } => {
                self.http_api(at, service);
                let integration = format!("{id}Integration");
                self.stacks[at].resource(
                    integration.clone(),
                    "AWS::ApiGatewayV2::Integration",
                    json!({
                        "ApiId": { "Ref": "HttpApi" },
                        "IntegrationType": "AWS_PROXY",
                        "IntegrationUri": { "Fn::GetAtt": [id, "Arn"] },
                        "PayloadFormatVersion": "2.0",
                    }),
                );
                for route in routes {
                    let stem: String = route
                        .path
                        .split(|c: char| !c.is_ascii_alphanumeric())
                        .map(camel)
                        .collect();
                    let method = camel(&route.method.to_string().to_ascii_lowercase());
                    self.stacks[at].resource(
                        format!("{id}Route{method}{stem}"),
                        "AWS::ApiGatewayV2::Route",
                        json!({
                            "ApiId": { "Ref": "HttpApi" },
                            "RouteKey": route.key(),
                            "Target": { "Fn::Sub": format!("integrations/${{{integration}}}") },
                        }),
                    );
                }
                self.stacks[at].resource(
                    format!("{id}ApiPermission"),
                    "AWS::Lambda::Permission",
                    json!({
                        "Action": "lambda:InvokeFunction",
                        "FunctionName": { "Ref": id },
                        "Principal": "apigateway.amazonaws.com",
                        "SourceArn": { "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${HttpApi}/*" },
                    }),
                );
            }
            FunctionKind::WebSocket { routes } => {
                self.websocket_api(at, service);
                let integration = format!("{id}WsIntegration");
                self.stacks[at].resource(
                    integration.clone(),
                    "AWS::ApiGatewayV2::Integration",
                    json!({
                        "ApiId": { "Ref": "WebSocketApi" },
                        "IntegrationType": "AWS_PROXY",
                        "IntegrationUri": { "Fn::Sub": format!(
                            "arn:${{AWS::Partition}}:apigateway:${{AWS::Region}}:lambda:path/2015-03-31/functions/${{{id}.Arn}}/invocations"
                        ) },
                    }),
                );
                for key in routes {
                    let stem: String = key
                        .split(|c: char| !c.is_ascii_alphanumeric())
                        .map(camel)
                        .collect();
                    let route = format!("{id}WsRoute{stem}");
                    let mut props = json!({
                        "ApiId": { "Ref": "WebSocketApi" },
                        "RouteKey": key,
                        "Target": { "Fn::Sub": format!("integrations/${{{integration}}}") },
                    });
                    // Two-way routes: what the function returns is sent to the client.
                    if key != "$connect" && key != "$disconnect" {
                        props["RouteResponseSelectionExpression"] = json!("$default");
                        self.stacks[at].resource(
                            format!("{route}Response"),
                            "AWS::ApiGatewayV2::RouteResponse",
                            json!({
                                "ApiId": { "Ref": "WebSocketApi" },
                                "RouteId": { "Ref": route },
                                "RouteResponseKey": "$default",
                            }),
                        );
                    }
                    self.stacks[at].resource(route, "AWS::ApiGatewayV2::Route", props);
                }
                self.stacks[at].resource(
                    format!("{id}WsPermission"),
                    "AWS::Lambda::Permission",
                    json!({
                        "Action": "lambda:InvokeFunction",
                        "FunctionName": { "Ref": id },
                        "Principal": "apigateway.amazonaws.com",
                        "SourceArn": { "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}/*" },
                    }),
                );
            }
        }
    }

    /// The service's WebSocket API (routes selected on `$request.body.action`) and its
    /// auto-deployed stage named after the fleet's stage, once per stack.
    fn websocket_api(&mut self, at: usize, service: &str) {
        if self.stacks[at].has("WebSocketApi") {
            return;
        }
        let name = self.names.websocket_api(service);
        let stage = self.names.stage().as_str().to_owned();
        let stack = &mut self.stacks[at];
        stack.resource(
            "WebSocketApi".into(),
            "AWS::ApiGatewayV2::Api",
            json!({
                "Name": name,
                "ProtocolType": "WEBSOCKET",
                "RouteSelectionExpression": "$request.body.action",
            }),
        );
        stack.resource(
            "WebSocketApiStage".into(),
            "AWS::ApiGatewayV2::Stage",
            json!({ "ApiId": { "Ref": "WebSocketApi" }, "StageName": stage, "AutoDeploy": true }),
        );
        stack.export(
            "WebSocketApiEndpoint".into(),
            json!({ "Fn::Sub": format!("wss://${{WebSocketApi}}.execute-api.${{AWS::Region}}.amazonaws.com/{stage}") }),
        );
    }

    /// The service's HTTP API and its auto-deployed `$default` stage, once per stack.
    fn http_api(&mut self, at: usize, service: &str) {
        if self.stacks[at].has("HttpApi") {
            return;
        }
        let name = self.names.http_api(service);
        let stack = &mut self.stacks[at];
        stack.resource(
            "HttpApi".into(),
            "AWS::ApiGatewayV2::Api",
            json!({ "Name": name, "ProtocolType": "HTTP" }),
        );
        stack.resource(
            "HttpApiDefaultStage".into(),
            "AWS::ApiGatewayV2::Stage",
            json!({ "ApiId": { "Ref": "HttpApi" }, "StageName": "$default", "AutoDeploy": true }),
        );
        stack.export(
            "HttpApiEndpoint".into(),
            json!({ "Fn::GetAtt": ["HttpApi", "ApiEndpoint"] }),
        );
    }

    fn fargate(&mut self, at: usize, service: &str, f: &FargateService) {
        let c = camel(&f.name);
        let physical = self.names.fargate_service(&f.name);
        let cluster_name = self.names.stack(service);
        let queue_name = self.queue_attr(at, &f.queue, Attr::Name);
        let statements = self.statements(at, &f.permissions);
        let environment: Vec<Value> = f
            .env
            .iter()
            .map(|(k, v)| json!({ "Name": k, "Value": self.value(at, v) }))
            .collect();
        let stack = &mut self.stacks[at];
        stack.uses_workers = true;
        if !stack.has("Cluster") {
            stack.resource(
                "Cluster".into(),
                "AWS::ECS::Cluster",
                json!({
                    "ClusterName": cluster_name,
                    // RunningTaskCount, which the backlog-per-task scaling divides by,
                    // is a Container Insights metric.
                    "ClusterSettings": [ { "Name": "containerInsights", "Value": "enabled" } ],
                }),
            );
        }
        stack.resource(
            format!("{c}LogGroup"),
            "AWS::Logs::LogGroup",
            json!({ "LogGroupName": format!("/ecs/{physical}"), "RetentionInDays": LOG_RETENTION_DAYS }),
        );
        // The execution role (used by ECS to pull the image and ship logs) takes AWS's
        // managed policy: ECR's GetAuthorizationToken cannot be scoped below `*`.
        stack.resource(
            format!("{c}ExecutionRole"),
            "AWS::IAM::Role",
            json!({
                "AssumeRolePolicyDocument": assume("ecs-tasks.amazonaws.com"),
                "ManagedPolicyArns": [
                    { "Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy" }
                ],
            }),
        );
        stack.resource(
            format!("{c}TaskRole"),
            "AWS::IAM::Role",
            role_props("ecs-tasks.amazonaws.com", statements),
        );
        stack.resource(
            format!("{c}TaskDefinition"),
            "AWS::ECS::TaskDefinition",
            json!({
                "Family": physical,
                "Cpu": f.cpu.to_string(),
                "Memory": f.memory_mb.to_string(),
                "NetworkMode": "awsvpc",
                "RequiresCompatibilities": ["FARGATE"],
                "RuntimePlatform": { "CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX" },
                "ExecutionRoleArn": { "Fn::GetAtt": [format!("{c}ExecutionRole"), "Arn"] },
                "TaskRoleArn": { "Fn::GetAtt": [format!("{c}TaskRole"), "Arn"] },
                "ContainerDefinitions": [{
                    "Name": f.name,
                    "Image": { "Ref": PARAM_WORKER_IMAGE },
                    "Essential": true,
                    "StopTimeout": f.stop_timeout.as_secs(),
                    "Environment": environment,
                    "LogConfiguration": {
                        "LogDriver": "awslogs",
                        "Options": {
                            "awslogs-group": { "Ref": format!("{c}LogGroup") },
                            "awslogs-region": { "Ref": "AWS::Region" },
                            "awslogs-stream-prefix": f.name,
                        },
                    },
                }],
            }),
        );
        stack.resource(
            format!("{c}SecurityGroup"),
            "AWS::EC2::SecurityGroup",
            json!({
                "GroupDescription": format!("{physical} tasks: outbound only"),
                "VpcId": { "Ref": PARAM_VPC },
                "SecurityGroupEgress": [
                    { "IpProtocol": "-1", "CidrIp": "0.0.0.0/0", "Description": "AWS APIs and the image registry" }
                ],
            }),
        );
        stack.resource(
            format!("{c}Service"),
            "AWS::ECS::Service",
            json!({
                "ServiceName": physical,
                "Cluster": { "Ref": "Cluster" },
                "TaskDefinition": { "Ref": format!("{c}TaskDefinition") },
                "LaunchType": "FARGATE",
                "NetworkConfiguration": {
                    "AwsvpcConfiguration": {
                        "Subnets": { "Ref": PARAM_SUBNETS },
                        "SecurityGroups": [ { "Fn::GetAtt": [format!("{c}SecurityGroup"), "GroupId"] } ],
                        "AssignPublicIp": { "Ref": PARAM_ASSIGN_PUBLIC_IP },
                    }
                },
            }),
        );
        stack.resource(
            format!("{c}ScalableTarget"),
            "AWS::ApplicationAutoScaling::ScalableTarget",
            json!({
                "MinCapacity": f.scaling.min_tasks,
                "MaxCapacity": f.scaling.max_tasks,
                "ResourceId": { "Fn::Sub": format!("service/${{Cluster}}/${{{c}Service.Name}}") },
                "ScalableDimension": "ecs:service:DesiredCount",
                "ServiceNamespace": "ecs",
            }),
        );
        // Backlog per task: visible messages over running tasks. A missing task count (no
        // task running) counts as one, so the service can scale out from zero.
        stack.resource(
            format!("{c}ScalingPolicy"),
            "AWS::ApplicationAutoScaling::ScalingPolicy",
            json!({
                "PolicyName": format!("{physical}-backlog-per-task"),
                "PolicyType": "TargetTrackingScaling",
                "ScalingTargetId": { "Ref": format!("{c}ScalableTarget") },
                "TargetTrackingScalingPolicyConfiguration": {
                    "TargetValue": f.scaling.backlog_per_task,
                    "ScaleOutCooldown": 30,
                    "ScaleInCooldown": 120,
                    "CustomizedMetricSpecification": {
                        "Metrics": [
                            {
                                "Id": "visible",
                                "ReturnData": false,
                                "MetricStat": {
                                    "Metric": {
                                        "Namespace": "AWS/SQS",
                                        "MetricName": "ApproximateNumberOfMessagesVisible",
                                        "Dimensions": [ { "Name": "QueueName", "Value": queue_name } ],
                                    },
                                    "Stat": "Sum",
                                },
                            },
                            {
                                "Id": "tasks",
                                "ReturnData": false,
                                "MetricStat": {
                                    "Metric": {
                                        "Namespace": "ECS/ContainerInsights",
                                        "MetricName": "RunningTaskCount",
                                        "Dimensions": [
                                            { "Name": "ClusterName", "Value": { "Ref": "Cluster" } },
                                            { "Name": "ServiceName", "Value": { "Fn::GetAtt": [format!("{c}Service"), "Name"] } },
                                        ],
                                    },
                                    "Stat": "Average",
                                },
                            },
                            {
                                "Id": "backlogpertask",
                                "Label": "Visible messages per running task",
                                "Expression": "visible / IF(FILL(tasks, 1) < 1, 1, FILL(tasks, 1))",
                                "ReturnData": true,
                            },
                        ],
                    },
                },
            }),
        );
    }

    /// SNS→SQS subscriptions, each in the later of the topic's and the queue's stacks.
    fn subscriptions(&mut self) {
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

    /// One policy per queue, in the queue's stack, allowing every topic and rule that
    /// sends to it. SQS keeps one policy per queue, so these cannot be split.
    fn queue_policies(&mut self) {
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

    fn topics(&self) -> Vec<(usize, &'a topology::Topic)> {
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

/// The ARN of a rule as a `Fn::Sub` pattern, built from names so it needs no reference.
fn rule_arn_pattern(names: &Names, rule: &Rule) -> String {
    let path = match rule.bus {
        BusRef::Fleet => format!("{}/{}", names.bus(), names.rule(&rule.name)),
        BusRef::Default => names.rule(&rule.name),
    };
    format!("arn:${{AWS::Partition}}:events:${{AWS::Region}}:${{AWS::AccountId}}:rule/{path}")
}

/// IAM's condition on `events:source`: every entry of a `PutEvents` call must pass it.
fn source_condition(sources: &Sources) -> Value {
    match sources {
        Sources::Only(only) => json!({ "ForAllValues:StringEquals": { "events:source": only } }),
        Sources::AnyBut(not) => {
            json!({ "ForAllValues:StringNotEquals": { "events:source": not } })
        }
    }
}

fn statement(actions: &[&str], resource: Value) -> Value {
    json!({ "Effect": "Allow", "Action": actions, "Resource": resource })
}

fn assume(service: &str) -> Value {
    json!({
        "Version": POLICY_VERSION,
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": service },
            "Action": "sts:AssumeRole",
        }],
    })
}

fn role_props(service: &str, statements: Vec<Value>) -> Value {
    let mut props = json!({ "AssumeRolePolicyDocument": assume(service) });
    if !statements.is_empty() {
        props["Policies"] = json!([{
            "PolicyName": "access",
            "PolicyDocument": { "Version": POLICY_VERSION, "Statement": statements },
        }]);
    }
    props
}

/// A template under construction.
struct Stack {
    name: String,
    description: String,
    resources: Map<String, Value>,
    outputs: Map<String, Value>,
    uses_artifacts: bool,
    uses_workers: bool,
    /// A function reads the identity provider's settings ([`ValueRef::Token`]).
    uses_tokens: bool,
    /// The deployment's other settings its functions read ([`ValueRef::Setting`]).
    settings: BTreeMap<&'static str, &'static str>,
    duplicate: Option<String>,
}

impl Stack {
    fn new(name: String, names: &Names, service: &str) -> Self {
        Stack {
            name,
            description: format!("fleet {}: the {service} service", names.stage()),
            resources: Map::new(),
            outputs: Map::new(),
            uses_artifacts: false,
            uses_workers: false,
            uses_tokens: false,
            settings: BTreeMap::new(),
            duplicate: None,
        }
    }

    fn has(&self, id: &str) -> bool {
        self.resources.contains_key(id)
    }

    fn resource(&mut self, id: String, ty: &str, properties: Value) {
        if self.has(&id) {
            self.duplicate.get_or_insert(id.clone());
        }
        self.resources
            .insert(id, json!({ "Type": ty, "Properties": properties }));
    }

    fn export(&mut self, key: String, value: Value) {
        let export = format!("{}:{key}", self.name);
        self.outputs
            .insert(key, json!({ "Value": value, "Export": { "Name": export } }));
    }

    fn finish(self) -> Result<Template, SynthError> {
        if let Some(id) = self.duplicate {
            return Err(SynthError::DuplicateLogicalId {
                stack: self.name,
                id,
            });
        }
        let mut parameters = Map::new();
        if self.uses_artifacts {
            parameters.insert(
                PARAM_ARTIFACT_BUCKET.into(),
                json!({ "Type": "String", "Description": "The S3 bucket holding the Lambda artifacts." }),
            );
            parameters.insert(
                PARAM_ARTIFACT_PREFIX.into(),
                json!({ "Type": "String", "Description": "The key prefix of this build's artifacts: each function's code is <prefix>/<function>.zip." }),
            );
        }
        if self.uses_workers {
            parameters.insert(
                PARAM_WORKER_IMAGE.into(),
                json!({ "Type": "String", "Description": "The worker's container image (linux/arm64)." }),
            );
            parameters.insert(
                PARAM_VPC.into(),
                json!({ "Type": "AWS::EC2::VPC::Id", "Description": "The VPC the workers run in." }),
            );
            parameters.insert(
                PARAM_SUBNETS.into(),
                json!({ "Type": "List<AWS::EC2::Subnet::Id>", "Description": "The subnets the workers run in; they need a route to AWS APIs." }),
            );
            parameters.insert(
                PARAM_ASSIGN_PUBLIC_IP.into(),
                json!({
                    "Type": "String",
                    "AllowedValues": ["ENABLED", "DISABLED"],
                    "Default": "ENABLED",
                    "Description": "ENABLED for public subnets without a NAT gateway.",
                }),
            );
        }
        for (parameter, description) in &self.settings {
            parameters.insert(
                (*parameter).into(),
                json!({ "Type": "String", "MinLength": 1, "Description": description }),
            );
        }
        if self.uses_tokens {
            for setting in TokenSetting::ALL {
                parameters.insert(
                    setting.parameter().into(),
                    json!({ "Type": "String", "MinLength": 1, "Description": setting.description() }),
                );
            }
        }
        let mut body = json!({
            "AWSTemplateFormatVersion": "2010-09-09",
            "Description": self.description,
            "Resources": self.resources,
        });
        if !parameters.is_empty() {
            body["Parameters"] = parameters.into();
        }
        if !self.outputs.is_empty() {
            body["Outputs"] = self.outputs.into();
        }
        Ok(Template {
            stack_name: self.name,
            body,
        })
    }
}
