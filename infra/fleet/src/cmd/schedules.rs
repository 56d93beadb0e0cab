//! `fleet schedules ls`: the scheduler's pending schedules (running executions of the
//! stage's `schedule` state machine), soonest first.

use anyhow::Context as _;
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use topology::Stage;

use crate::ops::table::Table;

/// The pending schedules of `stage`.
pub async fn pending(
    stage: &Stage,
    sdk: &aws_config::SdkConfig,
) -> anyhow::Result<Vec<scheduler::Pending>> {
    let sfn = aws_sdk_sfn::Client::new(sdk);
    let name = topology::fleet(stage).names().state_machine("schedule");
    let mut arn = None;
    let mut pages = sfn.list_state_machines().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.context("listing state machines")?;
        if let Some(m) = page.state_machines().iter().find(|m| m.name() == name) {
            arn = Some(m.state_machine_arn().to_owned());
            break;
        }
    }
    let arn =
        arn.with_context(|| format!("no state machine {name}: is stage {stage} deployed?"))?;
    let deps = scheduler::Deps {
        sfn,
        state_machine_arn: arn,
    };
    Ok(scheduler::pending(&deps).await?)
}

/// `KEY  DUE  EVENT` (the event as `source/detail-type`).
pub fn render(pending: &[scheduler::Pending]) -> String {
    let mut table = Table::new(&["key", "due", "event"]);
    for p in pending {
        table.row(vec![
            p.key.clone(),
            due(p),
            format!("{}/{}", p.source, p.detail_type),
        ]);
    }
    table.to_string()
}

/// The same as JSON lines' array, for scripts.
pub fn to_json(pending: &[scheduler::Pending]) -> serde_json::Value {
    pending
        .iter()
        .map(|p| {
            json!({
                "key": p.key,
                "due": due(p),
                "source": p.source,
                "detailType": p.detail_type,
            })
        })
        .collect()
}

fn due(p: &scheduler::Pending) -> String {
    p.due
        .and_then(|d| d.format(&Rfc3339).ok())
        .unwrap_or_else(|| "?".to_string())
}
