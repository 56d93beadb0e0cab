//! A function's environment in a deployment made by [`crate::deploy`]: the variables the
//! topology declares for it, with the values they have there. The local host builds each
//! function from exactly this, as Lambda hands a deployed function its environment.

use topology::{Topology, ValueRef};

use crate::DeployReport;

/// A variable the deployment has no value for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "function {function}: variable {variable} ({value:?}) has no value in this deployment; give it one in the local settings"
)]
pub struct EnvironmentError {
    pub function: String,
    pub variable: String,
    pub value: String,
}

/// The environment of `function` in the deployment `report` describes. Values the
/// deployment cannot know (the region, the identity provider's settings, stack
/// parameters, the WebSocket API's endpoint) come from `settings`.
pub fn environment(
    topology: &Topology,
    report: &DeployReport,
    function: &str,
    settings: &dyn Fn(&ValueRef) -> Option<String>,
) -> Result<Vec<(String, String)>, EnvironmentError> {
    let names = topology.names();
    let Some(f) = topology.function(function) else {
        return Err(EnvironmentError {
            function: function.to_owned(),
            variable: String::new(),
            value: "the topology has no such function".to_owned(),
        });
    };
    f.env
        .iter()
        .map(|(variable, value)| {
            let known = |v: Option<&str>| v.map(str::to_owned);
            let resolved = match value {
                ValueRef::Literal(s) => Some(s.clone()),
                ValueRef::Stage => Some(names.stage().to_string()),
                ValueRef::BusName => Some(names.bus()),
                ValueRef::BusArn => known(report.bus_arn()),
                ValueRef::QueueUrl(n) => known(report.queue_url(n)),
                ValueRef::QueueArn(n) => known(report.queue_arn(n)),
                ValueRef::DlqUrl(n) => known(report.dlq_url(n)),
                ValueRef::DlqArn(n) => known(report.dlq_arn(n)),
                ValueRef::TopicArn(n) => known(report.topic_arn(n)),
                ValueRef::TableName(n) => Some(names.table(n)),
                ValueRef::TableArn(n) => known(report.table_arn(n)),
                ValueRef::BucketName(n) => Some(names.bucket(n)),
                ValueRef::StateMachineArn(n) => known(report.state_machine_arn(n)),
                ValueRef::ParameterPath(path) => Some(names.parameter_path(path)),
                ValueRef::Region
                | ValueRef::FunctionArn(_)
                | ValueRef::ConnectionsEndpoint(_)
                | ValueRef::Token(_)
                | ValueRef::Setting { .. } => None,
            };
            match resolved.or_else(|| settings(value)) {
                Some(v) => Ok((variable.clone(), v)),
                None => Err(EnvironmentError {
                    function: function.to_owned(),
                    variable: variable.clone(),
                    value: format!("{value:?}"),
                }),
            }
        })
        .collect()
}
