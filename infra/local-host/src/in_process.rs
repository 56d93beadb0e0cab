//! An SDK HTTP client that hands requests to the local host's own router, in process.
//!
//! A function the host runs that calls an API the host serves (the notifier posting to
//! `@connections`) would otherwise make one loopback HTTP exchange per call: a TCP round
//! trip, a hyper client and a hyper server, for a post that ends in a queue send. With
//! [`InProcessClient`] as the SDK client's `http_client`, the same signed request, with
//! the same method, path, headers and body, goes to the same router and the same
//! handlers, and the response comes back through the SDK's own deserializer: only the
//! socket is skipped. Everyone else (the CLI, tests, other processes) still reaches the
//! host over HTTP.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};

use aws_config::SdkConfig;
use aws_runtime::invocation_id::InvocationIdInterceptor;
use aws_runtime::request_info::RequestInfoInterceptor;
use aws_runtime::service_clock_skew::ServiceClockSkewInterceptor;
use aws_runtime::user_agent::UserAgentInterceptor;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::{Intercept, disable_interceptor};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use tower::ServiceExt as _;

/// The largest response body read back (the management API's answers are tiny).
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// An SDK HTTP client bound to a host's router once the host starts
/// ([`crate::Host::serve_in_process`]). Clones share the binding.
#[derive(Clone, Default)]
pub struct InProcessClient {
    router: Arc<OnceLock<Router>>,
}

impl std::fmt::Debug for InProcessClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessClient")
            .field("bound", &self.router.get().is_some())
            .finish()
    }
}

impl InProcessClient {
    pub fn new() -> Self {
        InProcessClient::default()
    }

    /// An `@connections` client whose requests this client hands to the host, as the
    /// notifier posts in `fleet dev`: the same calls as on AWS, to `endpoint`, unsigned.
    /// Nothing checks a signature locally (the gateway, like the emulator, has no IAM),
    /// and signing is a quarter of a post's CPU, which a broadcast to 10,000 connections
    /// pays 10,000 times on the cores the gateway and its clients share. For the same
    /// reason it watches no stalled stream (an in-process answer has none) and skips the
    /// headers only a request on the wire needs ([`InProcessInterceptor`]).
    pub fn management_client(
        &self,
        sdk: &SdkConfig,
        endpoint: &str,
    ) -> aws_sdk_apigatewaymanagement::Client {
        use aws_sdk_apigatewaymanagement::config::{Builder, StalledStreamProtectionConfig};
        let mut unsigned = sdk.to_builder();
        unsigned.set_credentials_provider(None);
        let config = Builder::from(&unsigned.build())
            .endpoint_url(endpoint)
            .http_client(self.clone())
            .interceptor(InProcessInterceptor)
            .allow_no_auth()
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .build();
        aws_sdk_apigatewaymanagement::Client::from_conf(config)
    }

    /// Binds the client to the router that answers its requests: the host's own, which
    /// [`crate::Host::serve_in_process`] binds when the host starts, or one of a test or
    /// bench. Later binds are ignored (one router per client).
    pub fn bind(&self, router: Router) {
        if self.router.set(router).is_err() {
            tracing::warn!("an in-process client is already bound to a host; keeping the first");
        }
    }
}

impl HttpClient for InProcessClient {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

impl HttpConnector for InProcessClient {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let router = self.router.get().cloned();
        HttpConnectorFuture::new(async move {
            let router = router.ok_or_else(|| {
                ConnectorError::io(
                    "the local host has not started: nothing serves this request in process".into(),
                )
            })?;
            let mut request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::other(e.into(), None))?
                .map(Body::new);
            // Handlers that ask who connected see the loopback, as over TCP.
            request
                .extensions_mut()
                .insert(ConnectInfo(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))));
            let response = router
                .oneshot(request)
                .await
                .map_err(|e| ConnectorError::other(e.into(), None))?;
            let (parts, body) = response.into_parts();
            let bytes = axum::body::to_bytes(body, MAX_RESPONSE_BYTES)
                .await
                .map_err(|e| ConnectorError::io(e.into()))?;
            HttpResponse::try_from(http::Response::from_parts(parts, SdkBody::from(bytes)))
                .map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// For an SDK client whose requests go in process: turns off, per request, the SDK's
/// interceptors that serve only requests on the wire. The user agent, the invocation id
/// and the attempt header are formatted for every request (the user agent alone was
/// about 7% of a post's CPU), and nothing in process reads them; clock skew has no meaning
/// without a remote clock. The request is otherwise the same.
#[derive(Debug, Default, Clone, Copy)]
pub struct InProcessInterceptor;

impl Intercept for InProcessInterceptor {
    fn name(&self) -> &'static str {
        "InProcessInterceptor"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        const WHY: &str = "the request is handled in process";
        let state = cfg.interceptor_state();
        state.store_put(disable_interceptor::<UserAgentInterceptor>(WHY));
        state.store_put(disable_interceptor::<InvocationIdInterceptor>(WHY));
        state.store_put(disable_interceptor::<RequestInfoInterceptor>(WHY));
        state.store_put(disable_interceptor::<ServiceClockSkewInterceptor>(WHY));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    /// A client through `in_process`: `fleet dev`'s (with the interceptor) or one with
    /// every SDK interceptor.
    fn client(
        in_process: &InProcessClient,
        intercepted: bool,
    ) -> aws_sdk_apigatewaymanagement::Client {
        let sdk = SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let endpoint = "http://127.0.0.1:9";
        if intercepted {
            return in_process.management_client(&sdk, endpoint);
        }
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(&sdk)
            .endpoint_url(endpoint)
            .http_client(in_process.clone())
            .allow_no_auth();
        aws_sdk_apigatewaymanagement::Client::from_conf(config.build())
    }

    #[tokio::test]
    async fn in_process_requests_go_without_the_wire_only_headers() {
        // `GET @connections/{id}` answering with what the request carried.
        let router = Router::new().route(
            "/@connections/{id}",
            get(|headers: http::HeaderMap| async move {
                let has = |name: &str| headers.contains_key(name).to_string();
                axum::Json(serde_json::json!({
                    "connectedAt": "2026-01-01T00:00:00.000Z",
                    "lastActiveAt": "2026-01-01T00:00:00.000Z",
                    "identity": {
                        "userAgent": has("x-amz-user-agent"),
                        "sourceIp": has("amz-sdk-invocation-id"),
                    },
                }))
            }),
        );
        let in_process = InProcessClient::new();
        in_process.bind(router);
        for (intercepted, carried) in [(false, "true"), (true, "false")] {
            let out = client(&in_process, intercepted)
                .get_connection()
                .connection_id("c1")
                .send()
                .await
                .expect("answered in process");
            let identity = out.identity.expect("an identity");
            assert_eq!(identity.user_agent.as_deref(), Some(carried), "user agent");
            assert_eq!(
                identity.source_ip.as_deref(),
                Some(carried),
                "invocation id"
            );
        }
    }
}
