//! The stage's Lambda functions as the local host runs them: every function each service
//! lists (`provision::functions`), built from the environment the topology gives it in
//! the emulator's deployment, plus the dev token issuer's JWKS.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use auth::{DevIssuer, Verifier};
use lambda_shell::Context;
use local_host::Functions;
use provision::{DeployReport, TokenSetting, Topology, ValueRef};

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

/// What the local deployment knows that the emulator's does not: on AWS these are the
/// stacks' parameters and the API Gateway endpoints.
#[derive(Debug, Clone)]
pub struct LocalSettings {
    /// The local host's address, `http://127.0.0.1:<port>`: the `@connections` endpoint
    /// and where the dev issuer's JWKS is served.
    pub host_url: String,
    pub provider: Provider,
}

impl LocalSettings {
    /// The value of what the deployment report cannot resolve.
    fn value(
        &self,
        sdk: &aws_config::SdkConfig,
        issuer: &DevIssuer,
        v: &ValueRef,
    ) -> Option<String> {
        match v {
            ValueRef::Region => sdk.region().map(ToString::to_string),
            ValueRef::ConnectionsEndpoint(_) => Some(self.host_url.clone()),
            ValueRef::Token(TokenSetting::Issuer) => Some(issuer.issuer().to_owned()),
            ValueRef::Token(TokenSetting::Audience) => Some(issuer.audience().to_owned()),
            ValueRef::Token(TokenSetting::JwksUrl) => {
                Some(format!("{}/.well-known/jwks.json", self.host_url))
            }
            ValueRef::Setting { parameter, .. } => match *parameter {
                callbacks::service::PARAM_PROVIDERS | campaigns::service::PARAM_PROVIDER_NAME => {
                    Some(self.provider.name.clone())
                }
                campaigns::service::PARAM_PROVIDER_URL => Some(self.provider.url.clone()),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Every function of the stage, ready for the local host: each built by its service from
/// the environment the topology resolves to in `report`. Tokens are checked with the dev
/// issuer's keys directly, and the notifier pushes through `in_process` (bound by
/// [`local_host::Host::serve_in_process`]): the same requests to the same handlers,
/// without a loopback socket per post.
pub fn functions(
    sdk: &aws_config::SdkConfig,
    topology: &Topology,
    report: &DeployReport,
    issuer: &DevIssuer,
    settings: &LocalSettings,
    in_process: &local_host::InProcessClient,
) -> anyhow::Result<Functions> {
    let verifier = Arc::new(dev_verifier(issuer)?);
    // Unsigned and in process: see `InProcessClient::management_client`.
    let connections = in_process.management_client(sdk, &settings.host_url);
    let mut functions = Functions::new();
    for function in provision::functions() {
        let vars = provision::environment(topology, report, function.name, &|v| {
            settings.value(sdk, issuer, v)
        })?;
        let context = Context::new(sdk.clone(), vars)
            .with(verifier.clone())
            .with(connections.clone());
        let handler = (function.build)(&context)
            .with_context(|| format!("building function {}", function.name))?;
        functions = functions.handler(function.name, handler);
    }
    Ok(functions)
}

/// Stores the provider's webhook secret where the topology tells `callbacks-webhook` to
/// read it, as an operator does on AWS: SecureString `/fleet/<stage>/callbacks/<provider>`.
pub async fn store_provider_secret(
    sdk: &aws_config::SdkConfig,
    topology: &Topology,
    provider: &Provider,
) -> anyhow::Result<()> {
    let name = format!(
        "{}/{}",
        topology.names().parameter_path("callbacks"),
        provider.name
    );
    let value = String::from_utf8(provider.secret.clone())
        .context("the provider's webhook secret is not UTF-8")?;
    aws_sdk_ssm::Client::new(sdk)
        .put_parameter()
        .name(&name)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .with_context(|| format!("storing the webhook secret {name}"))?;
    Ok(())
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
        let settings = LocalSettings {
            host_url: "http://127.0.0.1:9".into(),
            provider: Provider {
                name: "acme".into(),
                url: "http://127.0.0.1:9".into(),
                secret: b"secret".to_vec(),
            },
        };
        let in_process = local_host::InProcessClient::new();
        let functions = functions(
            &sdk,
            &topology,
            &report(&topology),
            &issuer,
            &settings,
            &in_process,
        )
        .expect("the functions are wired");

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
