//! Step Functions state machines, their definitions' substitutions resolved.

use serde_json::Value;

use topology::{ResourceKind, StateMachine};

use super::{DeployError, Deployer, Outcome, sdk_error};

impl Deployer<'_> {
    pub(super) async fn state_machine(&mut self, m: &StateMachine) -> Result<(), DeployError> {
        let kind = ResourceKind::StateMachine;
        let physical = self.names.state_machine(&m.name);
        let mut text = crate::definition(self.topology, m)?.to_string();
        for (key, value) in &m.substitutions {
            let value = self.resolve(value);
            // The definition is JSON: substitute the value as the inside of a JSON string.
            let escaped = Value::String(value).to_string();
            text = text.replace(&format!("${{{key}}}"), &escaped[1..escaped.len() - 1]);
        }
        let definition: Value = serde_json::from_str(&text).map_err(|e| DeployError::Conflict {
            kind,
            name: physical.clone(),
            reason: format!("the definition is not JSON after substitution: {e}"),
        })?;
        let role = self.role_arn(&physical);

        let mut existing = None;
        let mut pages = self.sfn.list_state_machines().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(sdk_error(kind, &physical, "ListStateMachines"))?;
            existing = page
                .state_machines()
                .iter()
                .find(|s| s.name() == physical)
                .map(|s| s.state_machine_arn().to_owned());
            if existing.is_some() {
                break;
            }
        }
        let (arn, outcome) = match existing {
            Some(arn) => {
                let have = self
                    .sfn
                    .describe_state_machine()
                    .state_machine_arn(&arn)
                    .send()
                    .await
                    .map_err(sdk_error(kind, &physical, "DescribeStateMachine"))?;
                let same_definition = serde_json::from_str::<Value>(have.definition())
                    .ok()
                    .as_ref()
                    == Some(&definition);
                if same_definition && have.role_arn() == role {
                    (arn, Outcome::Unchanged)
                } else {
                    self.sfn
                        .update_state_machine()
                        .state_machine_arn(&arn)
                        .definition(definition.to_string())
                        .role_arn(&role)
                        .send()
                        .await
                        .map_err(sdk_error(kind, &physical, "UpdateStateMachine"))?;
                    (arn, Outcome::Updated)
                }
            }
            None => {
                let out = self
                    .sfn
                    .create_state_machine()
                    .name(&physical)
                    .definition(definition.to_string())
                    .role_arn(&role)
                    .r#type(aws_sdk_sfn::types::StateMachineType::Standard)
                    .send()
                    .await
                    .map_err(sdk_error(kind, &physical, "CreateStateMachine"))?;
                (out.state_machine_arn().to_owned(), Outcome::Created)
            }
        };
        self.record(kind, &m.name, &physical, Some(arn), None, outcome);
        Ok(())
    }
}
