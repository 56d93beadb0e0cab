//! Lambda functions: log group, role, the function itself and its trigger.

use serde_json::{Map, Value, json};

use topology::{Function, FunctionKind, ValueRef};

use super::iam::{role_props, statement};
use super::values::{Attr, Kind};
use super::{
    LAMBDA_ARCHITECTURE, LAMBDA_RUNTIME, LOG_RETENTION_DAYS, PARAM_ARTIFACT_BUCKET,
    PARAM_ARTIFACT_PREFIX, Synth,
};

impl Synth<'_> {
    pub(super) fn function(&mut self, at: usize, service: &str, f: &Function) {
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
        self.function_role(at, &role, &log_group, f);

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
                self.event_source_mapping(at, &id, queue, *batch_size);
            }
            FunctionKind::Http { routes } => self.http_routes(at, service, &id, routes),
            FunctionKind::WebSocket { routes } => self.websocket_routes(at, service, &id, routes),
        }
    }

    /// The function's role: its own log group, its dead-letter topic, its queue and its
    /// permissions.
    fn function_role(&mut self, at: usize, role: &str, log_group: &str, f: &Function) {
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
            role.to_owned(),
            "AWS::IAM::Role",
            role_props("lambda.amazonaws.com", statements),
        );
    }

    /// The SQS event source mapping of a queue-fed function, reporting partial batch
    /// failures.
    fn event_source_mapping(&mut self, at: usize, id: &str, queue: &str, batch_size: u32) {
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
}
