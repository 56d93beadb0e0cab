//! `notifier-ws`: every route of the notifier's WebSocket API (API Gateway → Lambda).
//!
//! Its environment is what the service's topology gives it (`src/service.rs`).

fn main() -> Result<(), lambda_shell::Error> {
    lambda_shell::main(&notifier::service::WS)
}
