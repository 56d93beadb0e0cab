//! What a deployment returns: each resource's outcome and address, and the rule targets
//! left to the local host; printed as a table.

use std::fmt;

use serde_json::Value;

use topology::{ResourceKind, Stage};

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

#[cfg(test)]
mod tests {
    use serde_json::json;

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
