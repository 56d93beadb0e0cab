//! Step Functions state machines and their roles.

use serde_json::{Map, json};

use topology::StateMachine;

use super::iam::role_props;
use super::values::Kind;
use super::{Synth, SynthError};

impl Synth<'_> {
    pub(super) fn state_machine(&mut self, at: usize, m: &StateMachine) -> Result<(), SynthError> {
        let definition = crate::definition(self.topology, m)?;
        let id = Kind::StateMachine.logical_id(&m.name);
        let role = format!("{id}Role");
        let statements = self.statements(at, &m.permissions);
        self.stacks[at].resource(
            role.clone(),
            "AWS::IAM::Role",
            role_props("states.amazonaws.com", statements),
        );
        let mut props = json!({
            "StateMachineName": self.names.state_machine(&m.name),
            "StateMachineType": "STANDARD",
            "Definition": definition,
            "RoleArn": { "Fn::GetAtt": [role, "Arn"] },
        });
        if !m.substitutions.is_empty() {
            props["DefinitionSubstitutions"] = m
                .substitutions
                .iter()
                .map(|(k, v)| (k.clone(), self.value(at, v)))
                .collect::<Map<_, _>>()
                .into();
        }
        self.stacks[at].resource(id, "AWS::StepFunctions::StateMachine", props);
        self.exported(at, Kind::StateMachine, &m.name);
        Ok(())
    }
}
