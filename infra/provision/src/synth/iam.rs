//! IAM: the ARNs statements name, statements from permissions, and roles.

use serde_json::{Value, json};

use topology::{Permission, ResourceRef, Sources};

use super::values::Attr;
use super::{POLICY_VERSION, Synth};

impl Synth<'_> {
    /// The ARN an IAM statement names for `r`, as seen from stack `at`.
    pub(super) fn resource_arn(&self, at: usize, r: &ResourceRef) -> Value {
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

    pub(super) fn statements(&self, at: usize, permissions: &[Permission]) -> Vec<Value> {
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

pub(super) fn statement(actions: &[&str], resource: Value) -> Value {
    json!({ "Effect": "Allow", "Action": actions, "Resource": resource })
}

pub(super) fn assume(service: &str) -> Value {
    json!({
        "Version": POLICY_VERSION,
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": service },
            "Action": "sts:AssumeRole",
        }],
    })
}

pub(super) fn role_props(service: &str, statements: Vec<Value>) -> Value {
    let mut props = json!({ "AssumeRolePolicyDocument": assume(service) });
    if !statements.is_empty() {
        props["Policies"] = json!([{
            "PolicyName": "access",
            "PolicyDocument": { "Version": POLICY_VERSION, "Statement": statements },
        }]);
    }
    props
}
