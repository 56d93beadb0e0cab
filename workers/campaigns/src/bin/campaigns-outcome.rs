//! `campaigns-outcome`: every `CampaignSent` and `CampaignFailed` on the bus (EventBridge → Lambda,
//! asynchronous; failures go to the failures topic).
//!
//! Environment: `STAGE`, `CAMPAIGNS_TABLE`.

use campaigns::{Deps, ProviderConfig};
use contracts::BusEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use lambda_shell::{env, init_tracing};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let stage = env(topology::env::STAGE)?;
    let sdk = aws_config::load_from_env().await;
    let mut deps = Deps::new(&sdk, env(campaigns::service::env::CAMPAIGNS_TABLE)?);
    if let Ok(arn) = std::env::var(topology::env::STATE_MACHINE_ARN) {
        deps = deps.with_state_machine(arn);
    }
    if let (Ok(name), Ok(url)) = (
        std::env::var("PROVIDER_NAME"),
        std::env::var("PROVIDER_URL"),
    ) {
        deps = deps.with_provider(ProviderConfig { name, url });
    }
    tracing::info!(stage = %stage, table = %deps.table, "campaigns-outcome starting");
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<BusEvent>| async move {
        campaigns::handle_outcome(event.payload, deps).await
    }))
    .await
}
