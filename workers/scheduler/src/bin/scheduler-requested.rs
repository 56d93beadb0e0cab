//! `scheduler-requested`: every `ScheduleRequested` on the bus, from any source (EventBridge →
//! Lambda, asynchronous; failures go to the failures topic).
//!
//! Environment: `STAGE`, `STATE_MACHINE_ARN` (the `schedule` machine).

use contracts::BusEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use scheduler::Deps;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let stage = env("STAGE")?;
    let sdk = aws_config::load_from_env().await;
    let deps = Deps::new(&sdk, env("STATE_MACHINE_ARN")?);
    tracing::info!(stage = %stage, machine = %deps.state_machine_arn, "scheduler-requested starting");
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<BusEvent>| async move {
        scheduler::handle_requested(event.payload, deps).await
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
