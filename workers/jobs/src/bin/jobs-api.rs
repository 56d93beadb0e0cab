//! `jobs-api`: the jobs HTTP API on Lambda (behind API Gateway's HTTP API).
//!
//! Its environment is what the service's topology gives it (`src/service.rs`).

fn main() -> Result<(), lambda_shell::Error> {
    lambda_shell::main(&jobs::service::API)
}
