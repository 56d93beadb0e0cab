//! `notifier-events`: job events → frames pushed to WebSocket subscribers (EventBridge →
//! Lambda, asynchronous; failures go to the failures topic).
//!
//! Environment: `STAGE`, `NOTIFIER_TABLE`, `CONNECTIONS_ENDPOINT`.

use contracts::BusEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use lambda_shell::{env, init_tracing};
use notifier::{Deps, NotifierConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let stage = env(topology::env::STAGE)?;
    let sdk = aws_config::load_from_env().await;
    let deps = Deps::new(
        &sdk,
        env(notifier::service::env::NOTIFIER_TABLE)?,
        &env(notifier::service::env::CONNECTIONS_ENDPOINT)?,
        NotifierConfig::default(),
    );
    tracing::info!(stage = %stage, table = %deps.store.table(), "notifier-events starting");
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<BusEvent>| async move {
        notifier::handle_event(event.payload, deps).await
    }))
    .await
}
