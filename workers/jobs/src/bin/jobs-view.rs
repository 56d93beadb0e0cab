//! `jobs-view`: applies `JobStarted`, `JobProgress`, `JobSucceeded` and `JobFailed` to
//! the jobs table (EventBridge → Lambda, asynchronous; failures go to the failures topic).
//!
//! Its environment is what the service's topology gives it (`src/service.rs`).

fn main() -> Result<(), lambda_shell::Error> {
    lambda_shell::main(&jobs::service::VIEW)
}
