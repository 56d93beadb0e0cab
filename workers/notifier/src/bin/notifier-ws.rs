//! `notifier-ws`: every route of the notifier's WebSocket API (API Gateway → Lambda).
//!
//! Environment: `STAGE`, `NOTIFIER_TABLE`, `CONNECTIONS_ENDPOINT`, `JWT_ISSUER`,
//! `JWT_AUDIENCE`, `JWKS_URL`.

use auth::{Jwks, Verifier, VerifierConfig};
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{LambdaEvent, service_fn};
use lambda_shell::{env, init_tracing};
use notifier::{Deps, NotifierConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let stage = env(topology::env::STAGE)?;
    let sdk = aws_config::load_from_env().await;
    let verifier = Verifier::new(VerifierConfig {
        issuer: env(topology::env::JWT_ISSUER)?,
        audience: env(topology::env::JWT_AUDIENCE)?,
        jwks: Jwks::from_url(env(topology::env::JWKS_URL)?)?,
    });
    let deps = Deps::new(
        &sdk,
        env(notifier::service::env::NOTIFIER_TABLE)?,
        &env(notifier::service::env::CONNECTIONS_ENDPOINT)?,
        NotifierConfig::default(),
    )
    .with_verifier(verifier);
    tracing::info!(stage = %stage, table = %deps.store.table(), "notifier-ws starting");
    let deps = &deps;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
            notifier::handle_ws(event.payload, deps).await
        },
    ))
    .await
}
