//! `campaigns-outcome`: every `CampaignSent` and `CampaignFailed` on the bus (EventBridge → Lambda,
//! asynchronous; failures go to the failures topic).
//!
//! Its environment is what the service's topology gives it (`src/service.rs`).

fn main() -> Result<(), lambda_shell::Error> {
    lambda_shell::main(&campaigns::service::OUTCOME)
}
