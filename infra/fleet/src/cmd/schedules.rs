//! `fleet schedules ls`: the scheduler's pending schedules (running executions of the
//! stage's `schedule` state machine), soonest first.

use clap::Subcommand;
use fleet_ops::schedules::Pending;
use provision::Stage;
use serde_json::json;
use time::format_description::well_known::Rfc3339;

use super::Globals;
use crate::render::{Table, print_json};

#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// Pending schedules: key, due time, event (`--json` for scripts).
    Ls,
}

pub async fn run(command: SchedulesCommand, globals: &Globals) -> anyhow::Result<()> {
    match command {
        SchedulesCommand::Ls => {
            let pending = pending(&globals.stage, &crate::aws_from_env().await).await?;
            if globals.json {
                print_json(&to_json(&pending))
            } else {
                print!("{}", render(&pending));
                Ok(())
            }
        }
    }
}

/// The pending schedules of `stage`, on the endpoint `sdk` names.
pub async fn pending(stage: &Stage, sdk: &aws_config::SdkConfig) -> anyhow::Result<Vec<Pending>> {
    let ops = fleet_ops::Ops::new(provision::fleet(stage), sdk);
    Ok(fleet_ops::schedules::pending(&ops).await?)
}

/// `KEY  DUE  EVENT` (the event as `source/detail-type`).
pub fn render(pending: &[Pending]) -> String {
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
pub fn to_json(pending: &[Pending]) -> serde_json::Value {
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

fn due(p: &Pending) -> String {
    p.due
        .and_then(|d| d.format(&Rfc3339).ok())
        .unwrap_or_else(|| "?".to_string())
}
