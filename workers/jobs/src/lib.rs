//! The jobs service: owns the jobs table and the simulation-job state machine.
//!
//! Three Lambda handlers, each a library function driven by a thin binary in `src/bin/`:
//!
//! - [`app`] (`jobs-api`): the HTTP API. `POST /jobs` publishes `JobRequested` and
//!   records the job as QUEUED; `GET /jobs/{id}` and `GET /jobs?status=` read the table.
//! - [`handle_job_requested`] (`jobs-requested`): every `JobRequested` on the bus, from
//!   the API or an upstream service, becomes one simulation-job execution named after
//!   the job id.
//! - [`handle_job_event`] (`jobs-view`): `JobStarted`, `JobProgress`, `JobSucceeded` and
//!   `JobFailed` update the job's row, never moving it backwards.
//!
//! The state machine (`statemachines/simulation-job.asl.json`) hands the job to a worker
//! and publishes the outcome; it does not touch the table, so the row has one writer
//! per transition and the ordering rules live in one place ([`store`]).

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use contracts::{Envelope, JobEvent};

mod api;
mod error;
mod requested;
pub mod service;
pub mod store;
mod view;

pub use api::{
    DEFAULT_PAGE_SIZE, IDEMPOTENCY_KEY, MAX_BODY_BYTES, MAX_NEXT_TOKEN_LEN, MAX_PAGE_SIZE,
    MAX_QUERY_BYTES, app,
};
pub use error::{ApiError, HandlerError};
pub use requested::{Started, handle_job_requested, job_id_for_event};
pub use store::{CLAIM_LEASE, JobStore};
pub use view::{ViewOutcome, handle_job_event};

/// The producer name on events this service publishes.
pub const PRODUCER: &str = "jobs";

/// The port through which the HTTP API publishes `JobRequested`: a [`bus::Publisher`] in
/// production; tests put a twin in front of one to make a publish fail at a chosen moment.
pub trait RequestPublisher: Send + Sync + Debug {
    /// Publishes one event; returns its EventBridge event id.
    fn publish<'a>(
        &'a self,
        envelope: &'a Envelope<JobEvent>,
    ) -> Pin<Box<dyn Future<Output = Result<String, bus::PublishError>> + Send + 'a>>;
}

impl<S: bus::EventSink + Debug> RequestPublisher for bus::Publisher<S> {
    fn publish<'a>(
        &'a self,
        envelope: &'a Envelope<JobEvent>,
    ) -> Pin<Box<dyn Future<Output = Result<String, bus::PublishError>> + Send + 'a>> {
        Box::pin(bus::Publisher::publish(self, envelope))
    }
}

/// Everything a handler needs, built once per process by the binaries.
///
/// The publisher, verifier and state machine are optional because each function needs
/// only some of them (and gets only those permissions and environment variables); a
/// handler that needs a missing one answers with [`HandlerError::Misconfigured`] or a 500.
#[derive(Debug)]
pub struct Deps {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sfn: aws_sdk_sfn::Client,
    /// Publishes `JobRequested` (the HTTP API).
    pub publisher: Option<Arc<dyn RequestPublisher>>,
    /// Verifies bearer tokens (the HTTP API).
    pub verifier: Option<Arc<auth::Verifier>>,
    /// The jobs table's physical name, `fleet-<stage>-jobs`.
    pub table: String,
    /// The simulation-job state machine (the `JobRequested` handler).
    pub state_machine_arn: Option<String>,
}

impl Deps {
    /// Clients for `sdk` and the jobs table; add the rest with the `with_*` methods.
    pub fn new(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Deps {
        Deps {
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            sfn: aws_sdk_sfn::Client::new(sdk),
            publisher: None,
            verifier: None,
            table: table.into(),
            state_machine_arn: None,
        }
    }

    pub fn with_publisher(mut self, publisher: impl RequestPublisher + 'static) -> Deps {
        self.publisher = Some(Arc::new(publisher));
        self
    }

    pub fn with_verifier(mut self, verifier: auth::Verifier) -> Deps {
        self.verifier = Some(Arc::new(verifier));
        self
    }

    pub fn with_state_machine(mut self, arn: impl Into<String>) -> Deps {
        self.state_machine_arn = Some(arn.into());
        self
    }

    /// The jobs table.
    pub fn store(&self) -> JobStore<'_> {
        JobStore::new(&self.dynamodb, &self.table)
    }
}
