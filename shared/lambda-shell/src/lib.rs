//! One shell for every Lambda function.
//!
//! A service lists its functions in its `service.rs` as [`Function`]s: the topology's name
//! and how to build the handler from a [`Context`] (the SDK configuration, the variables
//! the topology gives the function, and what the local host provides instead of a
//! network dependency). The same list is run in two places:
//!
//! - on AWS, a function's `bootstrap` binary is one line, [`main`]`(&SERVICE_FUNCTION)`,
//!   which reads the process environment and hands the handler to `lambda_runtime`
//!   (or `lambda_http` for an HTTP API);
//! - locally, the host builds every listed function from the environment the topology
//!   resolves against the emulator's deployment.
//!
//! Dependencies are typed per function: a build fails at start, naming the variable, when
//! one is missing, so no handler meets a missing dependency at run time.

mod context;
mod handler;

pub use context::{Context, ShellError};
pub use handler::{EventHandler, Handler};

use tracing_subscriber::EnvFilter;

/// A Lambda function of a service: its name in the topology and how it is built.
#[derive(Clone, Copy)]
pub struct Function {
    /// The topology's logical name, e.g. `jobs-api`.
    pub name: &'static str,
    /// Builds the handler with the dependencies it needs; fails when one is missing.
    pub build: fn(&Context) -> Result<Handler, ShellError>,
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function")
            .field("name", &self.name)
            .finish()
    }
}

/// Boxed errors, as `lambda_runtime::run` and `lambda_http::run` return them.
pub type Error = lambda_runtime::Error;

/// The whole `main` of a function's `bootstrap`: JSON logs, the process environment, the
/// handler built from it, then the Lambda runtime loop.
pub fn main(function: &Function) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(function))
}

/// [`main`] on a runtime the caller owns.
pub async fn run(function: &Function) -> Result<(), Error> {
    init_tracing();
    let context = Context::from_process().await;
    let handler = (function.build)(&context).map_err(|e| {
        tracing::error!(function = function.name, error = %e, "the function cannot start");
        e
    })?;
    tracing::info!(
        function = function.name,
        stage = context
            .optional(topology::env::STAGE)
            .as_deref()
            .unwrap_or(""),
        "starting"
    );
    match handler {
        Handler::Events(events) => lambda_runtime::run(events.service()).await,
        Handler::Http(router) => lambda_http::run(router).await,
    }
}

/// JSON logs on stdout (what CloudWatch Logs ingests), filtered by `RUST_LOG`
/// (default `info`).
pub fn init_tracing() {
    // A second call (tests, a host running several functions) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_current_span(false)
        .try_init();
}
