//! `jobs-api`: the jobs HTTP API on Lambda (behind API Gateway's HTTP API).
//!
//! Environment: `STAGE`, `JOBS_TABLE`, `BUS`, `JWT_ISSUER`, `JWT_AUDIENCE`, `JWKS_URL`.

use std::sync::Arc;

use auth::{Jwks, Verifier, VerifierConfig};
use jobs::Deps;
use lambda_shell::{env, init_tracing};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_tracing();
    let stage = env(topology::env::STAGE)?;
    let sdk = aws_config::load_from_env().await;
    let verifier = Verifier::new(VerifierConfig {
        issuer: env(topology::env::JWT_ISSUER)?,
        audience: env(topology::env::JWT_AUDIENCE)?,
        jwks: Jwks::from_url(env(topology::env::JWKS_URL)?)?,
    });
    let deps = Deps::new(&sdk, env(jobs::service::env::JOBS_TABLE)?)
        .with_publisher(bus::Publisher::from_sdk(&sdk, env(topology::env::BUS)?))
        .with_verifier(verifier);
    tracing::info!(stage = %stage, table = %deps.table, "jobs-api starting");
    lambda_http::run(jobs::app(Arc::new(deps))).await
}
