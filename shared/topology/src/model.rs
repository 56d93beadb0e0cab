//! The typed resources a topology is made of, and queries over them.
//!
//! Resources are named by *logical* names (`simulation`, `failures`, ...); the physical
//! names AWS sees come from [`Names`]. References between resources are logical names
//! too ([`ResourceRef`], [`ValueRef`]), resolved by synthesis and deployment.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::names::{Names, Stage};

/// The whole fleet for one stage: the `core` service first, then one per microservice.
#[derive(Debug, Clone)]
pub struct Topology {
    pub stage: Stage,
    pub services: Vec<Service>,
    /// The folder holding state machine definitions ([`StateMachine::definition_file`]).
    pub definitions_dir: PathBuf,
}

/// A microservice (or `core`): one CloudFormation stack, `fleet-<stage>-<name>`.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub resources: Vec<Resource>,
}

/// Every kind of resource a service can own.
#[derive(Debug, Clone)]
pub enum Resource {
    EventBus(EventBus),
    Queue(Queue),
    Topic(Topic),
    Table(Table),
    Bucket(Bucket),
    StateMachine(StateMachine),
    Rule(Rule),
    Function(Function),
    FargateService(FargateService),
}

/// The fleet's event bus, `fleet-<stage>`: the only way services talk to each other.
/// Exactly one exists, in `core`.
#[derive(Debug, Clone, Default)]
pub struct EventBus;

/// A standard SQS queue, optionally with a dead-letter queue `<name>-dlq`.
#[derive(Debug, Clone)]
pub struct Queue {
    pub name: String,
    pub visibility_timeout: Duration,
    pub retention: Duration,
    pub dlq: Option<Dlq>,
    /// Always `false`: FIFO queues are not supported yet, and validation says so.
    pub fifo: bool,
}

/// The dead-letter queue of a [`Queue`]: it receives a message after `max_receive_count`
/// failed receives, and keeps it for [`Queue::DLQ_RETENTION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dlq {
    pub max_receive_count: u32,
}

/// An SNS topic and the queues subscribed to it (SNS→SQS, raw message delivery off so
/// the SNS envelope and its message attributes survive).
#[derive(Debug, Clone)]
pub struct Topic {
    pub name: String,
    /// Logical names of the subscribed queues.
    pub subscriptions: Vec<String>,
}

/// A DynamoDB table, billed per request.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub partition_key: Key,
    pub sort_key: Option<Key>,
    pub ttl_attribute: Option<String>,
    pub gsis: Vec<Gsi>,
}

/// A key attribute of a table or index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub name: String,
    pub kind: KeyKind,
}

/// The DynamoDB scalar type of a key attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    String,
    Number,
    Binary,
}

/// A global secondary index projecting all attributes.
#[derive(Debug, Clone)]
pub struct Gsi {
    pub name: String,
    pub partition_key: Key,
    pub sort_key: Option<Key>,
}

/// An S3 bucket, private and encrypted.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub name: String,
    /// Which web pages may read objects through links they hold (CORS); none by default.
    pub cors: Option<BucketCors>,
}

/// A bucket's one CORS rule: pages of `allowed_origins` may `GET` objects cross-origin.
/// CORS grants no access by itself: a request still needs a valid signature (a presigned
/// link), it only lets a page read the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketCors {
    pub allowed_origins: Vec<String>,
    /// How long a browser may cache a preflight's answer.
    pub max_age_secs: u32,
}

impl BucketCors {
    /// The only method a rule allows: reading objects.
    pub const METHODS: [&str; 2] = ["GET", "HEAD"];
}

/// A Standard Step Functions state machine whose definition lives in a file of
/// [`Topology::definitions_dir`], with `${Key}` placeholders filled from `substitutions`.
#[derive(Debug, Clone)]
pub struct StateMachine {
    pub name: String,
    /// A file name such as `simulation-job.asl.json`.
    pub definition_file: String,
    /// `(Key, value)` for each `${Key}` in the definition.
    pub substitutions: Vec<(String, ValueRef)>,
    /// What the state machine's role may do.
    pub permissions: Vec<Permission>,
}

/// An EventBridge rule routing matching events to targets.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub bus: BusRef,
    pub event_pattern: Value,
    pub targets: Vec<Target>,
}

/// Which bus a rule listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BusRef {
    /// The fleet's bus, where the services' events go.
    #[default]
    Fleet,
    /// The account's default bus, where AWS services (Step Functions, ECS) report.
    Default,
}

/// Where a rule delivers: logical names of resources in the topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Queue(String),
    StateMachine(String),
    Function(String),
}

/// A Lambda function (`provided.al2023`, arm64). Its `name` is its handler's name and the
/// stem of its code artifact `<ArtifactPrefix>/<name>.zip`.
#[derive(Debug, Clone)]
pub struct Function {
    pub name: String,
    pub kind: FunctionKind,
    /// The topic failed asynchronous invocations go to: the failures topic, required for
    /// (and only for) [`FunctionKind::Async`].
    pub dead_letter: Option<String>,
    pub env: Vec<(String, ValueRef)>,
    pub permissions: Vec<Permission>,
    pub memory_mb: u32,
    pub timeout: Duration,
}

/// How a function is invoked.
#[derive(Debug, Clone)]
pub enum FunctionKind {
    /// Invoked asynchronously by EventBridge rules.
    Async,
    /// Fed by an SQS event source mapping reporting partial batch failures.
    Sqs { queue: String, batch_size: u32 },
    /// Serves routes of its service's HTTP API.
    Http { routes: Vec<Route> },
    /// Serves route keys of its service's WebSocket API (API Gateway WebSocket, routes
    /// selected on `$request.body.action`): `$connect`, `$disconnect`, `$default` or an
    /// action such as `subscribe`.
    WebSocket { routes: Vec<String> },
}

/// An HTTP API route, e.g. `GET /jobs/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    pub path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

/// A queue-fed worker service on Fargate, scaled on the backlog per running task.
#[derive(Debug, Clone)]
pub struct FargateService {
    pub name: String,
    /// CPU units (256 = a quarter vCPU).
    pub cpu: u32,
    pub memory_mb: u32,
    /// How long a task may drain after SIGTERM; Fargate allows at most 120 s.
    pub stop_timeout: Duration,
    /// The logical name of the queue it consumes.
    pub queue: String,
    pub scaling: Scaling,
    pub env: Vec<(String, ValueRef)>,
    pub permissions: Vec<Permission>,
}

/// Target tracking on `ApproximateNumberOfMessagesVisible / running tasks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scaling {
    pub min_tasks: u32,
    pub max_tasks: u32,
    pub backlog_per_task: u32,
}

/// An IAM statement: `actions` (never a wildcard) on one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    pub actions: Vec<&'static str>,
    pub resource: ResourceRef,
    /// For `events:PutEvents`: the `source`s the role may put (IAM's `events:source`
    /// condition key). Consumers trust a source (the notifier takes job owners only from
    /// `fleet.jobs`), so every role that publishes names its sources; the validation
    /// refuses a `PutEvents` without them.
    pub sources: Option<Sources>,
}

/// The `source`s a publishing role may put on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sources {
    /// Only these (the role's own service's).
    Only(Vec<&'static str>),
    /// Any source but these: a role that publishes what others ask for (the scheduler)
    /// must never speak as a service whose events grant something.
    AnyBut(Vec<&'static str>),
}

impl Sources {
    /// Whether a role with this condition may put `source`.
    pub fn admits(&self, source: &str) -> bool {
        match self {
            Sources::Only(only) => only.contains(&source),
            Sources::AnyBut(not) => !not.contains(&source),
        }
    }
}

/// A resource as an IAM policy names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceRef {
    /// The fleet's event bus.
    Bus,
    Queue(String),
    /// The dead-letter queue of the named queue.
    Dlq(String),
    Topic(String),
    Table(String),
    /// Every index of the named table (`<table arn>/index/*`).
    TableIndexes(String),
    Bucket(String),
    /// Every object of the named bucket (`<bucket arn>/*`).
    BucketObjects(String),
    StateMachine(String),
    /// Every execution of the named state machine.
    Executions(String),
    Function(String),
    /// Resource `*`, valid only for [`TASK_TOKEN_ACTIONS`]: Step Functions task tokens
    /// are not scoped to a state machine, so these calls cannot name one.
    TaskTokens,
    /// The `@connections` of the named service's WebSocket API (for
    /// `execute-api:ManageConnections`); only that service's own resources may use it.
    Connections(String),
    /// Every SSM parameter under `/fleet/<stage>/<path>/` (secrets created out of band,
    /// e.g. webhook signing keys).
    Parameters(String),
}

/// The only actions that may use [`ResourceRef::TaskTokens`] (resource `*`).
pub const TASK_TOKEN_ACTIONS: [&str; 3] = [
    "states:SendTaskSuccess",
    "states:SendTaskFailure",
    "states:SendTaskHeartbeat",
];

/// A value computed from the topology: an environment variable of a function or task,
/// or a state machine definition substitution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueRef {
    Literal(String),
    Stage,
    Region,
    BusName,
    BusArn,
    QueueUrl(String),
    QueueArn(String),
    DlqUrl(String),
    DlqArn(String),
    TopicArn(String),
    TableName(String),
    TableArn(String),
    BucketName(String),
    StateMachineArn(String),
    FunctionArn(String),
    /// The `@connections` management endpoint of the named service's WebSocket API
    /// (`https://<api>.execute-api.<region>.amazonaws.com/<stage>`); only that service's
    /// own resources may use it.
    ConnectionsEndpoint(String),
    /// `/fleet/<stage>/<path>`: where the stage's SSM parameters under `path` live.
    ParameterPath(String),
    /// A setting of the deployment's identity provider, which the topology does not
    /// know: a parameter of the stack that uses it (see [`TokenSetting`]).
    Token(TokenSetting),
    /// Something else only the deployment knows (e.g. which webhook providers it talks
    /// to): a `String` parameter of the stack that uses it, named `parameter`.
    Setting {
        parameter: &'static str,
        description: &'static str,
    },
}

/// What a service that verifies bearer tokens (RS256 JWTs) needs to know about the
/// identity provider that issues them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TokenSetting {
    Issuer,
    Audience,
    JwksUrl,
}

impl TokenSetting {
    pub const ALL: [TokenSetting; 3] = [
        TokenSetting::Issuer,
        TokenSetting::Audience,
        TokenSetting::JwksUrl,
    ];

    /// The stack parameter that carries it.
    pub fn parameter(self) -> &'static str {
        match self {
            TokenSetting::Issuer => "JwtIssuer",
            TokenSetting::Audience => "JwtAudience",
            TokenSetting::JwksUrl => "JwksUrl",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            TokenSetting::Issuer => "The issuer (iss) every accepted token names.",
            TokenSetting::Audience => "The audience (aud) every accepted token names.",
            TokenSetting::JwksUrl => "The HTTPS URL of the issuer's JSON Web Key Set.",
        }
    }
}

/// The kinds of resource, as reports and errors name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    EventBus,
    Queue,
    DeadLetterQueue,
    QueuePolicy,
    Topic,
    Subscription,
    Table,
    Bucket,
    StateMachine,
    Rule,
    RuleTarget,
    Function,
    FargateService,
}

/// A dead-letter queue and what feeds it, for the ops tools' redrive and inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The service owning the dead-letter queue.
    pub service: String,
    /// The physical name of the dead-letter queue.
    pub queue: String,
    pub source: DeadLetterSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterSource {
    /// The redrive policy of a queue (logical name) moves messages here.
    Queue {
        name: String,
        max_receive_count: u32,
    },
    /// Failed asynchronous invocations of `functions` go to `topic`, which this queue
    /// (logical name `name`) is subscribed to.
    Functions {
        name: String,
        topic: String,
        functions: Vec<String>,
    },
}

/// The folder of state machine definitions in this workspace (`statemachines/`).
pub fn default_definitions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../statemachines")
}

impl Topology {
    /// A topology reading state machine definitions from [`default_definitions_dir`].
    pub fn new(stage: &Stage, services: Vec<Service>) -> Self {
        Topology {
            stage: stage.clone(),
            services,
            definitions_dir: default_definitions_dir(),
        }
    }

    pub fn names(&self) -> Names {
        Names::new(&self.stage)
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// Every resource with the service owning it, in definition order.
    pub fn resources(&self) -> impl Iterator<Item = (&Service, &Resource)> + '_ {
        self.services
            .iter()
            .flat_map(|s| s.resources.iter().map(move |r| (s, r)))
    }

    pub fn event_bus(&self) -> Option<&EventBus> {
        self.resources().find_map(|(_, r)| match r {
            Resource::EventBus(b) => Some(b),
            _ => None,
        })
    }

    pub fn queues(&self) -> impl Iterator<Item = &Queue> + '_ {
        self.resources().filter_map(|(_, r)| match r {
            Resource::Queue(q) => Some(q),
            _ => None,
        })
    }

    pub fn topics(&self) -> impl Iterator<Item = &Topic> + '_ {
        self.resources().filter_map(|(_, r)| match r {
            Resource::Topic(t) => Some(t),
            _ => None,
        })
    }

    pub fn tables(&self) -> impl Iterator<Item = &Table> + '_ {
        self.resources().filter_map(|(_, r)| match r {
            Resource::Table(t) => Some(t),
            _ => None,
        })
    }

    pub fn buckets(&self) -> impl Iterator<Item = &Bucket> + '_ {
        self.resources().filter_map(|(_, r)| match r {
            Resource::Bucket(b) => Some(b),
            _ => None,
        })
    }

    pub fn state_machines(&self) -> impl Iterator<Item = &StateMachine> + '_ {
        self.resources().filter_map(|(_, r)| match r {
            Resource::StateMachine(m) => Some(m),
            _ => None,
        })
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> + '_ {
        self.resources().filter_map(|(_, r)| match r {
            Resource::Rule(rule) => Some(rule),
            _ => None,
        })
    }

    pub fn functions(&self) -> impl Iterator<Item = &Function> + '_ {
        self.resources().filter_map(|(_, r)| match r {
            Resource::Function(f) => Some(f),
            _ => None,
        })
    }

    pub fn fargate_services(&self) -> impl Iterator<Item = &FargateService> + '_ {
        self.resources().filter_map(|(_, r)| match r {
            Resource::FargateService(f) => Some(f),
            _ => None,
        })
    }

    pub fn queue(&self, name: &str) -> Option<&Queue> {
        self.queues().find(|q| q.name == name)
    }

    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics().find(|t| t.name == name)
    }

    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables().find(|t| t.name == name)
    }

    pub fn bucket(&self, name: &str) -> Option<&Bucket> {
        self.buckets().find(|b| b.name == name)
    }

    pub fn state_machine(&self, name: &str) -> Option<&StateMachine> {
        self.state_machines().find(|m| m.name == name)
    }

    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules().find(|r| r.name == name)
    }

    pub fn function(&self, name: &str) -> Option<&Function> {
        self.functions().find(|f| f.name == name)
    }

    pub fn fargate_service(&self, name: &str) -> Option<&FargateService> {
        self.fargate_services().find(|f| f.name == name)
    }

    /// Every dead-letter queue and its source: the DLQ of each queue with a redrive
    /// policy, and each queue subscribed to a topic that functions use as dead letter.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        let names = self.names();
        let mut out = Vec::new();
        for (service, resource) in self.resources() {
            match resource {
                Resource::Queue(q) => {
                    if let Some(dlq) = q.dlq {
                        out.push(DeadLetter {
                            service: service.name.clone(),
                            queue: names.dlq(&q.name),
                            source: DeadLetterSource::Queue {
                                name: q.name.clone(),
                                max_receive_count: dlq.max_receive_count,
                            },
                        });
                    }
                }
                Resource::Topic(t) => {
                    let functions: Vec<String> = self
                        .functions()
                        .filter(|f| f.dead_letter.as_deref() == Some(t.name.as_str()))
                        .map(|f| f.name.clone())
                        .collect();
                    if functions.is_empty() {
                        continue;
                    }
                    for queue in &t.subscriptions {
                        let owner = self.owner_of_queue(queue).unwrap_or(service);
                        out.push(DeadLetter {
                            service: owner.name.clone(),
                            queue: names.queue(queue),
                            source: DeadLetterSource::Functions {
                                name: queue.clone(),
                                topic: t.name.clone(),
                                functions: functions.clone(),
                            },
                        });
                    }
                }
                _ => {}
            }
        }
        out
    }

    fn owner_of_queue(&self, name: &str) -> Option<&Service> {
        self.resources()
            .find(|(_, r)| matches!(r, Resource::Queue(q) if q.name == name))
            .map(|(s, _)| s)
    }
}

impl Service {
    pub fn new(name: impl Into<String>) -> Self {
        Service {
            name: name.into(),
            resources: Vec::new(),
        }
    }

    /// Adds a resource.
    pub fn with(mut self, resource: impl Into<Resource>) -> Self {
        self.resources.push(resource.into());
        self
    }
}

impl Resource {
    pub fn kind(&self) -> ResourceKind {
        match self {
            Resource::EventBus(_) => ResourceKind::EventBus,
            Resource::Queue(_) => ResourceKind::Queue,
            Resource::Topic(_) => ResourceKind::Topic,
            Resource::Table(_) => ResourceKind::Table,
            Resource::Bucket(_) => ResourceKind::Bucket,
            Resource::StateMachine(_) => ResourceKind::StateMachine,
            Resource::Rule(_) => ResourceKind::Rule,
            Resource::Function(_) => ResourceKind::Function,
            Resource::FargateService(_) => ResourceKind::FargateService,
        }
    }

    /// The logical name; the bus has none and answers `bus`.
    pub fn name(&self) -> &str {
        match self {
            Resource::EventBus(_) => "bus",
            Resource::Queue(q) => &q.name,
            Resource::Topic(t) => &t.name,
            Resource::Table(t) => &t.name,
            Resource::Bucket(b) => &b.name,
            Resource::StateMachine(m) => &m.name,
            Resource::Rule(r) => &r.name,
            Resource::Function(f) => &f.name,
            Resource::FargateService(f) => &f.name,
        }
    }
}

macro_rules! into_resource {
    ($($ty:ident),*) => {$(
        impl From<$ty> for Resource {
            fn from(r: $ty) -> Self {
                Resource::$ty(r)
            }
        }
    )*};
}
into_resource!(
    EventBus,
    Queue,
    Topic,
    Table,
    Bucket,
    StateMachine,
    Rule,
    Function,
    FargateService
);

impl Queue {
    /// SQS's defaults: 30 s visibility, 4 days retention.
    pub const DEFAULT_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_RETENTION: Duration = Duration::from_secs(4 * 24 * 3600);
    /// Dead-letter queues keep messages as long as SQS allows: 14 days.
    pub const DLQ_RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);

    pub fn new(name: impl Into<String>) -> Self {
        Queue {
            name: name.into(),
            visibility_timeout: Self::DEFAULT_VISIBILITY_TIMEOUT,
            retention: Self::DEFAULT_RETENTION,
            dlq: None,
            fifo: false,
        }
    }

    pub fn with_visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout;
        self
    }

    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Adds the dead-letter queue `<name>-dlq`.
    pub fn with_dlq(mut self, max_receive_count: u32) -> Self {
        self.dlq = Some(Dlq { max_receive_count });
        self
    }
}

impl Topic {
    pub fn new(name: impl Into<String>) -> Self {
        Topic {
            name: name.into(),
            subscriptions: Vec::new(),
        }
    }

    /// Subscribes the queue with this logical name.
    pub fn subscribe(mut self, queue: impl Into<String>) -> Self {
        self.subscriptions.push(queue.into());
        self
    }
}

impl Key {
    pub fn string(name: impl Into<String>) -> Self {
        Key {
            name: name.into(),
            kind: KeyKind::String,
        }
    }

    pub fn number(name: impl Into<String>) -> Self {
        Key {
            name: name.into(),
            kind: KeyKind::Number,
        }
    }

    pub fn binary(name: impl Into<String>) -> Self {
        Key {
            name: name.into(),
            kind: KeyKind::Binary,
        }
    }
}

impl KeyKind {
    /// DynamoDB's spelling: `S`, `N` or `B`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::String => "S",
            KeyKind::Number => "N",
            KeyKind::Binary => "B",
        }
    }
}

impl Table {
    pub fn new(name: impl Into<String>, partition_key: Key) -> Self {
        Table {
            name: name.into(),
            partition_key,
            sort_key: None,
            ttl_attribute: None,
            gsis: Vec::new(),
        }
    }

    pub fn with_sort_key(mut self, key: Key) -> Self {
        self.sort_key = Some(key);
        self
    }

    pub fn with_ttl(mut self, attribute: impl Into<String>) -> Self {
        self.ttl_attribute = Some(attribute.into());
        self
    }

    pub fn with_gsi(mut self, gsi: Gsi) -> Self {
        self.gsis.push(gsi);
        self
    }

    /// Every key attribute of the table and its indexes, each once, in order of first use.
    pub fn key_attributes(&self) -> Vec<&Key> {
        let mut keys: Vec<&Key> = Vec::new();
        let all = std::iter::once(&self.partition_key)
            .chain(self.sort_key.as_ref())
            .chain(
                self.gsis
                    .iter()
                    .flat_map(|g| std::iter::once(&g.partition_key).chain(g.sort_key.as_ref())),
            );
        for key in all {
            if !keys.iter().any(|k| k.name == key.name) {
                keys.push(key);
            }
        }
        keys
    }
}

impl Gsi {
    pub fn new(name: impl Into<String>, partition_key: Key) -> Self {
        Gsi {
            name: name.into(),
            partition_key,
            sort_key: None,
        }
    }

    pub fn with_sort_key(mut self, key: Key) -> Self {
        self.sort_key = Some(key);
        self
    }
}

impl Bucket {
    pub fn new(name: impl Into<String>) -> Self {
        Bucket {
            name: name.into(),
            cors: None,
        }
    }

    /// Lets pages of `cors.allowed_origins` read objects through presigned links.
    pub fn with_cors(mut self, cors: BucketCors) -> Self {
        self.cors = Some(cors);
        self
    }
}

impl StateMachine {
    pub fn new(name: impl Into<String>, definition_file: impl Into<String>) -> Self {
        StateMachine {
            name: name.into(),
            definition_file: definition_file.into(),
            substitutions: Vec::new(),
            permissions: Vec::new(),
        }
    }

    /// Fills `${key}` in the definition with `value`.
    pub fn substitute(mut self, key: impl Into<String>, value: ValueRef) -> Self {
        self.substitutions.push((key.into(), value));
        self
    }

    pub fn allow(mut self, actions: &[&'static str], resource: ResourceRef) -> Self {
        self.permissions.push(Permission::new(actions, resource));
        self
    }

    /// May put events on the fleet bus with these `source`s only.
    pub fn publish(mut self, sources: Sources) -> Self {
        self.permissions.push(Permission::publish(sources));
        self
    }
}

impl Rule {
    /// A rule on the fleet bus.
    pub fn new(name: impl Into<String>, event_pattern: Value) -> Self {
        Rule {
            name: name.into(),
            bus: BusRef::Fleet,
            event_pattern,
            targets: Vec::new(),
        }
    }

    pub fn on_bus(mut self, bus: BusRef) -> Self {
        self.bus = bus;
        self
    }

    pub fn target(mut self, target: Target) -> Self {
        self.targets.push(target);
        self
    }
}

impl Function {
    pub const DEFAULT_MEMORY_MB: u32 = 256;
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    fn new(name: impl Into<String>, kind: FunctionKind) -> Self {
        Function {
            name: name.into(),
            kind,
            dead_letter: None,
            env: Vec::new(),
            permissions: Vec::new(),
            memory_mb: Self::DEFAULT_MEMORY_MB,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// An EventBridge-invoked function; failed invocations go to the failures topic.
    pub fn asynchronous(name: impl Into<String>) -> Self {
        let mut f = Function::new(name, FunctionKind::Async);
        f.dead_letter = Some(crate::core::FAILURES.to_owned());
        f
    }

    /// A function fed by `queue` in batches of up to `batch_size`.
    pub fn sqs(name: impl Into<String>, queue: impl Into<String>, batch_size: u32) -> Self {
        Function::new(
            name,
            FunctionKind::Sqs {
                queue: queue.into(),
                batch_size,
            },
        )
    }

    /// A function serving `routes` of its service's HTTP API.
    pub fn http(name: impl Into<String>, routes: Vec<Route>) -> Self {
        Function::new(name, FunctionKind::Http { routes })
    }

    /// A function serving route keys (`$connect`, `$disconnect`, `$default`, actions) of
    /// its service's WebSocket API.
    pub fn websocket(name: impl Into<String>, routes: &[&str]) -> Self {
        let routes = routes.iter().map(|r| (*r).to_owned()).collect();
        Function::new(name, FunctionKind::WebSocket { routes })
    }

    pub fn env(mut self, name: impl Into<String>, value: ValueRef) -> Self {
        self.env.push((name.into(), value));
        self
    }

    /// `JWT_ISSUER`, `JWT_AUDIENCE` and `JWKS_URL`, as `shared/auth`'s verifier reads
    /// them, from the stack's parameters.
    pub fn with_token_settings(self) -> Self {
        self.env(
            crate::env::JWT_ISSUER,
            ValueRef::Token(TokenSetting::Issuer),
        )
        .env(
            crate::env::JWT_AUDIENCE,
            ValueRef::Token(TokenSetting::Audience),
        )
        .env(crate::env::JWKS_URL, ValueRef::Token(TokenSetting::JwksUrl))
    }

    pub fn allow(mut self, actions: &[&'static str], resource: ResourceRef) -> Self {
        self.permissions.push(Permission::new(actions, resource));
        self
    }

    /// May put events on the fleet bus with these `source`s only.
    pub fn publish(mut self, sources: Sources) -> Self {
        self.permissions.push(Permission::publish(sources));
        self
    }

    pub fn with_memory_mb(mut self, memory_mb: u32) -> Self {
        self.memory_mb = memory_mb;
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Route {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Route {
            method,
            path: path.into(),
        }
    }

    /// API Gateway's route key, e.g. `GET /jobs/{id}`.
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        })
    }
}

impl FargateService {
    /// Fargate's ceiling on a container's stop timeout.
    pub const MAX_STOP_TIMEOUT: Duration = Duration::from_secs(120);

    pub fn env(mut self, name: impl Into<String>, value: ValueRef) -> Self {
        self.env.push((name.into(), value));
        self
    }

    pub fn allow(mut self, actions: &[&'static str], resource: ResourceRef) -> Self {
        self.permissions.push(Permission::new(actions, resource));
        self
    }

    /// May put events on the fleet bus with these `source`s only.
    pub fn publish(mut self, sources: Sources) -> Self {
        self.permissions.push(Permission::publish(sources));
        self
    }
}

impl Permission {
    pub fn new(actions: &[&'static str], resource: ResourceRef) -> Self {
        Permission {
            actions: actions.to_vec(),
            resource,
            sources: None,
        }
    }

    /// `events:PutEvents` on the fleet bus, for `sources` only.
    pub fn publish(sources: Sources) -> Self {
        Permission {
            actions: vec!["events:PutEvents"],
            resource: ResourceRef::Bus,
            sources: Some(sources),
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResourceKind::EventBus => "event bus",
            ResourceKind::Queue => "queue",
            ResourceKind::DeadLetterQueue => "dead-letter queue",
            ResourceKind::QueuePolicy => "queue policy",
            ResourceKind::Topic => "topic",
            ResourceKind::Subscription => "subscription",
            ResourceKind::Table => "table",
            ResourceKind::Bucket => "bucket",
            ResourceKind::StateMachine => "state machine",
            ResourceKind::Rule => "rule",
            ResourceKind::RuleTarget => "rule target",
            ResourceKind::Function => "function",
            ResourceKind::FargateService => "fargate service",
        })
    }
}
