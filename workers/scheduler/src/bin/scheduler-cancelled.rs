//! `scheduler-cancelled`: every `ScheduleCancelled` on the bus, from any source (EventBridge →
//! Lambda, asynchronous; failures go to the failures topic).
//!
//! Its environment is what the service's topology gives it (`src/service.rs`).

fn main() -> Result<(), lambda_shell::Error> {
    lambda_shell::main(&scheduler::service::CANCELLED)
}
