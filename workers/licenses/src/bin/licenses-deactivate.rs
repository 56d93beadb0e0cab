//! `licenses-deactivate`: every `LicenseDeactivationDue` on the bus (EventBridge → Lambda,
//! asynchronous; failures go to the failures topic).
//!
//! Environment: `STAGE`, `LICENSES_TABLE`, `BUS`.

use contracts::BusEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use licenses::Deps;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let stage = env("STAGE")?;
    let sdk = aws_config::load_from_env().await;
    let deps = Deps::new(&sdk, env("LICENSES_TABLE")?, env("BUS")?);
    tracing::info!(stage = %stage, table = %deps.table, "licenses-deactivate starting");
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<BusEvent>| async move {
        licenses::handle_deactivation_due(event.payload, deps).await
    }))
    .await
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
}

fn init_tracing() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_current_span(false)
        .init();
}
