//! The values [`ValueRef`]s have in a deployment.

use topology::ValueRef;

use super::Deployer;

impl Deployer<'_> {
    /// The value a [`ValueRef`] has in this deployment.
    pub(super) fn resolve(&self, v: &ValueRef) -> String {
        let r = &self.report;
        let names = &self.names;
        let known = |value: Option<&str>| value.unwrap_or_default().to_owned();
        match v {
            ValueRef::Literal(s) => s.clone(),
            ValueRef::Stage => names.stage().to_string(),
            ValueRef::Region => self.region.clone().unwrap_or_default(),
            ValueRef::BusName => names.bus(),
            ValueRef::BusArn => known(r.bus_arn()),
            ValueRef::QueueUrl(n) => known(r.queue_url(n)),
            ValueRef::QueueArn(n) => known(r.queue_arn(n)),
            ValueRef::DlqUrl(n) => known(r.dlq_url(n)),
            ValueRef::DlqArn(n) => known(r.dlq_arn(n)),
            ValueRef::TopicArn(n) => known(r.topic_arn(n)),
            ValueRef::TableName(n) => names.table(n),
            ValueRef::TableArn(n) => known(r.table_arn(n)),
            ValueRef::BucketName(n) => names.bucket(n),
            // Built from names: a machine may name one deployed after it.
            ValueRef::StateMachineArn(n) => self.arn(
                "states",
                &format!("stateMachine:{}", names.state_machine(n)),
            ),
            ValueRef::FunctionArn(n) => {
                self.arn("lambda", &format!("function:{}", names.function(n)))
            }
            // WebSocket APIs are not deployed to the emulator: the local host serves them
            // and its own address is their endpoint.
            ValueRef::ConnectionsEndpoint(_) => String::new(),
            ValueRef::ParameterPath(path) => names.parameter_path(path),
            // Functions are not deployed to the emulator: the local host runs them in
            // process with the local issuer's verifier.
            ValueRef::Token(_) | ValueRef::Setting { .. } => String::new(),
        }
    }
}
