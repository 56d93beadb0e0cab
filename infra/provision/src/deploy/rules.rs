//! EventBridge rules (their targets are `targets`).

use serde_json::Value;

use topology::{BusRef, ResourceKind, Rule};

use super::{DeployError, Deployer, NOT_FOUND, Outcome, is_not_found, sdk_error};

impl Deployer<'_> {
    pub(super) fn bus_name(&self, bus: BusRef) -> String {
        match bus {
            BusRef::Fleet => self.names.bus(),
            BusRef::Default => "default".to_owned(),
        }
    }

    pub(super) async fn rule(&mut self, r: &Rule) -> Result<(), DeployError> {
        let kind = ResourceKind::Rule;
        let physical = self.names.rule(&r.name);
        let bus = self.bus_name(r.bus);
        let put = || {
            self.events
                .put_rule()
                .name(&physical)
                .event_bus_name(&bus)
                .event_pattern(r.event_pattern.to_string())
                .state(aws_sdk_eventbridge::types::RuleState::Enabled)
                .send()
        };
        let (arn, outcome) = match self
            .events
            .describe_rule()
            .name(&physical)
            .event_bus_name(&bus)
            .send()
            .await
        {
            Ok(have) => {
                let same_pattern = have
                    .event_pattern()
                    .and_then(|p| serde_json::from_str::<Value>(p).ok())
                    .as_ref()
                    == Some(&r.event_pattern);
                let enabled = have.state() == Some(&aws_sdk_eventbridge::types::RuleState::Enabled);
                if same_pattern && enabled {
                    (
                        have.arn().unwrap_or_default().to_owned(),
                        Outcome::Unchanged,
                    )
                } else {
                    let out = put().await.map_err(sdk_error(kind, &physical, "PutRule"))?;
                    (
                        out.rule_arn().unwrap_or_default().to_owned(),
                        Outcome::Updated,
                    )
                }
            }
            Err(e) if is_not_found(&e, NOT_FOUND) => {
                let out = put().await.map_err(sdk_error(kind, &physical, "PutRule"))?;
                (
                    out.rule_arn().unwrap_or_default().to_owned(),
                    Outcome::Created,
                )
            }
            Err(e) => return Err(sdk_error(kind, &physical, "DescribeRule")(e)),
        };
        self.record(kind, &r.name, &physical, Some(arn), None, outcome);
        Ok(())
    }
}
