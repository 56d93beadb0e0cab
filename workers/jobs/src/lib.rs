//! The jobs service: owns the jobs table and the simulation-job state machine.
//!
//! Three Lambda handlers, each a library function listed with its dependencies in
//! [`service::FUNCTIONS`] (a `bootstrap` binary is one line):
//!
//! - [`app`] (`jobs-api`): the HTTP API. `POST /jobs` publishes `JobRequested` and
//!   records the job as QUEUED (refusing invalid params of a built-in model first, from
//!   `contracts::models`); `GET /jobs/{id}` and `GET /jobs?status=` read the table;
//!   `GET /jobs/{id}/result` redirects the owner to a short-lived presigned link of the
//!   result; `POST /jobs/{id}/cancel` stops the owner's job ([`cancel`]); `GET /models` is
//!   the catalog of built-in models.
//! - [`handle_job_requested`] (`jobs-requested`): every `JobRequested` on the bus, from
//!   the API or an upstream service, becomes one simulation-job execution named after
//!   the job id (none for a job cancelled before it started).
//! - [`handle_job_event`] (`jobs-view`): `JobStarted`, `JobProgress`, `JobSucceeded`,
//!   `JobFailed` and `JobCancelled` update the job's row, never moving it backwards.
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
mod cancel;
mod error;
pub mod executions;
mod requested;
pub mod service;
pub mod store;
mod view;

pub use api::{
    DEFAULT_PAGE_SIZE, IDEMPOTENCY_KEY, MAX_BODY_BYTES, MAX_NEXT_TOKEN_LEN, MAX_PAGE_SIZE,
    MAX_QUERY_BYTES, app,
};
pub use cancel::cancelled_event;
pub use error::{ApiError, HandlerError};
pub use executions::Executions;
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

/// The jobs table: what every function of the service reads or writes (`jobs-view`
/// needs nothing else).
#[derive(Debug, Clone)]
pub struct Jobs {
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// The table's physical name, `fleet-<stage>-jobs`.
    pub table: String,
}

impl Jobs {
    pub fn new(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Jobs {
        Jobs {
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            table: table.into(),
        }
    }

    /// The jobs table.
    pub fn store(&self) -> JobStore<'_> {
        JobStore::new(&self.dynamodb, &self.table)
    }
}

/// What `jobs-api` needs: the table, a publisher of `JobRequested` and `JobCancelled`, a
/// token verifier, the presigner of result links and the executions a cancel stops.
#[derive(Debug, Clone)]
pub struct ApiDeps {
    pub jobs: Jobs,
    pub publisher: Arc<dyn RequestPublisher>,
    pub verifier: Arc<auth::Verifier>,
    pub results: Results,
    pub executions: Executions,
}

impl ApiDeps {
    pub fn new(
        jobs: Jobs,
        publisher: impl RequestPublisher + 'static,
        verifier: impl Into<Arc<auth::Verifier>>,
        results: Results,
        executions: Executions,
    ) -> ApiDeps {
        ApiDeps {
            jobs,
            publisher: Arc::new(publisher),
            verifier: verifier.into(),
            results,
            executions,
        }
    }
}

/// How long a link of `GET /jobs/{id}/result` works: five minutes, long enough to start
/// a download, short enough that a link copied into a log or a chat is soon useless.
pub const RESULT_URL_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// Presigns `GetObject` of job results (the bucket and key come from the job's row, which
/// only the simulation worker's outcome writes). Presigning is local computation: no
/// call reaches S3 until the client follows the link, signed with this function's
/// credentials (its role on AWS), which must allow `s3:GetObject` on the results.
#[derive(Debug, Clone)]
pub struct Results {
    pub s3: aws_sdk_s3::Client,
    /// At most [`RESULT_URL_TTL`].
    pub url_ttl: std::time::Duration,
}

impl Results {
    /// Path-style addressing against a custom endpoint (the emulator, at 127.0.0.1, has
    /// no `<bucket>.127.0.0.1` host), virtual-hosted on AWS.
    pub fn new(sdk: &aws_config::SdkConfig) -> Results {
        let config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(sdk.endpoint_url().is_some())
            .build();
        Results {
            s3: aws_sdk_s3::Client::from_conf(config),
            url_ttl: RESULT_URL_TTL,
        }
    }
}

/// What `jobs-requested` needs: the table and the simulation-job state machine.
#[derive(Debug, Clone)]
pub struct RequestedDeps {
    pub jobs: Jobs,
    pub executions: Executions,
}

impl RequestedDeps {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        jobs: Jobs,
        state_machine_arn: impl Into<String>,
    ) -> RequestedDeps {
        RequestedDeps {
            jobs,
            executions: Executions::new(sdk, state_machine_arn),
        }
    }
}
