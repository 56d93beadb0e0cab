//! The fleet's event bus, whose ARN tells the deployment its partition and account.

use topology::ResourceKind;

use super::{DeployError, Deployer, NOT_FOUND, Outcome, is_not_found, sdk_error};

impl Deployer<'_> {
    pub(super) async fn bus(&mut self) -> Result<(), DeployError> {
        let kind = ResourceKind::EventBus;
        let name = self.names.bus();
        let (arn, outcome) = match self.events.describe_event_bus().name(&name).send().await {
            Ok(out) => (out.arn().map(str::to_owned), Outcome::Unchanged),
            Err(e) if is_not_found(&e, NOT_FOUND) => {
                let out = self
                    .events
                    .create_event_bus()
                    .name(&name)
                    .send()
                    .await
                    .map_err(sdk_error(kind, &name, "CreateEventBus"))?;
                (out.event_bus_arn().map(str::to_owned), Outcome::Created)
            }
            Err(e) => return Err(sdk_error(kind, &name, "DescribeEventBus")(e)),
        };
        let arn = arn.unwrap_or_default();
        // arn:<partition>:events:<region>:<account>:event-bus/<name>
        let parts: Vec<&str> = arn.split(':').collect();
        match parts.as_slice() {
            ["arn", partition, _, region, account, ..] if !account.is_empty() => {
                self.partition = (*partition).to_owned();
                self.account = (*account).to_owned();
                if self.region.is_none() {
                    self.region = Some((*region).to_owned());
                }
            }
            _ => {
                return Err(DeployError::Conflict {
                    kind,
                    name,
                    reason: format!("the endpoint reported the unusable ARN {arn:?}"),
                });
            }
        }
        self.record(kind, "bus", &name, Some(arn), None, outcome);
        Ok(())
    }
}
