//! Why the host could not start or stopped abnormally.

use std::net::SocketAddr;

/// A startup or runtime failure of the host. Function failures are not among them: those
/// follow AWS's semantics (retries, dead letters, HTTP 500s) and are logged.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Invalid(#[from] topology::TopologyError),
    #[error(
        "no implementation is registered for these functions of the topology: {}",
        names.join(", ")
    )]
    MissingFunctions { names: Vec<String> },
    #[error(
        "implementations are registered for functions the topology does not define: {}",
        names.join(", ")
    )]
    UnknownFunctions { names: Vec<String> },
    #[error(
        "function {function} is registered as an HTTP service, but the topology makes it {kind}"
    )]
    NotHttp {
        function: String,
        kind: &'static str,
    },
    #[error(
        "{what} is missing from the deploy report; deploy the topology before starting the host"
    )]
    NotDeployed { what: String },
    #[error(
        "route {route} is served by both {first} and {second}; one local listener cannot serve both"
    )]
    RouteConflict {
        route: String,
        first: String,
        second: String,
    },
    #[error(
        "services {} each have a WebSocket API; one local host serves only one (at its WebSocket path)",
        services.join(" and ")
    )]
    WebSocketApis { services: Vec<String> },
    #[error("{resource}: {operation} failed: {detail}")]
    Sdk {
        resource: String,
        operation: &'static str,
        detail: String,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("a host task failed: {0}")]
    Task(String),
}

impl HostError {
    /// A failed SDK call, with the full error chain as detail.
    pub(crate) fn sdk<E>(
        resource: impl Into<String>,
        operation: &'static str,
    ) -> impl FnOnce(E) -> HostError
    where
        E: std::error::Error,
    {
        let resource = resource.into();
        move |e| HostError::Sdk {
            resource,
            operation,
            detail: aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
        }
    }
}
