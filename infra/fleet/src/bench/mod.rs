//! `fleet bench`: benchmarks that print their numbers as JSON on stdout (progress on
//! stderr). `notifier` measures WebSocket broadcasts through the local gateway; `worker`
//! drains a queue with the `sqs-worker` runtime and with a naive loop.

mod clients;
pub mod notifier;
mod procfs;
pub mod worker;
