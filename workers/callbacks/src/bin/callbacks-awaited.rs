//! `callbacks-awaited`: stores the task token of every `CallbackAwaited` on the bus
//! (EventBridge → Lambda, asynchronous; failures go to the failures topic).
//!
//! Environment: `STAGE`, `CALLBACKS_TABLE`.

use std::collections::BTreeMap;

use callbacks::{Deps, SecretSource};
use contracts::BusEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use lambda_shell::{env, init_tracing};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let stage = env(topology::env::STAGE)?;
    let sdk = aws_config::load_from_env().await;
    // This function never verifies webhooks: it needs no secrets.
    let deps = Deps::new(
        &sdk,
        env(callbacks::service::env::CALLBACKS_TABLE)?,
        SecretSource::memory(BTreeMap::new()),
    );
    tracing::info!(stage = %stage, table = %deps.store.table, "callbacks-awaited starting");
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<BusEvent>| async move {
        callbacks::handle_awaited(event.payload, deps).await
    }))
    .await
}
