//! `fleet bench worker`: the `sqs-worker` runtime against a naive receive-one/delete-one
//! loop (`sqs_worker::bench`), on the endpoint the AWS environment names or on a private
//! emulator.

use std::path::PathBuf;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// No-op jobs to fill the queue with.
    pub messages: usize,
    /// Where a private emulator's virtualenv lives.
    pub home: PathBuf,
}

/// Runs the bench: on the endpoint `AWS_ENDPOINT_URL` names when it is set, else on an
/// emulator started (or reused) for it.
pub async fn run(config: &BenchConfig) -> anyhow::Result<sqs_worker::BenchReport> {
    let private;
    let sdk = if std::env::var_os("AWS_ENDPOINT_URL").is_some() {
        crate::aws_from_env().await
    } else {
        private = emulator::Emulator::start_or_reuse(&emulator::Config {
            home: config.home.clone(),
            port: 0,
        })
        .await?;
        private.sdk_config()
    };
    Ok(sqs_worker::bench::bench(&sdk, config.messages).await?)
}
