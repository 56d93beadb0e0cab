//! The `fleet` command as a library, so the end-to-end tests drive the same code the
//! binary runs. `cmd` holds one module per command (its arguments and how it renders);
//! the operations themselves live in `fleet-ops`; `console` is the ops console's HTTP
//! layer over them; `dev`, `local` and `workers` wire the local stack; `bench` holds the
//! benchmarks. `main.rs` only parses and dispatches.

pub mod api;
pub mod bench;
pub mod chaos;
pub mod cmd;
pub mod console;
pub mod cost;
pub mod dev;
pub mod events;
pub mod infra;
pub mod local;
pub mod render;
pub mod watch;
pub mod workers;

use std::fmt;

/// A mistake in what the user asked for: the binary exits with code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The SDK config from the standard AWS environment (`AWS_ENDPOINT_URL`, `AWS_REGION`,
/// `AWS_PROFILE`, credentials), as every AWS tool reads it.
pub async fn aws_from_env() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}
