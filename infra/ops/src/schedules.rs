//! The scheduler's pending schedules (`fleet schedules ls`): running executions of the
//! stage's `schedule` state machine, soonest first.

use crate::{Ops, OpsError};

pub use scheduler::Pending;

/// The pending schedules of the stage.
pub async fn pending(ops: &Ops) -> Result<Vec<Pending>, OpsError> {
    let name = ops.names.state_machine("schedule");
    let mut arn = None;
    let mut pages = ops.sfn.list_state_machines().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| OpsError::Context {
            context: "listing state machines".to_owned(),
            source: Box::new(e),
        })?;
        if let Some(m) = page.state_machines().iter().find(|m| m.name() == name) {
            arn = Some(m.state_machine_arn().to_owned());
            break;
        }
    }
    let arn = arn.ok_or_else(|| {
        OpsError::Missing(format!(
            "no state machine {name}: is stage {} deployed?",
            ops.stage()
        ))
    })?;
    let deps = scheduler::Deps {
        sfn: ops.sfn.clone(),
        state_machine_arn: arn,
    };
    Ok(scheduler::pending(&deps).await?)
}
