//! EventBridge rules and their targets: queues, state machines (with a role each) and
//! functions (with a permission each).

use serde_json::json;

use topology::{BusRef, Names, Rule, Target, camel};

use super::Synth;
use super::iam::{role_props, statement};
use super::values::Attr;

impl Synth<'_> {
    pub(super) fn rule(&mut self, at: usize, r: &Rule) {
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
}

/// The ARN of a rule as a `Fn::Sub` pattern, built from names so it needs no reference.
pub(super) fn rule_arn_pattern(names: &Names, rule: &Rule) -> String {
    let path = match rule.bus {
        BusRef::Fleet => format!("{}/{}", names.bus(), names.rule(&rule.name)),
        BusRef::Default => names.rule(&rule.name),
    };
    format!("arn:${{AWS::Partition}}:events:${{AWS::Region}}:${{AWS::AccountId}}:rule/{path}")
}
