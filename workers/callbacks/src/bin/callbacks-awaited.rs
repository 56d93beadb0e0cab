//! `callbacks-awaited`: stores the task token of every `CallbackAwaited` on the bus
//! (EventBridge → Lambda, asynchronous; failures go to the failures topic).
//!
//! Environment: `STAGE`, `CALLBACKS_TABLE`.

use std::collections::BTreeMap;

use callbacks::{Deps, SecretSource};
use contracts::BusEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let stage = env("STAGE")?;
    let sdk = aws_config::load_from_env().await;
    // This function never verifies webhooks: it needs no secrets.
    let deps = Deps::new(
        &sdk,
        env("CALLBACKS_TABLE")?,
        SecretSource::Memory(BTreeMap::new()),
    );
    tracing::info!(stage = %stage, table = %deps.store.table, "callbacks-awaited starting");
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<BusEvent>| async move {
        callbacks::handle_awaited(event.payload, deps).await
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
