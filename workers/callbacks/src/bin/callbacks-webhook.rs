//! `callbacks-webhook`: `POST /callbacks/{provider}` on Lambda (behind API Gateway's HTTP
//! API).
//!
//! Environment: `STAGE`, `CALLBACKS_TABLE`; `CALLBACK_PROVIDERS`, the providers accepted
//! (comma-separated `name` or `name=<max body bytes>`, see `callbacks::parse_providers`;
//! default body limit `callbacks::DEFAULT_MAX_BODY_BYTES`), required with SSM or files;
//! and where the per-provider secrets are, the first that is set of:
//! `CALLBACK_SECRETS_SSM_PREFIX` (SSM Parameter Store, SecureString `<prefix>/<provider>`;
//! on AWS, e.g. `/fleet/<stage>/callbacks`), `CALLBACK_SECRETS_DIR` (a file per provider),
//! or `CALLBACK_SECRET_<PROVIDER>` variables (provider upper-cased, `-` as `_`; these also
//! list the providers when `CALLBACK_PROVIDERS` is not set).

use std::collections::BTreeMap;
use std::sync::Arc;

use callbacks::{Config, Deps, Secret, SecretSource};
use lambda_shell::{env, init_tracing};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_tracing();
    let stage = env(topology::env::STAGE)?;
    let sdk = aws_config::load_from_env().await;
    let secrets =
        if let Ok(prefix) = std::env::var(callbacks::service::env::CALLBACK_SECRETS_SSM_PREFIX) {
            SecretSource::ssm(aws_sdk_ssm::Client::new(&sdk), prefix)
        } else if let Ok(dir) = std::env::var("CALLBACK_SECRETS_DIR") {
            SecretSource::files(dir)
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
            SecretSource::memory(secrets)
        };
    let listed = secrets.listed_providers().is_some();
    let mut deps = Deps::new(
        &sdk,
        env(callbacks::service::env::CALLBACKS_TABLE)?,
        secrets,
    );
    match std::env::var(callbacks::service::env::CALLBACK_PROVIDERS) {
        Ok(list) => {
            let providers = callbacks::parse_providers(&list)
                .map_err(|e| format!("environment variable CALLBACK_PROVIDERS: {e}"))?;
            let config = Config {
                providers,
                ..deps.config.clone()
            };
            deps = deps.with_config(config);
        }
        // Without a list, every webhook would be refused: say so at start, not per request.
        Err(_) if !listed => {
            return Err("environment variable CALLBACK_PROVIDERS is not set: list the providers webhooks are accepted from, e.g. `acme,bigco=1048576`".into());
        }
        Err(_) => {}
    }
    let providers: Vec<&String> = deps.config.providers.keys().collect();
    tracing::info!(stage = %stage, table = %deps.store.table, secrets = ?deps.secrets, providers = ?providers, "callbacks-webhook starting");
    lambda_http::run(callbacks::app(Arc::new(deps))).await
}
