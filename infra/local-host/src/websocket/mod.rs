//! API Gateway WebSocket APIs → Lambda: a real WebSocket server with API Gateway's
//! connection ids, route selection, events and limits, the `@connections` management API
//! the backend pushes through, and a Server-Sent Events transport for the same routes.
//!
//! - **Connect.** `GET <path>` (`/ws` by default, [`crate::WebSocketConfig::path`]) gets
//!   a connection id (11 random bytes in base64, like `L0SM9cOFvHcCIhw=`), then the
//!   `$connect` route is invoked *before* the upgrade with the request's headers and query
//!   string. A 2xx response (or one without `statusCode`) accepts the handshake; any other
//!   status refuses it with that status and the function's body; a failed invocation
//!   refuses it with 500. Without a `$connect` route every handshake is accepted.
//! - **Messages.** Routes are selected on `$request.body.action`: the route key equal to
//!   the JSON body's `action`, else `$default`, else API Gateway's `Forbidden` frame. The
//!   route's function is invoked synchronously, one message at a time per connection and
//!   in order; the `body` of its response, if any, is sent back (the topology's routes are
//!   two-way: `RouteResponseSelectionExpression: $default`). A failed invocation sends
//!   `Internal server error`, one over the 29-second integration timeout `Endpoint request
//!   timed out`, each with the connection and request ids, as API Gateway does.
//! - **Disconnect.** `$disconnect` runs once the connection has ended, whatever ended it,
//!   with `disconnectStatusCode` and `disconnectReason`: the client's close frame, `1001
//!   Going away` for the idle timeout, the maximum duration and the host's shutdown, `1000`
//!   for `DELETE @connections`, `1009` for a message over the limit, and `1006` for a
//!   connection that vanished (no close frame, or no answer within the keep-alive window).
//! - **`@connections`.** `POST`/`GET`/`DELETE /@connections/{id}` (also under
//!   `/<stage>/@connections/{id}`, the path of the AWS endpoint) answer as the API Gateway
//!   Management API does, so `aws-sdk-apigatewaymanagement` pointed at the host's address
//!   works unchanged: 410 `GoneException` for an unknown or closed connection, 413
//!   `PayloadTooLargeException` over the message limit, 429 `LimitExceededException` when a
//!   client is too slow to take what is posted to it.
//! - **SSE** (`GET <sse_path>?channel=..&since=..`): see [`sse`].
//!
//! Deliberate differences from AWS:
//!
//! - One WebSocket API per host, at one path: each service has its own API (and domain) on
//!   AWS; locally they would share the path, so a second service with WebSocket routes is
//!   a startup error. The URL carries no stage; events still name the stage.
//! - Keep-alive: the gateway pings every client at [`crate::WebSocketConfig::keep_alive_interval`]
//!   and drops one that sends nothing (not even a pong) for
//!   [`crate::WebSocketConfig::keep_alive_misses`] intervals, so a client that vanished
//!   without a close frame is noticed and `$disconnect` runs. AWS detects such connections
//!   on its own schedule (and not always).
//! - The idle timeout counts only messages from the client. Whether AWS also counts what
//!   it pushes is not documented; counting less means code that stays connected here stays
//!   connected there.
//! - `$disconnect` is always invoked while the host runs, where AWS makes it best-effort.
//!   When the host shuts down, the invocations that find no free instance of their
//!   function within [`crate::WebSocketConfig::shutdown_disconnect_wait`] are not made
//!   (one log line counts them), so a host with thousands of connections stops in
//!   seconds.
//! - Connection ids never contain `+` or `/`, so callers that do not percent-encode path
//!   segments still work; the header names in events are lowercase (HTTP/1 as hyper reads
//!   it); the domain name is the `Host` the client used; binary messages go to `$default`
//!   base64-encoded; posted payloads that are not UTF-8 become binary frames.
//! - How much a slow client may fall behind is this host's choice, not a documented AWS
//!   limit. A post to a WebSocket writes its frame itself and is answered once the kernel
//!   has it, so the socket's buffer is the client's queue; a post waiting over a second
//!   behind a write the kernel does not take gets 429, and a write not taken within the
//!   keep-alive window ends the connection (1006). An SSE stream queues up to
//!   [`crate::WebSocketConfig::outbound_queue`] frames.

mod connections;
mod events;
mod socket;
pub(crate) mod sse;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use topology::{FunctionKind, Topology};

use crate::config::WebSocketConfig;
use crate::error::HostError;
use crate::host::Account;
use crate::invoke::{Bound, Instance, Trigger};

pub(crate) use connections::ConnectionInfo;

/// API Gateway gives up on a WebSocket integration after 29 seconds.
const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(29);

/// The WebSocket API of the one service that has one, ready to serve.
pub(crate) struct WebSocketGateway {
    shared: Arc<Shared>,
}

/// What every connection task and handler shares.
pub(crate) struct Shared {
    /// The physical name of the service's WebSocket API, standing in for its API id.
    api_id: String,
    stage: String,
    account: Account,
    /// Route key → the function serving it.
    routes: BTreeMap<String, Bound>,
    config: WebSocketConfig,
    connections: connections::Table,
    /// Cancelled when the host shuts down: every connection closes with 1001.
    shutdown: CancellationToken,
    /// Every connection task and SSE stream, so shutdown can join them.
    tracker: TaskTracker,
    /// Since when the host has been shutting down (set by the first `$disconnect` after
    /// [`Shared::shutdown`] was cancelled).
    shutting_down_since: OnceLock<Instant>,
    /// `$disconnect` invocations not made at shutdown: no instance was free in time.
    skipped_disconnects: AtomicUsize,
}

/// Closes the gateway's connections when the host stops.
pub(crate) struct Closer {
    shared: Arc<Shared>,
}

impl Closer {
    /// Waits for every connection task and SSE stream to end (the shutdown token closes
    /// them), each with its `$disconnect`, and reports those that were skipped.
    pub(crate) async fn close(self) {
        let tracker = &self.shared.tracker;
        tracker.close();
        tracker.wait().await;
        let skipped = self.shared.skipped_disconnects.load(Ordering::Relaxed);
        if skipped > 0 {
            tracing::warn!(
                skipped,
                waited_ms = self.shared.config.shutdown_disconnect_wait.as_millis() as u64,
                "$disconnect not invoked for connections closed at shutdown: no instance of the function was free in time (API Gateway invokes $disconnect on a best-effort basis too)"
            );
        }
    }
}

impl WebSocketGateway {
    /// The gateway of `topology`'s WebSocket API, if it has one.
    pub(crate) fn new(
        topology: &Topology,
        bound: &BTreeMap<String, Bound>,
        account: Account,
        config: &WebSocketConfig,
        shutdown: CancellationToken,
    ) -> Result<Option<WebSocketGateway>, HostError> {
        let names = topology.names();
        let is_websocket = |r: &topology::Resource| matches!(r, topology::Resource::Function(f) if matches!(f.kind, FunctionKind::WebSocket { .. }));
        let services: Vec<&topology::Service> = topology
            .services
            .iter()
            .filter(|s| s.resources.iter().any(is_websocket))
            .collect();
        let service = match services.as_slice() {
            [] => return Ok(None),
            [one] => *one,
            _ => {
                return Err(HostError::WebSocketApis {
                    services: services.iter().map(|s| s.name.clone()).collect(),
                });
            }
        };
        let mut routes = BTreeMap::new();
        for resource in &service.resources {
            let topology::Resource::Function(f) = resource else {
                continue;
            };
            let FunctionKind::WebSocket { routes: keys } = &f.kind else {
                continue;
            };
            let Some(function) = bound.get(&f.name) else {
                unreachable!("bind() bound every function of the topology");
            };
            for key in keys {
                if let Some(first) = routes.insert(key.clone(), function.clone()) {
                    return Err(HostError::RouteConflict {
                        route: format!("WebSocket {key}"),
                        first: first.name,
                        second: f.name.clone(),
                    });
                }
            }
        }
        Ok(Some(WebSocketGateway {
            shared: Arc::new(Shared {
                api_id: names.websocket_api(&service.name),
                stage: names.stage().as_str().to_owned(),
                account,
                routes,
                config: config.clone(),
                connections: connections::Table::default(),
                shutdown,
                tracker: TaskTracker::new(),
                shutting_down_since: OnceLock::new(),
                skipped_disconnects: AtomicUsize::new(0),
            }),
        }))
    }

    /// What closes every connection task and SSE stream; the host closes them after the
    /// server stops.
    pub(crate) fn closer(&self) -> Closer {
        Closer {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The WebSocket endpoint, the SSE endpoint and `@connections`, without a fallback.
    pub(crate) fn into_router(self) -> Router {
        let shared = self.shared;
        let management = || {
            get(connections::get_connection)
                .post(connections::post_to_connection)
                .delete(connections::delete_connection)
        };
        Router::new()
            .route(&shared.config.path, get(socket::upgrade))
            .route(&shared.config.sse_path, get(sse::serve))
            .route("/@connections/{id}", management())
            .route(
                &format!("/{}/@connections/{{id}}", shared.stage),
                management(),
            )
            .with_state(shared)
    }
}

/// Whether a connection may open, as `$connect` decided.
enum Admission {
    Accepted,
    Refused(axum::response::Response),
}

/// What a message route gives back to the client, if anything.
pub(crate) enum Reply {
    None,
    /// The route response's body.
    Frame(String),
    /// A frame API Gateway writes itself (`Forbidden`, `Internal server error`).
    Gateway(String),
}

impl Shared {
    /// Invokes `$connect` for a new connection; `request` is the upgrade (or SSE) request.
    async fn connect(&self, info: &ConnectionInfo, request: &http::request::Parts) -> Admission {
        let Some(function) = self.routes.get("$connect") else {
            return Admission::Accepted;
        };
        let request_id = api_request_id();
        let event = events::connect(self, info, request, &request_id);
        let outcome = self.invoke(function, event).await;
        match outcome {
            Ok(value) => match connect_status(&value) {
                Ok(status) if status.is_success() => Admission::Accepted,
                Ok(status) => {
                    tracing::info!(
                        connection_id = %info.id,
                        status = status.as_u16(),
                        "$connect refused the connection"
                    );
                    let body = match value.get("body") {
                        Some(Value::String(body)) => body.clone(),
                        _ => json!({ "message": "Forbidden" }).to_string(),
                    };
                    Admission::Refused(status_response(status, body))
                }
                Err(reason) => {
                    tracing::warn!(connection_id = %info.id, reason = %reason, "malformed $connect response");
                    Admission::Refused(internal_error())
                }
            },
            Err(_) => Admission::Refused(internal_error()),
        }
    }

    /// Routes one message from the client and invokes its function.
    pub(crate) async fn message(&self, info: &ConnectionInfo, body: Inbound) -> Reply {
        let request_id = api_request_id();
        let route = match &body {
            Inbound::Text(text) => self.select(text),
            Inbound::Binary(_) => self.routes.get_key_value("$default"),
        };
        let Some((key, function)) = route else {
            return Reply::Gateway(gateway_frame("Forbidden", &info.id, &request_id));
        };
        let event = events::message(self, info, key, &body, &request_id);
        match self.invoke(function, event).await {
            Ok(value) => match route_response(value) {
                Some(body) => Reply::Frame(body),
                None => Reply::None,
            },
            Err(Failure::Timeout) => Reply::Gateway(gateway_frame(
                "Endpoint request timed out",
                &info.id,
                &request_id,
            )),
            Err(Failure::Function) => Reply::Gateway(gateway_frame(
                "Internal server error",
                &info.id,
                &request_id,
            )),
        }
    }

    /// Invokes `$disconnect` for a connection that has ended.
    pub(crate) async fn disconnect(&self, info: &ConnectionInfo, code: u16, reason: &str) {
        tracing::info!(connection_id = %info.id, code, reason, "connection closed");
        let Some(function) = self.routes.get("$disconnect") else {
            return;
        };
        // At shutdown, only until the wait for an instance runs out (best-effort).
        let deadline = self.shutdown.is_cancelled().then(|| {
            *self.shutting_down_since.get_or_init(Instant::now)
                + self.config.shutdown_disconnect_wait
        });
        let Some(instance) = function.instance(deadline).await else {
            self.skipped_disconnects.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(connection_id = %info.id, "$disconnect skipped at shutdown");
            return;
        };
        let request_id = api_request_id();
        let event = events::disconnect(self, info, code, reason, &request_id);
        // A failed `$disconnect` has nobody to tell; the invocation logged it.
        let _ = Self::invoke_on(instance, event, Instant::now() + INTEGRATION_TIMEOUT).await;
    }

    /// The route key `$request.body.action` selects, else `$default`.
    fn select(&self, body: &str) -> Option<(&String, &Bound)> {
        let action = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v.get("action").and_then(Value::as_str).map(str::to_owned));
        action
            .filter(|a| !a.starts_with('$'))
            .and_then(|a| self.routes.get_key_value(&a))
            .or_else(|| self.routes.get_key_value("$default"))
    }

    /// Invokes `function` within the integration timeout, the wait for a free instance
    /// included.
    async fn invoke(&self, function: &Bound, event: Value) -> Result<Value, Failure> {
        let deadline = Instant::now() + INTEGRATION_TIMEOUT;
        let instance = function
            .instance(Some(deadline))
            .await
            .ok_or(Failure::Timeout)?;
        Self::invoke_on(instance, event, deadline).await
    }

    async fn invoke_on(
        instance: Instance<'_>,
        event: Value,
        deadline: Instant,
    ) -> Result<Value, Failure> {
        let lambda_request_id = uuid::Uuid::new_v4().to_string();
        // The invoke log line says `http`: API Gateway invokes the function either way.
        let invocation = instance.invoke(&lambda_request_id, event, Trigger::Http);
        match tokio::time::timeout_at(deadline.into(), invocation).await {
            Err(_) => Err(Failure::Timeout),
            Ok(Err(_)) => Err(Failure::Function),
            Ok(Ok(value)) => Ok(value),
        }
    }
}

/// A message from a client.
pub(crate) enum Inbound {
    Text(String),
    Binary(Vec<u8>),
}

enum Failure {
    Timeout,
    Function,
}

/// The status of a `$connect` response: its `statusCode`, or 200 without one.
fn connect_status(value: &Value) -> Result<http::StatusCode, String> {
    match value.get("statusCode") {
        None | Some(Value::Null) => Ok(http::StatusCode::OK),
        Some(code) => code
            .as_u64()
            .and_then(|c| u16::try_from(c).ok())
            .and_then(|c| http::StatusCode::from_u16(c).ok())
            .ok_or_else(|| format!("statusCode is not an HTTP status: {code}")),
    }
}

/// The frame a route response sends back: its `body`, when it has a non-empty one.
fn route_response(value: Value) -> Option<String> {
    match value {
        Value::Object(mut object) => match object.remove("body") {
            Some(Value::String(body)) if !body.is_empty() => Some(body),
            Some(Value::Null) | None => None,
            Some(Value::String(_)) => None,
            Some(other) => Some(other.to_string()),
        },
        _ => None,
    }
}

/// A frame API Gateway writes itself: `{"message", "connectionId", "requestId"}`.
fn gateway_frame(message: &str, connection_id: &str, request_id: &str) -> String {
    json!({ "message": message, "connectionId": connection_id, "requestId": request_id })
        .to_string()
}

fn status_response(status: http::StatusCode, body: String) -> axum::response::Response {
    let mut response = axum::response::Response::new(axum::body::Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn internal_error() -> axum::response::Response {
    status_response(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        json!({ "message": "Internal server error" }).to_string(),
    )
}

/// An API Gateway request id: 11 random bytes in base64.
fn api_request_id() -> String {
    BASE64.encode(&uuid::Uuid::new_v4().as_bytes()[..11])
}

/// A connection id as API Gateway makes them (`L0SM9cOFvHcCIhw=`), without `+` or `/`.
fn connection_id() -> String {
    loop {
        let id = api_request_id();
        if !id.contains(['+', '/']) {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_look_like_api_gateways() {
        for _ in 0..100 {
            let id = connection_id();
            assert_eq!(id.len(), 16, "{id}");
            assert!(id.ends_with('='), "{id}");
            assert!(!id.contains(['+', '/']), "{id}");
        }
    }

    #[test]
    fn route_responses_send_their_body() {
        assert_eq!(
            route_response(json!({ "statusCode": 200, "body": "{\"ok\":true}" })),
            Some("{\"ok\":true}".to_owned())
        );
        assert_eq!(route_response(json!({ "statusCode": 200 })), None);
        assert_eq!(
            route_response(json!({ "statusCode": 200, "body": "" })),
            None
        );
        assert_eq!(route_response(Value::Null), None);
    }

    #[test]
    fn connect_responses_decide_by_status() {
        assert_eq!(
            connect_status(&json!({ "statusCode": 403 })),
            Ok(http::StatusCode::FORBIDDEN)
        );
        assert_eq!(connect_status(&Value::Null), Ok(http::StatusCode::OK));
        assert!(connect_status(&json!({ "statusCode": "x" })).is_err());
    }
}
