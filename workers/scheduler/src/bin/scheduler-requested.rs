//! `scheduler-requested`: every `ScheduleRequested` on the bus, from any source (EventBridge →
//! Lambda, asynchronous; failures go to the failures topic).
//!
//! Environment: `STAGE`, `STATE_MACHINE_ARN` (the `schedule` machine).

use contracts::BusEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use lambda_shell::{env, init_tracing};
use scheduler::Deps;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let stage = env(topology::env::STAGE)?;
    let sdk = aws_config::load_from_env().await;
    let deps = Deps::new(&sdk, env(topology::env::STATE_MACHINE_ARN)?);
    tracing::info!(stage = %stage, machine = %deps.state_machine_arn, "scheduler-requested starting");
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<BusEvent>| async move {
        scheduler::handle_requested(event.payload, deps).await
    }))
    .await
}
