//! EventBridge rule targets: queues and state machines are put on the rule; functions are
//! listed in the report for the local host.

use topology::{ResourceKind, Rule, Target};

use super::{DeployError, Deployer, LambdaTarget, Outcome, sdk_error};

/// Target ids this module creates; others (the local host's) are left alone.
const OWN_TARGET_PREFIXES: [&str; 2] = ["queue-", "state-machine-"];

/// A target's id, ARN and role.
type TargetSpec = (String, String, Option<String>);

impl Deployer<'_> {
    pub(super) async fn targets(&mut self, r: &Rule) -> Result<(), DeployError> {
        let kind = ResourceKind::RuleTarget;
        let physical = self.names.rule(&r.name);
        let bus = self.bus_name(r.bus);
        let desired = self.desired_targets(r, &physical, &bus);
        let have = self.existing_targets(&physical, &bus).await?;

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
            self.put_targets(&physical, &bus, put).await?;
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

    /// The targets to put on the rule; function targets go to the report instead.
    fn desired_targets(&mut self, r: &Rule, physical: &str, bus: &str) -> Vec<TargetSpec> {
        let mut desired: Vec<TargetSpec> = Vec::new();
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
                    rule_physical: physical.to_owned(),
                    bus: bus.to_owned(),
                    event_pattern: r.event_pattern.clone(),
                    function: f.clone(),
                    function_physical: self.names.function(f),
                }),
            }
        }
        desired
    }

    async fn existing_targets(
        &self,
        physical: &str,
        bus: &str,
    ) -> Result<Vec<TargetSpec>, DeployError> {
        let kind = ResourceKind::RuleTarget;
        let have = self
            .events
            .list_targets_by_rule()
            .rule(physical)
            .event_bus_name(bus)
            .send()
            .await
            .map_err(sdk_error(kind, physical, "ListTargetsByRule"))?;
        Ok(have
            .targets()
            .iter()
            .map(|t| {
                (
                    t.id().to_owned(),
                    t.arn().to_owned(),
                    t.role_arn().map(str::to_owned),
                )
            })
            .collect())
    }

    async fn put_targets(
        &self,
        physical: &str,
        bus: &str,
        targets: Vec<aws_sdk_eventbridge::types::Target>,
    ) -> Result<(), DeployError> {
        let kind = ResourceKind::RuleTarget;
        let out = self
            .events
            .put_targets()
            .rule(physical)
            .event_bus_name(bus)
            .set_targets(Some(targets))
            .send()
            .await
            .map_err(sdk_error(kind, physical, "PutTargets"))?;
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
                name: physical.to_owned(),
                operation: "PutTargets",
                detail,
            });
        }
        Ok(())
    }
}
