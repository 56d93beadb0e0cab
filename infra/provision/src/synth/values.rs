//! Reference resolution: a resource's attributes as `Ref`/`Fn::GetAtt` in its own stack,
//! as `Fn::ImportValue` of its stack's exports elsewhere, and [`ValueRef`]s as template
//! values.

use serde_json::{Value, json};

use topology::{RefKind, ValueRef, camel};

use super::Synth;

/// The shareable resource kinds, each with its logical id and exported attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
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
pub(super) enum Attr {
    Name,
    Arn,
    Url,
}

impl Attr {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Attr::Name => "Name",
            Attr::Arn => "Arn",
            Attr::Url => "Url",
        }
    }
}

impl Kind {
    pub(super) fn logical_id(self, name: &str) -> String {
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

    pub(super) fn attrs(self) -> &'static [Attr] {
        match self {
            Kind::Queue | Kind::Dlq => &[Attr::Url, Attr::Arn, Attr::Name],
            _ => &[Attr::Name, Attr::Arn],
        }
    }

    /// The intrinsic that reads `attr` of the resource `id` in its own stack.
    pub(super) fn local(self, id: &str, attr: Attr) -> Value {
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

impl Synth<'_> {
    /// `attr` of a resource owned by stack `owner`, as seen from stack `at`.
    pub(super) fn attr(
        &self,
        at: usize,
        owner: usize,
        kind: Kind,
        name: &str,
        attr: Attr,
    ) -> Value {
        let id = kind.logical_id(name);
        if owner == at {
            kind.local(&id, attr)
        } else {
            json!({ "Fn::ImportValue": format!("{}:{id}{}", self.stack_name(owner), attr.as_str()) })
        }
    }

    /// Validation guarantees every reference resolves; a miss is a broken invariant.
    pub(super) fn owner(&self, kind: RefKind, name: &str) -> usize {
        self.owners
            .get(kind, name)
            .unwrap_or_else(|| panic!("validated topology: {kind:?} {name} must be defined"))
    }

    pub(super) fn queue_attr(&self, at: usize, name: &str, attr: Attr) -> Value {
        self.attr(
            at,
            self.owner(RefKind::Queue, name),
            Kind::Queue,
            name,
            attr,
        )
    }

    pub(super) fn dlq_attr(&self, at: usize, name: &str, attr: Attr) -> Value {
        self.attr(at, self.owner(RefKind::Queue, name), Kind::Dlq, name, attr)
    }

    pub(super) fn topic_arn(&self, at: usize, name: &str) -> Value {
        self.attr(
            at,
            self.owner(RefKind::Topic, name),
            Kind::Topic,
            name,
            Attr::Arn,
        )
    }

    pub(super) fn table_attr(&self, at: usize, name: &str, attr: Attr) -> Value {
        self.attr(
            at,
            self.owner(RefKind::Table, name),
            Kind::Table,
            name,
            attr,
        )
    }

    pub(super) fn bucket_attr(&self, at: usize, name: &str, attr: Attr) -> Value {
        self.attr(
            at,
            self.owner(RefKind::Bucket, name),
            Kind::Bucket,
            name,
            attr,
        )
    }

    pub(super) fn machine_arn(&self, at: usize, name: &str) -> Value {
        let owner = self.owner(RefKind::StateMachine, name);
        self.attr(at, owner, Kind::StateMachine, name, Attr::Arn)
    }

    pub(super) fn function_arn(&self, at: usize, name: &str) -> Value {
        let owner = self.owner(RefKind::Function, name);
        self.attr(at, owner, Kind::Function, name, Attr::Arn)
    }

    pub(super) fn bus_attr(&self, at: usize, attr: Attr) -> Value {
        self.attr(at, 0, Kind::Bus, "", attr)
    }

    pub(super) fn value(&self, at: usize, v: &ValueRef) -> Value {
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
}
