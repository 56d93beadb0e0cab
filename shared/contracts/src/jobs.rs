//! The job events (source `fleet.jobs`) and what the jobs HTTP API answers.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::envelope::{self, Envelope, Event, Received};
use crate::error::{ContractError, from_value};

/// The bus `source` of every job event.
pub const SOURCE: &str = "fleet.jobs";

/// A job's id: also its Step Functions execution name, so 1–80 characters of
/// `A-Z a-z 0-9 - _`.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schemars(with = "String")]
pub struct JobId(String);

impl JobId {
    /// A new, time-ordered id.
    pub fn generate() -> JobId {
        JobId(uuid::Uuid::now_v7().to_string())
    }

    pub fn parse(value: &str) -> Result<JobId, ContractError> {
        JobId::try_from(value.to_string())
            .map_err(|message| ContractError::invalid("job id", "jobId", message))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JobId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let valid_chars = value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if value.is_empty() || value.len() > 80 || !valid_chars {
            return Err(format!(
                "`{value}` is not a valid job id: use 1 to 80 characters of A-Z, a-z, 0-9, `-` and `_`"
            ));
        }
        Ok(JobId(value))
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> String {
        id.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Someone asks for a simulation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRequested {
    /// The model's name, e.g. `sir`.
    pub model: String,
    /// The model's parameters.
    pub params: Map<String, Value>,
    /// Assigned by the jobs service when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<JobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The subject of whoever asked; jobs belong to their requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

/// A worker took the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobStarted {
    pub job_id: JobId,
    /// Which worker runs it.
    pub worker: String,
    /// 1 for the first delivery.
    pub attempt: u32,
}

/// How far a running job has come.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobProgress {
    pub job_id: JobId,
    /// A fraction from 0.0 to 1.0.
    pub progress: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where a full result lives: Step Functions payloads stop at 256 KB, so results are
/// stored in S3 and only their location travels (the claim-check pattern).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResultLocation {
    pub bucket: String,
    pub key: String,
    pub bytes: u64,
}

impl ResultLocation {
    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// The job finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobSucceeded {
    pub job_id: JobId,
    /// A small summary of the result (a few KB at most).
    pub summary: Value,
    pub result: ResultLocation,
}

/// The job failed for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobFailed {
    pub job_id: JobId,
    /// A stable error name, e.g. `Model.Failed` or `States.HeartbeatTimeout`.
    pub error: String,
    pub cause: String,
}

/// Any job event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum JobEvent {
    Requested(JobRequested),
    Started(JobStarted),
    Progress(JobProgress),
    Succeeded(JobSucceeded),
    Failed(JobFailed),
}

impl JobEvent {
    /// Every job detail-type, in lifecycle order.
    pub const DETAIL_TYPES: [&'static str; 5] = [
        "JobRequested",
        "JobStarted",
        "JobProgress",
        "JobSucceeded",
        "JobFailed",
    ];

    /// The job's id (a `JobRequested` may not have one yet).
    pub fn job_id(&self) -> Option<&JobId> {
        match self {
            JobEvent::Requested(e) => e.job_id.as_ref(),
            JobEvent::Started(e) => Some(&e.job_id),
            JobEvent::Progress(e) => Some(&e.job_id),
            JobEvent::Succeeded(e) => Some(&e.job_id),
            JobEvent::Failed(e) => Some(&e.job_id),
        }
    }

    /// Decodes a job event from its detail-type and detail, checking schema version and
    /// field values. `received` is EventBridge's envelope, used when `meta` is absent.
    pub fn decode(
        detail_type: &str,
        detail: &Value,
        received: &Received<'_>,
    ) -> Result<Envelope<JobEvent>, ContractError> {
        let what = format!("`{detail_type}` detail");
        let (meta, payload) = envelope::split_detail(&what, detail)?;
        let event = match detail_type {
            "JobRequested" => {
                let e: JobRequested = from_value(&what, &payload)?;
                validate_model(&what, &e.model)?;
                JobEvent::Requested(e)
            }
            "JobStarted" => JobEvent::Started(from_value(&what, &payload)?),
            "JobProgress" => {
                let e: JobProgress = from_value(&what, &payload)?;
                if !(0.0..=1.0).contains(&e.progress) {
                    return Err(ContractError::invalid(
                        &what,
                        "progress",
                        format!("must be a fraction from 0.0 to 1.0, got {}", e.progress),
                    ));
                }
                JobEvent::Progress(e)
            }
            "JobSucceeded" => JobEvent::Succeeded(from_value(&what, &payload)?),
            "JobFailed" => JobEvent::Failed(from_value(&what, &payload)?),
            other => {
                return Err(ContractError::UnknownDetailType {
                    source_name: SOURCE.to_string(),
                    detail_type: other.to_string(),
                    known: JobEvent::DETAIL_TYPES.join(", "),
                });
            }
        };
        let meta = meta.unwrap_or_else(|| {
            envelope::derived_meta(received, event.job_id().map(ToString::to_string))
        });
        Ok(Envelope { meta, event })
    }
}

fn validate_model(what: &str, model: &str) -> Result<(), ContractError> {
    let ok = !model.is_empty()
        && model.len() <= 64
        && model
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ContractError::invalid(
            what,
            "model",
            format!(
                "`{model}` is not a model name: use 1 to 64 characters of a-z, 0-9, `-` and `_` (e.g. `sir`)"
            ),
        ))
    }
}

impl Event for JobEvent {
    fn source(&self) -> &'static str {
        SOURCE
    }
    fn detail_type(&self) -> &'static str {
        match self {
            JobEvent::Requested(_) => "JobRequested",
            JobEvent::Started(_) => "JobStarted",
            JobEvent::Progress(_) => "JobProgress",
            JobEvent::Succeeded(_) => "JobSucceeded",
            JobEvent::Failed(_) => "JobFailed",
        }
    }
    fn correlation_id(&self) -> Option<String> {
        self.job_id().map(ToString::to_string)
    }
}

macro_rules! job_event {
    ($ty:ident, $variant:ident) => {
        impl From<$ty> for JobEvent {
            fn from(e: $ty) -> JobEvent {
                JobEvent::$variant(e)
            }
        }
    };
}
job_event!(JobRequested, Requested);
job_event!(JobStarted, Started);
job_event!(JobProgress, Progress);
job_event!(JobSucceeded, Succeeded);
job_event!(JobFailed, Failed);

/// Where a job stands, as the HTTP API reports it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobStatus {
    /// Whether the job can no longer change.
    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "QUEUED",
            JobStatus::Running => "RUNNING",
            JobStatus::Succeeded => "SUCCEEDED",
            JobStatus::Failed => "FAILED",
        }
    }
}

impl std::str::FromStr for JobStatus {
    type Err = ContractError;
    fn from_str(s: &str) -> Result<Self, ContractError> {
        match s.to_ascii_uppercase().as_str() {
            "QUEUED" => Ok(JobStatus::Queued),
            "RUNNING" => Ok(JobStatus::Running),
            "SUCCEEDED" => Ok(JobStatus::Succeeded),
            "FAILED" => Ok(JobStatus::Failed),
            _ => Err(ContractError::invalid(
                "job status",
                "status",
                format!("`{s}` is not a status: use QUEUED, RUNNING, SUCCEEDED or FAILED"),
            )),
        }
    }
}

/// A job as `GET /jobs/{id}` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub job_id: JobId,
    pub status: JobStatus,
    pub model: String,
    /// A fraction from 0.0 to 1.0.
    pub progress: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<JobResultView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobErrorView>,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub updated_at: OffsetDateTime,
}

/// The `202` answer of `POST /jobs` (its `Location` header is `/jobs/{jobId}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobAccepted {
    pub job_id: JobId,
}

/// One page of `GET /jobs`, newest first. `next_token`, when present, asks for the next
/// page (`?nextToken=`); its absence means this is the last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobPage {
    pub jobs: Vec<JobView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobResultView {
    pub summary: Value,
    pub location: ResultLocation,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobErrorView {
    pub error: String,
    pub cause: String,
}
