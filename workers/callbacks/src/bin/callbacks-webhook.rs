//! `callbacks-webhook`: `POST /callbacks/{provider}` on Lambda (behind API Gateway's HTTP
//! API).
//!
//! Environment: `STAGE`, `CALLBACKS_TABLE`, and where the per-provider secrets are, the
//! first that is set of: `CALLBACK_SECRETS_SSM_PREFIX` (SSM Parameter Store,
//! SecureString `<prefix>/<provider>`; on AWS, e.g. `/fleet/<stage>/callbacks`),
//! `CALLBACK_SECRETS_DIR` (a file per provider), or `CALLBACK_SECRET_<PROVIDER>`
//! variables (provider upper-cased, `-` as `_`).

use std::collections::BTreeMap;
use std::sync::Arc;

use callbacks::{Deps, Secret, SecretSource};
use lambda_shell::{env, init_tracing};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_tracing();
    let stage = env("STAGE")?;
    let sdk = aws_config::load_from_env().await;
    let secrets = if let Ok(prefix) = std::env::var("CALLBACK_SECRETS_SSM_PREFIX") {
        SecretSource::ssm(aws_sdk_ssm::Client::new(&sdk), prefix)
    } else if let Ok(dir) = std::env::var("CALLBACK_SECRETS_DIR") {
        SecretSource::Files { dir: dir.into() }
    } else {
        let secrets: BTreeMap<String, Secret> = std::env::vars()
            .filter_map(|(name, value)| {
                let provider = name.strip_prefix("CALLBACK_SECRET_")?;
                Some((
                    provider.to_ascii_lowercase().replace('_', "-"),
                    Secret::new(value),
                ))
            })
            .collect();
        SecretSource::Memory(secrets)
    };
    let deps = Deps::new(&sdk, env("CALLBACKS_TABLE")?, secrets);
    tracing::info!(stage = %stage, table = %deps.store.table, secrets = ?deps.secrets, "callbacks-webhook starting");
    lambda_http::run(callbacks::app(Arc::new(deps))).await
}
