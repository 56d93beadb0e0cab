//! The stage's Lambda functions as the local host runs them: the same handler functions
//! and `lambda_runtime`/`lambda_http` services the `bootstrap` binaries run, registered
//! under the topology's function names, plus the dev token issuer's JWKS.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use auth::{DevIssuer, Verifier};
use contracts::BusEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use local_host::Functions;
use provision::{DeployReport, Topology};

/// A `lambda_runtime` service calling `handler(event, &deps)` for each EventBridge event,
/// as the functions' `bootstrap` binaries do.
macro_rules! on_bus {
    ($deps:expr, $handler:path) => {{
        let deps = $deps.clone();
        service_fn(move |event: LambdaEvent<BusEvent>| {
            let deps = deps.clone();
            async move { $handler(event.payload, &deps).await }
        })
    }};
}

/// Where the dev issuer's key lives under the fleet home.
pub fn issuer_key_path(home: &Path) -> std::path::PathBuf {
    home.join("dev-issuer.pem")
}

/// The dev issuer of the local stack (its key is generated once per workspace).
pub fn dev_issuer(home: &Path) -> anyhow::Result<DevIssuer> {
    DevIssuer::load_or_create(issuer_key_path(home)).context("loading the local dev token issuer")
}

/// The email provider the local campaigns service talks to (the fake one `fleet dev`
/// starts), and the webhook secret it shares with the callbacks service.
#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub url: String,
    pub secret: Vec<u8>,
}

/// Every function of the stage, ready for the local host.
pub fn functions(
    sdk: &aws_config::SdkConfig,
    topology: &Topology,
    report: &DeployReport,
    issuer: &DevIssuer,
    provider: &Provider,
) -> anyhow::Result<Functions> {
    let names = topology.names();
    let verifier = dev_verifier(issuer)?;
    let state_machine = report
        .state_machine_arn("simulation-job")
        .context("the deployment has no simulation-job state machine")?;
    let deps = Arc::new(
        jobs::Deps::new(sdk, names.table("jobs"))
            .with_publisher(bus::Publisher::from_sdk(sdk, names.bus()))
            .with_verifier(verifier)
            .with_state_machine(state_machine),
    );
    let callbacks = Arc::new(callbacks::Deps::new(
        sdk,
        names.table("callbacks"),
        callbacks::SecretSource::single(
            &provider.name,
            callbacks::Secret::new(provider.secret.clone()),
        ),
    ));
    let campaign_machine = report
        .state_machine_arn("campaign-delivery")
        .context("the deployment has no campaign-delivery state machine")?;
    let campaigns = Arc::new(
        campaigns::Deps::new(sdk, names.table("campaigns"))
            .with_state_machine(campaign_machine)
            .with_provider(campaigns::ProviderConfig {
                name: provider.name.clone(),
                url: provider.url.clone(),
            }),
    );
    let schedule_machine = report
        .state_machine_arn("schedule")
        .context("the deployment has no schedule state machine")?;
    let scheduler = Arc::new(scheduler::Deps::new(sdk, schedule_machine));
    let licenses = Arc::new(licenses::Deps::new(
        sdk,
        names.table("licenses"),
        names.bus(),
    ));
    Ok(Functions::new()
        .http("jobs-api", jobs::app(deps.clone()))
        .lambda("jobs-requested", on_bus!(deps, jobs::handle_job_requested))
        .lambda("jobs-view", on_bus!(deps, jobs::handle_job_event))
        .lambda(
            "callbacks-awaited",
            on_bus!(callbacks, callbacks::handle_awaited),
        )
        .http("callbacks-webhook", callbacks::app(callbacks.clone()))
        .lambda(
            "campaigns-requested",
            on_bus!(campaigns, campaigns::handle_requested),
        )
        .lambda(
            "campaigns-send",
            on_bus!(campaigns, campaigns::handle_send_requested),
        )
        .lambda(
            "campaigns-outcome",
            on_bus!(campaigns, campaigns::handle_outcome),
        )
        .lambda(
            "scheduler-requested",
            on_bus!(scheduler, scheduler::handle_requested),
        )
        .lambda(
            "scheduler-cancelled",
            on_bus!(scheduler, scheduler::handle_cancelled),
        )
        .lambda(
            "licenses-cancelled",
            on_bus!(licenses, licenses::handle_subscription_cancelled),
        )
        .lambda(
            "licenses-deactivate",
            on_bus!(licenses, licenses::handle_deactivation_due),
        ))
}

/// A verifier of the dev issuer's tokens.
fn dev_verifier(issuer: &DevIssuer) -> anyhow::Result<Verifier> {
    let config = issuer.verifier_config().context("the dev issuer's JWKS")?;
    Ok(Verifier::new(config))
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

/// Adds the notifier's functions: `notifier-ws` behind the local WebSocket gateway and
/// `notifier-events`, pushing through the `@connections` API the local host serves at
/// `connections_endpoint` (`http://<its address>`). Their management client reaches it
/// through `in_process` (bound by [`local_host::Host::serve_in_process`]): the same
/// requests to the same handlers, without a loopback socket per post.
pub fn with_notifier(
    functions: Functions,
    sdk: &aws_config::SdkConfig,
    topology: &Topology,
    issuer: &DevIssuer,
    connections_endpoint: &str,
    in_process: &local_host::InProcessClient,
) -> anyhow::Result<Functions> {
    let names = topology.names();
    let verifier = dev_verifier(issuer)?;
    let deps = notifier::Deps::new(
        sdk,
        names.table("notifier"),
        connections_endpoint,
        notifier::NotifierConfig::default(),
    )
    .with_verifier(verifier)
    // Unsigned and in process: see `InProcessClient::management_client`.
    .with_connections(|| in_process.management_client(sdk, connections_endpoint));
    let deps = Arc::new(deps);
    let ws = deps.clone();
    Ok(functions
        .lambda(
            "notifier-ws",
            service_fn(
                move |event: LambdaEvent<
                    aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest,
                >| {
                    let deps = ws.clone();
                    async move { notifier::handle_ws(event.payload, &deps).await }
                },
            ),
        )
        .lambda("notifier-events", on_bus!(deps, notifier::handle_event)))
}

/// The dashboard page at `/`, and `/dev/token`, which hands it (and only it, locally) a
/// fresh token for the user `dev` so the page works without pasting one.
pub fn dashboard_routes(issuer: Arc<DevIssuer>) -> axum::Router {
    const SUB: &str = "dev";
    let token = axum::Router::new()
        .route(
            "/dev/token",
            axum::routing::get(move || {
                let issued = issuer.issue(SUB, std::time::Duration::from_secs(12 * 3600));
                async move {
                    match issued {
                        Ok(token) => Ok(axum::Json(
                            serde_json::json!({ "token": token, "sub": SUB }),
                        )),
                        Err(e) => Err((
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            axum::Json(serde_json::json!({ "error": e.to_string() })),
                        )),
                    }
                }
            }),
        )
        // No other web page may get a token: see `local_host::local_only`.
        .route_layer(axum::middleware::from_fn(local_host::local_only));
    axum::Router::new()
        .route(
            "/",
            axum::routing::get(|| async { axum::response::Html(DASHBOARD) }),
        )
        .merge(token)
}

/// The dashboard: one self-contained page (no build step, nothing fetched elsewhere).
const DASHBOARD: &str = include_str!("../assets/dashboard.html");

#[cfg(test)]
mod tests {
    use super::*;
    use provision::{Deployed, Outcome, ResourceKind, Stage};

    /// A deployment report naming the fleet's state machines, as `deploy` returns it.
    fn report(topology: &Topology) -> DeployReport {
        let resources = topology
            .state_machines()
            .map(|m| Deployed {
                kind: ResourceKind::StateMachine,
                name: m.name.clone(),
                physical: m.name.clone(),
                arn: Some(format!(
                    "arn:aws:states:us-east-1:000000000000:stateMachine:{}",
                    m.name
                )),
                url: None,
                outcome: Outcome::Created,
            })
            .collect();
        DeployReport {
            stage: topology.stage.clone(),
            resources,
            lambda_targets: Vec::new(),
        }
    }

    /// Every function of the topology has exactly one handler registered for the local
    /// host, and nothing is registered that the topology does not declare.
    #[tokio::test]
    async fn every_topology_function_has_exactly_one_handler() {
        let topology = provision::fleet(&Stage::default());
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let issuer = DevIssuer::generate().expect("a dev issuer");
        let provider = Provider {
            name: "acme".into(),
            url: "http://127.0.0.1:9".into(),
            secret: b"secret".to_vec(),
        };
        let functions = functions(&sdk, &topology, &report(&topology), &issuer, &provider)
            .expect("the functions are wired");
        let in_process = local_host::InProcessClient::new();
        let functions = with_notifier(
            functions,
            &sdk,
            &topology,
            &issuer,
            "http://127.0.0.1:9",
            &in_process,
        )
        .expect("the notifier is wired");

        let declared: Vec<&str> = topology.functions().map(|f| f.name.as_str()).collect();
        let mut declared_sorted = declared.clone();
        declared_sorted.sort_unstable();
        let registered: Vec<&str> = functions.names().collect();
        assert_eq!(
            registered, declared_sorted,
            "registered handlers (left) differ from the topology's functions (right)"
        );
        assert!(
            functions.registered_twice().is_empty(),
            "registered twice: {:?}",
            functions.registered_twice()
        );
        assert_eq!(
            declared.len(),
            declared_sorted.len(),
            "a function declared twice"
        );
    }
}
