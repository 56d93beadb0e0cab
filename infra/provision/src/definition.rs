//! Reading a state machine's definition from the topology's definitions folder.

use std::path::PathBuf;

use serde_json::Value;
use topology::{StateMachine, Topology};

/// The definition of `machine`, read from [`Topology::definitions_dir`].
pub fn definition(topology: &Topology, machine: &StateMachine) -> Result<Value, DefinitionError> {
    let path = topology.definitions_dir.join(&machine.definition_file);
    let text = std::fs::read_to_string(&path).map_err(|source| DefinitionError::Unreadable {
        machine: machine.name.clone(),
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| DefinitionError::NotJson {
        machine: machine.name.clone(),
        path,
        source,
    })
}

/// A state machine definition that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("state machine {machine}: cannot read its definition {}: {source}", path.display())]
    Unreadable {
        machine: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state machine {machine}: its definition {} is not JSON: {source}", path.display())]
    NotJson {
        machine: String,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}
