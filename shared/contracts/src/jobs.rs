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
/// The `detail-type` of [`JobRequested`].
pub const REQUESTED: &str = "JobRequested";
/// The `detail-type` of [`JobStarted`].
pub const STARTED: &str = "JobStarted";
/// The `detail-type` of [`JobProgress`].
pub const PROGRESS: &str = "JobProgress";
/// The `detail-type` of [`JobSucceeded`].
pub const SUCCEEDED: &str = "JobSucceeded";
/// The `detail-type` of [`JobFailed`].
pub const FAILED: &str = "JobFailed";
/// The `detail-type` of [`JobCancelled`].
pub const CANCELLED: &str = "JobCancelled";

/// The longest job id: a Step Functions execution name has at most 80 characters.
pub const MAX_JOB_ID_LEN: usize = 80;
/// The longest model name (`model`).
pub const MAX_MODEL_LEN: usize = 64;
/// The most bytes a job's `params` may take, serialized as compact JSON. A
/// `JobRequested` carrying them then stays well under EventBridge's 256 KB entry limit,
/// and a WebSocket frame carrying them under the gateway's 128 KB message limit, with
/// room for the envelope.
pub const MAX_PARAMS_BYTES: usize = 64 * 1024;
/// The longest `idempotencyKey` (the HTTP API's `Idempotency-Key` header): 1 to this many
/// printable ASCII characters (spaces included).
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// The longest `requestedBy` (a token's `sub`, or an upstream service's name). Together
/// with [`MAX_IDEMPOTENCY_KEY_LEN`] it keeps the jobs table's keys under DynamoDB's
/// 2048-byte partition-key limit, even escaped.
pub const MAX_REQUESTER_LEN: usize = 256;
/// How many characters of a refused value an error message quotes.
const QUOTED_LEN: usize = 64;

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
        if value.is_empty() || value.len() > MAX_JOB_ID_LEN || !valid_chars {
            return Err(format!(
                "`{}` is not a valid job id: use 1 to {MAX_JOB_ID_LEN} characters of A-Z, a-z, 0-9, `-` and `_`",
                quote(&value)
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
    /// Which hand-out of the job this is: 0 for the first, one more each time Step
    /// Functions hands the job out again (its worker died or failed transiently). Absent
    /// in events of older producers, which means 0.
    #[serde(default)]
    pub handout: u32,
    /// Which delivery of the hand-out's queue message this is: 1 for the first. A
    /// hand-out's message can be delivered again (its worker died, a visibility race), so
    /// one start of a job is `(handout, attempt)`.
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

/// The job was cancelled by its owner: its execution is stopped, and a job still queued
/// never runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobCancelled {
    pub job_id: JobId,
    /// The subject that cancelled it (its owner).
    pub cancelled_by: String,
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
    Cancelled(JobCancelled),
}

impl JobEvent {
    /// Every job detail-type, in lifecycle order.
    pub const DETAIL_TYPES: [&'static str; 6] =
        [REQUESTED, STARTED, PROGRESS, SUCCEEDED, FAILED, CANCELLED];

    /// The detail-types after `JobRequested`: what the job view and the notifier follow.
    pub const AFTER_REQUEST: [&'static str; 5] = [STARTED, PROGRESS, SUCCEEDED, FAILED, CANCELLED];

    /// The job's id (a `JobRequested` may not have one yet).
    pub fn job_id(&self) -> Option<&JobId> {
        match self {
            JobEvent::Requested(e) => e.job_id.as_ref(),
            JobEvent::Started(e) => Some(&e.job_id),
            JobEvent::Progress(e) => Some(&e.job_id),
            JobEvent::Succeeded(e) => Some(&e.job_id),
            JobEvent::Failed(e) => Some(&e.job_id),
            JobEvent::Cancelled(e) => Some(&e.job_id),
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
            REQUESTED => {
                let e: JobRequested = from_value(&what, &payload)?;
                e.validate(&what)?;
                JobEvent::Requested(e)
            }
            STARTED => JobEvent::Started(from_value(&what, &payload)?),
            PROGRESS => {
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
            SUCCEEDED => JobEvent::Succeeded(from_value(&what, &payload)?),
            FAILED => JobEvent::Failed(from_value(&what, &payload)?),
            CANCELLED => JobEvent::Cancelled(from_value(&what, &payload)?),
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

impl JobRequested {
    /// Checks the fields' values and sizes: the model's name, the params' size, the key's
    /// and the requester's lengths. `what` names the message in errors.
    pub fn validate(&self, what: &str) -> Result<(), ContractError> {
        validate_model(what, &self.model)?;
        let size = params_bytes(&self.params);
        if size > MAX_PARAMS_BYTES {
            return Err(ContractError::invalid(
                what,
                "params",
                format!(
                    "is {size} bytes as JSON, more than the limit of {MAX_PARAMS_BYTES} (MAX_PARAMS_BYTES): store large inputs elsewhere and pass their location"
                ),
            ));
        }
        if let Some(key) = &self.idempotency_key {
            check_idempotency_key(key)
                .map_err(|message| ContractError::invalid(what, "idempotencyKey", message))?;
        }
        if let Some(requester) = &self.requested_by
            && requester.len() > MAX_REQUESTER_LEN
        {
            return Err(ContractError::invalid(
                what,
                "requestedBy",
                format!(
                    "is {} bytes, more than the limit of {MAX_REQUESTER_LEN}",
                    requester.len()
                ),
            ));
        }
        Ok(())
    }
}

/// The size of `params` serialized as compact JSON, the size [`MAX_PARAMS_BYTES`] bounds.
pub fn params_bytes(params: &Map<String, Value>) -> usize {
    /// Counts what is written instead of keeping it.
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a `Map` of `Value`s into a writer that never fails cannot fail; if it did,
    // counting it as too large refuses it rather than letting it through.
    match serde_json::to_writer(&mut counter, params) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

/// Why `key` is not an idempotency key, if it is not: 1 to [`MAX_IDEMPOTENCY_KEY_LEN`]
/// printable ASCII characters, spaces included.
pub fn check_idempotency_key(key: &str) -> Result<(), String> {
    let printable = key.chars().all(|c| c.is_ascii_graphic() || c == ' ');
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN || !printable {
        return Err(format!(
            "use 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters (MAX_IDEMPOTENCY_KEY_LEN), got {} bytes",
            key.len()
        ));
    }
    Ok(())
}

/// At most [`QUOTED_LEN`] characters of `value`, for an error message: a refused value
/// may be megabytes long.
fn quote(value: &str) -> String {
    match value.char_indices().nth(QUOTED_LEN) {
        Some((end, _)) => format!("{}...", &value[..end]),
        None => value.to_string(),
    }
}

fn validate_model(what: &str, model: &str) -> Result<(), ContractError> {
    let ok = !model.is_empty()
        && model.len() <= MAX_MODEL_LEN
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
                "`{}` is not a model name: use 1 to {MAX_MODEL_LEN} characters of a-z, 0-9, `-` and `_` (e.g. `sir`)",
                quote(model)
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
            JobEvent::Requested(_) => REQUESTED,
            JobEvent::Started(_) => STARTED,
            JobEvent::Progress(_) => PROGRESS,
            JobEvent::Succeeded(_) => SUCCEEDED,
            JobEvent::Failed(_) => FAILED,
            JobEvent::Cancelled(_) => CANCELLED,
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
job_event!(JobCancelled, Cancelled);

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
    Cancelled,
}

impl JobStatus {
    /// Whether the job can no longer change.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "QUEUED",
            JobStatus::Running => "RUNNING",
            JobStatus::Succeeded => "SUCCEEDED",
            JobStatus::Failed => "FAILED",
            JobStatus::Cancelled => "CANCELLED",
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
            "CANCELLED" => Ok(JobStatus::Cancelled),
            _ => Err(ContractError::invalid(
                "job status",
                "status",
                format!(
                    "`{}` is not a status: use QUEUED, RUNNING, SUCCEEDED, FAILED or CANCELLED",
                    quote(s)
                ),
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
    #[serde(with = "crate::timestamp::bounded")]
    #[schemars(with = "String")]
    pub created_at: OffsetDateTime,
    #[serde(with = "crate::timestamp::bounded")]
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

#[cfg(test)]
mod tests {
    // Tests may panic on what they did not expect: that is how they fail.
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn received() -> Received<'static> {
        Received {
            id: "evt-1",
            source: "acme.upstream",
            time: None,
        }
    }

    /// Any JSON value, a few levels deep (integers only: every one round-trips exactly).
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".{0,8}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn any_params() -> impl Strategy<Value = Map<String, Value>> {
        prop::collection::btree_map("[a-zA-Z]{1,8}", any_json(), 0..6)
            .prop_map(|m| m.into_iter().collect())
    }

    fn any_job_id() -> impl Strategy<Value = JobId> {
        "[A-Za-z0-9_-]{1,80}".prop_map(|id| JobId::parse(&id).unwrap())
    }

    /// A detail whose fields are the job events' own names with values of any type, so
    /// that decoding gets past the first field more often than with random names.
    fn any_detail() -> impl Strategy<Value = Value> {
        let field = prop_oneof![
            Just("model"),
            Just("params"),
            Just("jobId"),
            Just("idempotencyKey"),
            Just("requestedBy"),
            Just("worker"),
            Just("handout"),
            Just("attempt"),
            Just("progress"),
            Just("message"),
            Just("summary"),
            Just("result"),
            Just("error"),
            Just("cause"),
            Just("meta"),
        ];
        prop::collection::vec((field, any_json()), 0..8)
            .prop_map(|fields| {
                Value::Object(
                    fields
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                )
            })
            .boxed()
    }

    fn any_event() -> impl Strategy<Value = JobEvent> {
        prop_oneof![
            (
                "[a-z0-9_-]{1,64}",
                any_params(),
                prop::option::of(any_job_id()),
                prop::option::of("[ -~]{1,255}"),
                prop::option::of(".{0,40}"),
            )
                .prop_map(|(model, params, job_id, key, by)| {
                    JobEvent::Requested(JobRequested {
                        model,
                        params,
                        job_id,
                        idempotency_key: key,
                        requested_by: by,
                    })
                }),
            (any_job_id(), ".{0,20}", any::<u32>(), any::<u32>()).prop_map(
                |(job_id, worker, handout, attempt)| {
                    JobEvent::Started(JobStarted {
                        job_id,
                        worker,
                        handout,
                        attempt,
                    })
                }
            ),
            // Short fractions, as producers send them: serde_json reads a long decimal
            // back within one ULP, not always exactly.
            (
                any_job_id(),
                (0u32..=10_000).prop_map(|n| f64::from(n) / 10_000.0),
                prop::option::of(".{0,20}")
            )
                .prop_map(|(job_id, progress, message)| {
                    JobEvent::Progress(JobProgress {
                        job_id,
                        progress,
                        message,
                    })
                }),
            (any_job_id(), any_json(), ".{0,20}", ".{0,20}", any::<u64>()).prop_map(
                |(job_id, summary, bucket, key, bytes)| {
                    JobEvent::Succeeded(JobSucceeded {
                        job_id,
                        summary,
                        result: ResultLocation { bucket, key, bytes },
                    })
                }
            ),
            (any_job_id(), ".{0,20}", ".{0,40}").prop_map(|(job_id, error, cause)| {
                JobEvent::Failed(JobFailed {
                    job_id,
                    error,
                    cause,
                })
            }),
        ]
    }

    fn any_detail_type() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(JobEvent::DETAIL_TYPES.to_vec()).prop_map(String::from),
            ".{0,16}",
        ]
    }

    proptest! {
        #[test]
        fn no_detail_panics_the_decoder(detail_type in any_detail_type(), detail in any_detail()) {
            let _ = JobEvent::decode(&detail_type, &detail, &received());
        }

        #[test]
        fn no_json_value_panics_the_decoder(detail_type in any_detail_type(), detail in any_json()) {
            let _ = JobEvent::decode(&detail_type, &detail, &received());
        }

        #[test]
        fn no_occurred_at_panics_the_decoder(
            occurred_at in prop_oneof![
                ".{0,40}",
                "[0-9]{4,6}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})",
            ],
        ) {
            let detail = json!({
                "jobId": "j1", "worker": "w", "attempt": 1,
                "meta": {"eventId": "e", "schemaVersion": 1, "occurredAt": occurred_at,
                         "producer": "p", "correlationId": "j1"},
            });
            let _ = JobEvent::decode("JobStarted", &detail, &received());
        }

        #[test]
        fn valid_events_round_trip(event in any_event()) {
            let envelope = Envelope::new(event, "test");
            let detail = envelope.detail();
            let decoded = JobEvent::decode(envelope.event.detail_type(), &detail, &received());
            prop_assert_eq!(decoded, Ok(envelope.clone()));
            // Through text too, as the bus carries it.
            let text: Value = serde_json::from_str(&envelope.to_entry().detail).unwrap();
            let decoded = JobEvent::decode(envelope.event.detail_type(), &text, &received());
            prop_assert_eq!(decoded, Ok(envelope));
        }

        #[test]
        fn params_bytes_is_the_compact_json_size(params in any_params()) {
            prop_assert_eq!(params_bytes(&params), Value::Object(params.clone()).to_string().len());
        }
    }

    #[test]
    fn params_over_the_limit_are_refused_naming_the_field_and_the_limit() {
        // `{"x":"…"}`: 8 bytes of JSON around the string.
        let at_limit = json!({"x": "a".repeat(MAX_PARAMS_BYTES - 8)});
        let detail = json!({"model": "sir", "params": at_limit});
        assert!(JobEvent::decode("JobRequested", &detail, &received()).is_ok());

        let over = json!({"x": "a".repeat(MAX_PARAMS_BYTES - 7)});
        let detail = json!({"model": "sir", "params": over});
        let err = JobEvent::decode("JobRequested", &detail, &received()).unwrap_err();
        assert_eq!(err.field(), "params", "{err}");
        assert!(
            err.to_string().contains(&MAX_PARAMS_BYTES.to_string()),
            "{err}"
        );
    }

    #[test]
    fn overlong_keys_and_requesters_are_refused_naming_the_field() {
        for (field, value) in [
            ("idempotencyKey", "k".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1)),
            ("idempotencyKey", String::new()),
            ("idempotencyKey", "tab\there".to_string()),
            ("requestedBy", "r".repeat(MAX_REQUESTER_LEN + 1)),
        ] {
            let detail = json!({"model": "sir", "params": {}, field: value});
            let err = JobEvent::decode("JobRequested", &detail, &received()).unwrap_err();
            assert_eq!(err.field(), field, "{err}");
        }
    }

    #[test]
    fn a_refused_value_is_quoted_only_in_part() {
        let long = "X".repeat(100_000);
        let err = JobId::parse(&long).unwrap_err();
        assert!(err.to_string().len() < 400, "{err}");
        let err = long.parse::<JobStatus>().unwrap_err();
        assert!(err.to_string().len() < 400, "{err}");
    }
}
