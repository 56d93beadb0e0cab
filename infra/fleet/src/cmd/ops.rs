//! `fleet ops console`: the ops console (`crate::console`) served alone against any
//! stage, with the operator's own AWS credentials, for tokens of the stage's identity
//! provider in the `fleet-ops` group.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use auth::{Jwks, Verifier, VerifierConfig};
use clap::{Args, Subcommand};
use topology::env::{JWKS_URL, JWT_AUDIENCE, JWT_ISSUER};

use super::{Globals, shutdown_on_signals};
use crate::UsageError;

#[derive(Debug, Subcommand)]
pub enum OpsCommand {
    /// Serve the ops console (DLQs, runs, task tokens, live queue depths) at
    /// http://LISTEN/ops until Ctrl-C. Tokens are verified as the stage's HTTP API does:
    /// against the flags below, or the token settings of the stage's jobs-api function.
    Console(ConsoleArgs),
}

#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// A loopback address to listen on (the console answers only this machine's pages).
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// The identity provider's JWKS URL (default: the jobs-api function's JWKS_URL).
    #[arg(long)]
    jwks_url: Option<String>,
    /// The tokens' exact `iss` (default: the jobs-api function's JWT_ISSUER).
    #[arg(long)]
    issuer: Option<String>,
    /// The tokens' audience or app client id (default: the function's JWT_AUDIENCE).
    #[arg(long)]
    audience: Option<String>,
    /// Accept the local dev issuer's tokens (`fleet auth token --group fleet-ops`), for
    /// a console against `fleet dev` run on its own.
    #[arg(long, conflicts_with_all = ["jwks_url", "issuer", "audience"])]
    dev_issuer: bool,
    #[arg(long, env = "FLEET_HOME")]
    home: Option<PathBuf>,
}

pub async fn run(command: OpsCommand, globals: &Globals) -> anyhow::Result<()> {
    let OpsCommand::Console(args) = command;
    if !args.listen.ip().is_loopback() {
        return Err(UsageError(format!(
            "--listen {}: the console listens on a loopback address only (127.0.0.1 or [::1])",
            args.listen
        ))
        .into());
    }
    let ops = super::ops(globals).await;
    let verifier = verifier(&args, &ops).await?;
    let routes = crate::console::routes(ops, Arc::new(verifier))
        // A page whose domain re-resolves to 127.0.0.1 must not read the console.
        .layer(axum::middleware::from_fn(local_host::local_only));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let shutdown = shutdown_on_signals()?;
    println!(
        "ops console for stage {}: http://{}/ops (Ctrl-C stops it)",
        globals.stage,
        listener.local_addr()?
    );
    axum::serve(listener, routes)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("serving the ops console")
}

/// The verifier the flags describe, completed from the jobs-api function's environment.
async fn verifier(args: &ConsoleArgs, ops: &fleet_ops::Ops) -> anyhow::Result<Verifier> {
    if args.dev_issuer {
        let home = args.home.clone().unwrap_or_else(emulator::default_home);
        let config = crate::local::dev_issuer(&home)?
            .verifier_config()
            .context("the dev issuer's JWKS")?;
        return Ok(Verifier::new(config));
    }
    let (mut jwks_url, mut issuer, mut audience) = (
        args.jwks_url.clone(),
        args.issuer.clone(),
        args.audience.clone(),
    );
    if jwks_url.is_none() || issuer.is_none() || audience.is_none() {
        let function = ops.names.function(jobs::service::API.name);
        let configuration = ops
            .lambda
            .get_function_configuration()
            .function_name(&function)
            .send()
            .await
            .map_err(|e| {
                UsageError(format!(
                    "reading the token settings of {function} failed ({}); pass --jwks-url, --issuer and --audience",
                    aws_smithy_types::error::display::DisplayErrorContext(&e)
                ))
            })?;
        let vars = configuration
            .environment()
            .and_then(|e| e.variables())
            .cloned()
            .unwrap_or_default();
        jwks_url = jwks_url.or_else(|| vars.get(JWKS_URL).cloned());
        issuer = issuer.or_else(|| vars.get(JWT_ISSUER).cloned());
        audience = audience.or_else(|| vars.get(JWT_AUDIENCE).cloned());
    }
    let (Some(jwks_url), Some(issuer), Some(audience)) = (jwks_url, issuer, audience) else {
        return Err(UsageError(
            "the token settings are incomplete; pass --jwks-url, --issuer and --audience"
                .to_owned(),
        )
        .into());
    };
    let jwks = Jwks::from_url(&jwks_url).map_err(|e| UsageError(format!("--jwks-url: {e}")))?;
    Ok(Verifier::new(VerifierConfig {
        issuer,
        audience,
        jwks,
    }))
}
