//! The stage's Lambda functions as the local host runs them: the same handler functions
//! and `lambda_runtime`/`lambda_http` services the `bootstrap` binaries run, registered
//! under the topology's function names, plus the dev token issuer's JWKS.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use auth::{DevIssuer, Jwks, Verifier, VerifierConfig};
use contracts::BusEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use local_host::Functions;
use topology::{DeployReport, Topology};

/// Where the dev issuer's key lives under the fleet home.
pub fn issuer_key_path(home: &Path) -> std::path::PathBuf {
    home.join("dev-issuer.pem")
}

/// The dev issuer of the local stack (its key is generated once per workspace).
pub fn dev_issuer(home: &Path) -> anyhow::Result<DevIssuer> {
    DevIssuer::load_or_create(issuer_key_path(home)).context("loading the local dev token issuer")
}

/// Every function of the stage, ready for the local host.
pub fn functions(
    sdk: &aws_config::SdkConfig,
    topology: &Topology,
    report: &DeployReport,
    issuer: &DevIssuer,
) -> anyhow::Result<Functions> {
    let names = topology.names();
    let jwks = Jwks::from_json(&issuer.jwks()).context("the dev issuer's JWKS")?;
    let verifier = Verifier::new(VerifierConfig {
        issuer: issuer.issuer().to_string(),
        audience: issuer.audience().to_string(),
        jwks,
    });
    let state_machine = report
        .state_machine_arn("simulation-job")
        .context("the deployment has no simulation-job state machine")?;
    let deps = Arc::new(
        jobs::Deps::new(sdk, names.table("jobs"))
            .with_publisher(bus::Publisher::from_sdk(sdk, names.bus()))
            .with_verifier(verifier)
            .with_state_machine(state_machine),
    );
    let requested = deps.clone();
    let view = deps.clone();
    Ok(Functions::new()
        .http("jobs-api", jobs::app(deps))
        .lambda(
            "jobs-requested",
            service_fn(move |event: LambdaEvent<BusEvent>| {
                let deps = requested.clone();
                async move { jobs::handle_job_requested(event.payload, &deps).await }
            }),
        )
        .lambda(
            "jobs-view",
            service_fn(move |event: LambdaEvent<BusEvent>| {
                let deps = view.clone();
                async move { jobs::handle_job_event(event.payload, &deps).await }
            }),
        ))
}

/// Extra routes on the local HTTP listener: the dev issuer's keys, where a verifier
/// configured with `JWKS_URL` fetches them.
pub fn issuer_routes(issuer: &DevIssuer) -> axum::Router {
    let jwks = issuer.jwks();
    axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    )
}
