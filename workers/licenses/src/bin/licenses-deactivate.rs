//! `licenses-deactivate`: every `LicenseDeactivationDue` on the bus (EventBridge → Lambda,
//! asynchronous; failures go to the failures topic).
//!
//! Environment: `STAGE`, `LICENSES_TABLE`, `BUS`.

use contracts::BusEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use lambda_shell::{env, init_tracing};
use licenses::Deps;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let stage = env(topology::env::STAGE)?;
    let sdk = aws_config::load_from_env().await;
    let deps = Deps::new(
        &sdk,
        env(licenses::service::env::LICENSES_TABLE)?,
        env(topology::env::BUS)?,
    );
    tracing::info!(stage = %stage, table = %deps.store.table(), "licenses-deactivate starting");
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<BusEvent>| async move {
        licenses::handle_deactivation_due(event.payload, deps).await
    }))
    .await
}
