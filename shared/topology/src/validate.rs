//! Checks a topology before anything is synthesized or deployed, so mistakes surface as
//! one readable list instead of a failed stack update.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use crate::core::FAILURES;
use crate::model::{
    FargateService, Function, FunctionKind, Permission, Queue, Resource, ResourceRef, Rule,
    StateMachine, TASK_TOKEN_ACTIONS, Table, Target, Topology, ValueRef,
};
use crate::names::Stage;

/// Everything wrong with a topology.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid topology: {}", problems.join("; "))]
pub struct TopologyError {
    pub problems: Vec<String>,
}

/// The name of the service that must come first and hold the bus.
pub const CORE: &str = "core";

/// The kinds of resource that references can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefKind {
    Queue,
    Topic,
    Table,
    Bucket,
    StateMachine,
    Function,
    Rule,
    FargateService,
    /// A service's WebSocket API, named by the service.
    WebSocketApi,
}

/// Which service (by index) owns each named resource.
#[derive(Debug, Default)]
pub struct Owners {
    map: HashMap<(RefKind, String), usize>,
}

impl Owners {
    /// Indexes every named resource of `topology` by its owning service.
    pub fn new(topology: &Topology) -> Self {
        let mut map = HashMap::new();
        for (index, service) in topology.services.iter().enumerate() {
            for resource in &service.resources {
                let kind = match resource {
                    Resource::EventBus(_) => continue,
                    Resource::Queue(_) => RefKind::Queue,
                    Resource::Topic(_) => RefKind::Topic,
                    Resource::Table(_) => RefKind::Table,
                    Resource::Bucket(_) => RefKind::Bucket,
                    Resource::StateMachine(_) => RefKind::StateMachine,
                    Resource::Rule(_) => RefKind::Rule,
                    Resource::Function(_) => RefKind::Function,
                    Resource::FargateService(_) => RefKind::FargateService,
                };
                map.entry((kind, resource.name().to_owned()))
                    .or_insert(index);
                if let Resource::Function(f) = resource
                    && matches!(f.kind, FunctionKind::WebSocket { .. })
                {
                    map.entry((RefKind::WebSocketApi, service.name.clone()))
                        .or_insert(index);
                }
            }
        }
        Owners { map }
    }

    /// The index of the service owning the resource of `kind` named `name`.
    pub fn get(&self, kind: RefKind, name: &str) -> Option<usize> {
        self.map.get(&(kind, name.to_owned())).copied()
    }

    /// The owner of what a reference names; the bus belongs to `core` (index 0).
    pub fn of_ref(&self, r: &ResourceRef) -> Option<usize> {
        match r {
            // Parameter paths are names, not resources of a stack: anyone may name one.
            ResourceRef::Bus | ResourceRef::TaskTokens | ResourceRef::Parameters(_) => Some(0),
            ResourceRef::Queue(n) | ResourceRef::Dlq(n) => self.get(RefKind::Queue, n),
            ResourceRef::Topic(n) => self.get(RefKind::Topic, n),
            ResourceRef::Table(n) | ResourceRef::TableIndexes(n) => self.get(RefKind::Table, n),
            ResourceRef::Bucket(n) | ResourceRef::BucketObjects(n) => self.get(RefKind::Bucket, n),
            ResourceRef::StateMachine(n) | ResourceRef::Executions(n) => {
                self.get(RefKind::StateMachine, n)
            }
            ResourceRef::Function(n) => self.get(RefKind::Function, n),
            ResourceRef::Connections(s) => self.get(RefKind::WebSocketApi, s),
        }
    }

    /// The owner of what a value names; stage-wide values belong to `core` (index 0).
    pub fn of_value(&self, v: &ValueRef) -> Option<usize> {
        match v {
            ValueRef::Literal(_)
            | ValueRef::Stage
            | ValueRef::Region
            | ValueRef::ParameterPath(_)
            | ValueRef::Token(_)
            | ValueRef::Setting { .. } => Some(0),
            ValueRef::BusName | ValueRef::BusArn => Some(0),
            ValueRef::QueueUrl(n)
            | ValueRef::QueueArn(n)
            | ValueRef::DlqUrl(n)
            | ValueRef::DlqArn(n) => self.get(RefKind::Queue, n),
            ValueRef::TopicArn(n) => self.get(RefKind::Topic, n),
            ValueRef::TableName(n) | ValueRef::TableArn(n) => self.get(RefKind::Table, n),
            ValueRef::BucketName(n) => self.get(RefKind::Bucket, n),
            ValueRef::StateMachineArn(n) => self.get(RefKind::StateMachine, n),
            ValueRef::FunctionArn(n) => self.get(RefKind::Function, n),
            ValueRef::ConnectionsEndpoint(s) => self.get(RefKind::WebSocketApi, s),
        }
    }
}

/// `simulation-jobs` → `SimulationJobs`: the stem of CloudFormation logical ids.
pub fn camel(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

impl Topology {
    /// Checks names, limits and references; synthesis and deployment call this first.
    pub fn validate(&self) -> Result<(), TopologyError> {
        let mut v = Validator {
            topology: self,
            owners: Owners::new(self),
            problems: Vec::new(),
            current: 0,
        };
        v.run();
        if v.problems.is_empty() {
            Ok(())
        } else {
            Err(TopologyError {
                problems: v.problems,
            })
        }
    }
}

/// `fleet-` + the longest stage + `-`: names are checked against the longest stage so a
/// topology valid for `dev` is valid for every stage.
const PREFIX_LEN: usize = "fleet-".len() + Stage::MAX_LEN + 1;

struct Validator<'a> {
    topology: &'a Topology,
    owners: Owners,
    problems: Vec<String>,
    /// The index of the service being checked.
    current: usize,
}

impl Validator<'_> {
    fn problem(&mut self, text: String) {
        self.problems.push(text);
    }

    fn run(&mut self) {
        let topology = self.topology;
        match topology.services.first() {
            Some(first) if first.name == CORE => {}
            _ => self.problem(format!("the first service must be `{CORE}`")),
        }
        let mut service_names = BTreeSet::new();
        let mut buses = 0;
        // Physical names per AWS namespace, and CloudFormation logical-id stems per kind.
        let mut namespaces: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        let mut stems: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();

        for (index, service) in topology.services.iter().enumerate() {
            self.current = index;
            self.check_name("service", &service.name, 64);
            if !service_names.insert(service.name.as_str()) {
                self.problem(format!("service {} is defined twice", service.name));
            }
            for resource in &service.resources {
                if let Resource::EventBus(_) = resource {
                    buses += 1;
                    if index != 0 {
                        self.problem(format!(
                            "the event bus belongs to `{CORE}`, not to {}",
                            service.name
                        ));
                    }
                    continue;
                }
                let name = resource.name();
                let (namespace, limit) = match resource {
                    Resource::Queue(_) => ("queue", 80 - "-dlq".len()),
                    Resource::Topic(_) => ("topic", 256),
                    Resource::Table(_) => ("table", 255),
                    Resource::Bucket(_) => ("bucket", 63),
                    Resource::StateMachine(_) => ("state machine", 80),
                    Resource::Rule(_) => ("rule", 64),
                    Resource::Function(_) => ("function", 64),
                    Resource::FargateService(_) => ("fargate service", 255),
                    Resource::EventBus(_) => unreachable!("the bus was handled above"),
                };
                self.check_name(namespace, name, limit);
                let mut physical = vec![name.to_owned()];
                if let Resource::Queue(q) = resource
                    && q.dlq.is_some()
                {
                    physical.push(format!("{name}-dlq"));
                }
                for p in physical {
                    if !namespaces.entry(namespace).or_default().insert(p.clone()) {
                        self.problem(format!("{namespace} name {p} is used twice"));
                    }
                }
                if !stems.entry(namespace).or_default().insert(camel(name)) {
                    self.problem(format!(
                        "{namespace} {name} differs from another {namespace} only in hyphens"
                    ));
                }
                match resource {
                    Resource::Queue(q) => self.check_queue(q),
                    Resource::Topic(t) => {
                        for queue in &t.subscriptions {
                            if self.owners.get(RefKind::Queue, queue).is_none() {
                                self.problem(format!(
                                    "topic {} subscribes queue {queue}, which is not defined",
                                    t.name
                                ));
                            }
                        }
                    }
                    Resource::Table(t) => self.check_table(t),
                    Resource::StateMachine(m) => self.check_state_machine(m),
                    Resource::Rule(r) => self.check_rule(r),
                    Resource::Function(f) => self.check_function(f),
                    Resource::FargateService(f) => self.check_fargate(f),
                    Resource::Bucket(_) | Resource::EventBus(_) => {}
                }
            }
        }
        if buses != 1 {
            self.problem(format!(
                "there must be exactly one event bus, in `{CORE}`; found {buses}"
            ));
        }
        for service in &topology.services {
            let mut keys = BTreeSet::new();
            for resource in &service.resources {
                let Resource::Function(f) = resource else {
                    continue;
                };
                let routes: Vec<String> = match &f.kind {
                    FunctionKind::Http { routes } => routes.iter().map(|r| r.key()).collect(),
                    FunctionKind::WebSocket { routes } => {
                        routes.iter().map(|r| format!("WebSocket {r}")).collect()
                    }
                    FunctionKind::Async | FunctionKind::Sqs { .. } => continue,
                };
                for key in routes {
                    if !keys.insert(key.clone()) {
                        self.problem(format!(
                            "route {key} is served twice in service {}",
                            service.name
                        ));
                    }
                }
            }
        }
    }

    /// Logical names are `[a-z0-9-]`, start with a letter, end with a letter or digit,
    /// and leave room for the prefix within the kind's physical-name `limit`.
    fn check_name(&mut self, what: &str, name: &str, limit: usize) {
        let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
            && !name.ends_with('-')
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            self.problem(format!(
                "{what} name {name:?} must be [a-z0-9-], start with a letter and not end with -"
            ));
        }
        if PREFIX_LEN + name.len() > limit {
            self.problem(format!(
                "{what} name {name} is too long: with the longest stage its physical name \
                 would exceed {limit} characters"
            ));
        }
    }

    fn check_queue(&mut self, q: &Queue) {
        if q.fifo {
            self.problem(format!("queue {}: FIFO queues are not supported", q.name));
        }
        if q.visibility_timeout > Duration::from_secs(12 * 3600) {
            self.problem(format!(
                "queue {}: visibility timeout exceeds 12 hours",
                q.name
            ));
        }
        if q.retention < Duration::from_secs(60) || q.retention > Queue::DLQ_RETENTION {
            self.problem(format!(
                "queue {}: retention must be between 1 minute and 14 days",
                q.name
            ));
        }
        if let Some(dlq) = q.dlq
            && !(1..=1000).contains(&dlq.max_receive_count)
        {
            self.problem(format!(
                "queue {}: maxReceiveCount must be between 1 and 1000",
                q.name
            ));
        }
    }

    fn check_table(&mut self, t: &Table) {
        let mut kinds = BTreeMap::new();
        let keys = std::iter::once(&t.partition_key)
            .chain(t.sort_key.as_ref())
            .chain(
                t.gsis
                    .iter()
                    .flat_map(|g| std::iter::once(&g.partition_key).chain(g.sort_key.as_ref())),
            );
        for key in keys {
            if *kinds.entry(key.name.as_str()).or_insert(key.kind) != key.kind {
                self.problem(format!(
                    "table {}: key attribute {} has two types",
                    t.name, key.name
                ));
            }
        }
        let mut gsis = BTreeSet::new();
        for gsi in &t.gsis {
            if !gsis.insert(gsi.name.as_str()) {
                self.problem(format!(
                    "table {}: index {} is defined twice",
                    t.name, gsi.name
                ));
            }
        }
    }

    fn check_state_machine(&mut self, m: &StateMachine) {
        let what = format!("state machine {}", m.name);
        for (key, value) in &m.substitutions {
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                self.problem(format!(
                    "{what}: substitution key {key:?} is not [A-Za-z0-9_]"
                ));
            }
            self.check_value(&what, value);
        }
        for p in &m.permissions {
            self.check_permission(&what, p);
        }
    }

    fn check_rule(&mut self, r: &Rule) {
        let what = format!("rule {}", r.name);
        if r.event_pattern.as_object().is_none_or(|o| o.is_empty()) {
            self.problem(format!(
                "{what}: the event pattern must be a non-empty object"
            ));
        }
        if r.targets.is_empty() || r.targets.len() > 5 {
            self.problem(format!("{what}: a rule has 1 to 5 targets"));
        }
        for target in &r.targets {
            let (kind, name) = match target {
                Target::Queue(n) => (RefKind::Queue, n),
                Target::StateMachine(n) => (RefKind::StateMachine, n),
                Target::Function(n) => (RefKind::Function, n),
            };
            match self.owners.get(kind, name) {
                None => self.problem(format!("{what}: target {name} is not defined")),
                Some(owner) if owner > self.current => self.problem(format!(
                    "{what}: target {name} belongs to a service defined later"
                )),
                Some(_) => {}
            }
            if let Target::Function(name) = target
                && let Some(f) = self.topology.function(name)
                && !matches!(f.kind, FunctionKind::Async)
            {
                self.problem(format!(
                    "{what}: target function {name} is not an asynchronous function"
                ));
            }
        }
    }

    fn check_function(&mut self, f: &Function) {
        let what = format!("function {}", f.name);
        match (&f.kind, &f.dead_letter) {
            (FunctionKind::Async, None) => self.problem(format!(
                "{what}: an asynchronous function must have the failures topic as dead letter"
            )),
            (FunctionKind::Async, Some(topic)) if topic != FAILURES => self.problem(format!(
                "{what}: an asynchronous function's dead letter must be the `{FAILURES}` topic, not {topic}"
            )),
            (FunctionKind::Async, Some(topic)) => match self.topology.topic(topic) {
                None => self.problem(format!("{what}: dead-letter topic {topic} is not defined")),
                Some(t) if t.subscriptions.is_empty() => self.problem(format!(
                    "{what}: dead-letter topic {topic} has no queue subscribed, so failures would be lost"
                )),
                Some(_) => self.check_ref(&what, &ResourceRef::Topic(topic.clone())),
            },
            (_, Some(_)) => self.problem(format!(
                "{what}: a dead letter only applies to asynchronous functions"
            )),
            (_, None) => {}
        }
        match &f.kind {
            FunctionKind::Async => {}
            FunctionKind::Sqs { queue, batch_size } => {
                self.check_ref(&what, &ResourceRef::Queue(queue.clone()));
                if !(1..=10).contains(batch_size) {
                    self.problem(format!("{what}: batch size must be between 1 and 10"));
                }
                if let Some(q) = self.topology.queue(queue)
                    && q.visibility_timeout < f.timeout
                {
                    self.problem(format!(
                        "{what}: queue {queue}'s visibility timeout is shorter than the function's timeout"
                    ));
                }
            }
            FunctionKind::Http { routes } => {
                if routes.is_empty() {
                    self.problem(format!("{what}: an HTTP function needs at least one route"));
                }
                for route in routes {
                    if !route.path.starts_with('/') {
                        self.problem(format!(
                            "{what}: route path {} must start with /",
                            route.path
                        ));
                    }
                }
            }
            FunctionKind::WebSocket { routes } => {
                if routes.is_empty() {
                    self.problem(format!(
                        "{what}: a WebSocket function needs at least one route key"
                    ));
                }
                for route in routes {
                    let action = !route.is_empty()
                        && route.len() <= 128
                        && route
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    let special = matches!(route.as_str(), "$connect" | "$disconnect" | "$default");
                    if !(action || special) {
                        self.problem(format!(
                            "{what}: WebSocket route key {route:?} must be $connect, $disconnect, \
                             $default or an action of [A-Za-z0-9_-]"
                        ));
                    }
                }
            }
        }
        if !(128..=10240).contains(&f.memory_mb) {
            self.problem(format!("{what}: memory must be 128-10240 MB"));
        }
        if f.timeout < Duration::from_secs(1) || f.timeout > Duration::from_secs(900) {
            self.problem(format!("{what}: timeout must be 1-900 s"));
        }
        self.check_env(&what, &f.env);
        for p in &f.permissions {
            self.check_permission(&what, p);
        }
    }

    fn check_fargate(&mut self, f: &FargateService) {
        let what = format!("fargate service {}", f.name);
        let memory_ok = match f.cpu {
            256 => [512, 1024, 2048].contains(&f.memory_mb),
            512 => (1024..=4096).contains(&f.memory_mb) && f.memory_mb.is_multiple_of(1024),
            1024 => (2048..=8192).contains(&f.memory_mb) && f.memory_mb.is_multiple_of(1024),
            2048 => (4096..=16384).contains(&f.memory_mb) && f.memory_mb.is_multiple_of(1024),
            4096 => (8192..=30720).contains(&f.memory_mb) && f.memory_mb.is_multiple_of(1024),
            _ => false,
        };
        if !memory_ok {
            self.problem(format!(
                "{what}: {} CPU units with {} MB is not a Fargate size",
                f.cpu, f.memory_mb
            ));
        }
        if f.stop_timeout < Duration::from_secs(2)
            || f.stop_timeout > FargateService::MAX_STOP_TIMEOUT
        {
            self.problem(format!("{what}: stop timeout must be 2-120 s"));
        }
        self.check_ref(&what, &ResourceRef::Queue(f.queue.clone()));
        let s = f.scaling;
        if s.max_tasks == 0 || s.min_tasks > s.max_tasks || s.backlog_per_task == 0 {
            self.problem(format!(
                "{what}: scaling needs 0 <= min <= max, max >= 1 and a backlog per task >= 1"
            ));
        }
        self.check_env(&what, &f.env);
        for p in &f.permissions {
            self.check_permission(&what, p);
        }
    }

    fn check_env(&mut self, what: &str, env: &[(String, ValueRef)]) {
        let mut seen = BTreeSet::new();
        for (name, value) in env {
            let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with("AWS_");
            if !valid {
                self.problem(format!(
                    "{what}: environment variable {name:?} must be [A-Za-z0-9_] and not start with AWS_"
                ));
            }
            if !seen.insert(name.as_str()) {
                self.problem(format!("{what}: environment variable {name} is set twice"));
            }
            self.check_value(what, value);
        }
    }

    fn check_permission(&mut self, what: &str, p: &Permission) {
        if p.actions.is_empty() {
            self.problem(format!("{what}: a permission without actions"));
        }
        for action in &p.actions {
            let valid = action.split_once(':').is_some_and(|(service, name)| {
                !service.is_empty()
                    && !name.is_empty()
                    && service
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && name.chars().all(|c| c.is_ascii_alphanumeric())
            });
            if !valid {
                self.problem(format!(
                    "{what}: action {action:?} must be service:Action, without wildcards"
                ));
            }
            if p.resource == ResourceRef::TaskTokens && !TASK_TOKEN_ACTIONS.contains(action) {
                self.problem(format!(
                    "{what}: resource * is only allowed for {}, not {action}",
                    TASK_TOKEN_ACTIONS.join(", ")
                ));
            }
        }
        if p.actions.contains(&"events:PutEvents") && p.sources.is_none() {
            self.problem(format!(
                "{what}: events:PutEvents must name the sources it may put (`.publish(Sources::Only(..))`): consumers trust a source"
            ));
        }
        self.check_ref(what, &p.resource);
    }

    fn check_ref(&mut self, what: &str, r: &ResourceRef) {
        match self.owners.of_ref(r) {
            None => self.problem(format!("{what}: {r:?} is not defined")),
            Some(owner) if owner > self.current => self.problem(format!(
                "{what}: {r:?} belongs to a service defined later; a service may only use \
                 its own resources and those of services before it"
            )),
            Some(_) => {}
        }
        if let ResourceRef::Connections(service) = r
            && self
                .owners
                .of_ref(r)
                .is_some_and(|owner| owner != self.current)
        {
            self.problem(format!(
                "{what}: only service {service} may manage its WebSocket connections"
            ));
        }
        if let ResourceRef::Dlq(queue) = r
            && self.topology.queue(queue).is_some_and(|q| q.dlq.is_none())
        {
            self.problem(format!("{what}: queue {queue} has no dead-letter queue"));
        }
    }

    fn check_value(&mut self, what: &str, v: &ValueRef) {
        match self.owners.of_value(v) {
            None => self.problem(format!("{what}: {v:?} is not defined")),
            Some(owner) if owner > self.current => {
                self.problem(format!("{what}: {v:?} belongs to a service defined later"))
            }
            Some(_) => {}
        }
        if let ValueRef::ConnectionsEndpoint(service) = v
            && self
                .owners
                .of_value(v)
                .is_some_and(|owner| owner != self.current)
        {
            self.problem(format!(
                "{what}: only service {service} may use its WebSocket connections endpoint"
            ));
        }
        if let ValueRef::DlqUrl(queue) | ValueRef::DlqArn(queue) = v
            && self.topology.queue(queue).is_some_and(|q| q.dlq.is_none())
        {
            self.problem(format!("{what}: queue {queue} has no dead-letter queue"));
        }
    }
}
