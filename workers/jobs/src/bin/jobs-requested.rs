//! `jobs-requested`: starts a simulation-job execution for each `JobRequested` on the bus
//! (EventBridge → Lambda, asynchronous; failures go to the failures topic).
//!
//! Environment: `STAGE`, `JOBS_TABLE`, `STATE_MACHINE_ARN`.

use contracts::BusEvent;
use jobs::Deps;
use lambda_runtime::{LambdaEvent, service_fn};
use lambda_shell::{env, init_tracing};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let stage = env(topology::env::STAGE)?;
    let sdk = aws_config::load_from_env().await;
    let deps = Deps::new(&sdk, env(jobs::service::env::JOBS_TABLE)?)
        .with_state_machine(env(topology::env::STATE_MACHINE_ARN)?);
    tracing::info!(stage = %stage, table = %deps.table, "jobs-requested starting");
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<BusEvent>| async move {
        jobs::handle_job_requested(event.payload, deps).await
    }))
    .await
}
