//! The jobs table: one row per job, plus idempotency-key items.
//!
//! Layout (`fleet-<stage>-jobs`, partition key `jobId`):
//!
//! - A job row: `jobId`, `requestedBy`, `model`, `params` (JSON text), `status`,
//!   `statusRank` (QUEUED 0 < RUNNING 1 < SUCCEEDED|FAILED|CANCELLED 2), `progress`, `createdAt`,
//!   `updatedAt`, then as the job moves: `worker`, `handout`, `attempt`, `startedAt`, `summary`
//!   (JSON text), `resultBucket`/`resultKey`/`resultBytes`, `error`/`cause`, `finishedAt`.
//!   The `byRequester` index (`requestedBy`, `createdAt`) lists a caller's jobs.
//! - An idempotency item: `jobId = idem#<requester>#<escaped key>`, `target` (the job
//!   id the key maps to), `expiresAt` (epoch seconds, the table's TTL attribute),
//!   `claim` (`pending` while the request that claimed it has not published its
//!   `JobRequested` yet, `committed` after; an item without one is committed) and
//!   `leaseUntil` (epoch seconds: a pending claim older than that was abandoned by a
//!   request that crashed, and may be taken over). It has no `requestedBy`, so the index
//!   never lists it; job ids cannot contain `#`, so it never collides with a job.
//!
//! A pending claim is not an answer: a retry that finds one is told to retry later
//! ([`Claim::InProgress`]), because the request holding it may still fail and roll it
//! back. Only a committed claim sends a retry to the job ([`Claim::Taken`]).
//!
//! Timestamps are RFC 3339 UTC with exactly six fractional digits, so that their text
//! order is their time order (the index sorts on it).
//!
//! Every transition is a conditional update: a late or duplicated event finds the
//! condition false and changes nothing (see [`JobStore::apply`]).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use contracts::jobs::{JobErrorView, JobResultView, JobStatus, JobView, ResultLocation};
use contracts::{Envelope, JobEvent, JobId};
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// The index listing a requester's jobs, newest first.
pub const BY_REQUESTER: &str = "byRequester";
/// How long an idempotency key keeps pointing at its job.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a pending idempotency claim holds off other requests with its key before it
/// counts as abandoned: twice the API function's 30 s timeout, so that a request still
/// running never loses its claim.
pub const CLAIM_LEASE: Duration = Duration::from_secs(60);
/// How many times [`JobStore::claim_key`] tries when the claim it found vanishes under it
/// (released or taken over in between), before answering [`Claim::InProgress`].
const CLAIM_ATTEMPTS: usize = 3;

mod attr {
    pub const JOB_ID: &str = "jobId";
    pub const REQUESTED_BY: &str = "requestedBy";
    pub const MODEL: &str = "model";
    pub const PARAMS: &str = "params";
    pub const IDEMPOTENCY_KEY: &str = "idempotencyKey";
    pub const STATUS: &str = "status";
    pub const STATUS_RANK: &str = "statusRank";
    pub const PROGRESS: &str = "progress";
    pub const CREATED_AT: &str = "createdAt";
    pub const UPDATED_AT: &str = "updatedAt";
    pub const STARTED_AT: &str = "startedAt";
    pub const FINISHED_AT: &str = "finishedAt";
    pub const WORKER: &str = "worker";
    pub const HANDOUT: &str = "handout";
    pub const ATTEMPT: &str = "attempt";
    pub const SUMMARY: &str = "summary";
    pub const RESULT_BUCKET: &str = "resultBucket";
    pub const RESULT_KEY: &str = "resultKey";
    pub const RESULT_BYTES: &str = "resultBytes";
    pub const ERROR: &str = "error";
    pub const CAUSE: &str = "cause";
    pub const TARGET: &str = "target";
    pub const EXPIRES_AT: &str = "expiresAt";
    pub const CLAIM: &str = "claim";
    pub const LEASE_UNTIL: &str = "leaseUntil";
}

/// The values of an idempotency item's `claim`.
mod claim {
    pub const PENDING: &str = "pending";
    pub const COMMITTED: &str = "committed";
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DynamoDB {operation} on {table} failed: {message}")]
    Dynamo {
        operation: &'static str,
        table: String,
        message: String,
        /// Throttling, timeouts, 5xx: a later attempt can succeed. A refused request
        /// (validation, a missing table, access) is not.
        transient: bool,
    },
    /// A time that cannot be written as the table's timestamps (RFC 3339 UTC, a
    /// four-digit year): it came from input, so retrying cannot help.
    #[error("field `{field}`: {message}")]
    OutOfRange {
        field: &'static str,
        message: String,
    },
    /// A row that does not read back as a job: written by something else, or corrupted.
    #[error("job row {job_id} is unreadable: attribute `{attribute}` {problem}")]
    Corrupt {
        job_id: String,
        attribute: &'static str,
        problem: String,
    },
}

impl StoreError {
    /// Whether a later attempt of the same call can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Dynamo {
                transient: true,
                ..
            }
        )
    }
}

/// A new job, as the API or the `JobRequested` handler records it.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub job_id: JobId,
    pub requested_by: String,
    pub model: String,
    pub params: Map<String, Value>,
    pub idempotency_key: Option<String>,
    pub created_at: OffsetDateTime,
}

/// Whether [`JobStore::create`] wrote the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New,
    AlreadyThere,
}

/// What [`JobStore::claim_key`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key now maps to the job id offered.
    Claimed,
    /// The key already maps to this job, whose request was published.
    Taken(JobId),
    /// Another request holds the key and has not published its job yet: it may still
    /// fail and release the key, so nobody may be told its job id. Retry later.
    InProgress,
    /// The request that held the key died before it committed (its lease passed): the
    /// claim is now the caller's, with the dead request's job id, so the caller carries
    /// that request on (its job row may exist already) instead of leaving it orphaned.
    Resumed(JobId),
}

/// How a new claim starts: [`ClaimState::Pending`] when the claimer has yet to publish
/// (the HTTP API), [`ClaimState::Committed`] when the request is on the bus already (the
/// `JobRequested` handler).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimState {
    Pending,
    Committed,
}

/// What [`JobStore::apply`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Updated,
    /// The row is already at or past what the event says: a late, duplicated or
    /// out-of-order event.
    Stale,
    /// No row has this job id.
    UnknownJob,
}

/// A job row as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub job_id: JobId,
    pub requested_by: String,
    pub model: String,
    pub status: JobStatus,
    pub progress: f64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub worker: Option<String>,
    /// The start shown, `(handout, attempt)`: see [`contracts::jobs::JobStarted`].
    pub handout: Option<u32>,
    pub attempt: Option<u32>,
    pub result: Option<JobResultView>,
    pub error: Option<JobErrorView>,
}

impl JobRecord {
    /// The job as the HTTP API shows it.
    pub fn view(&self) -> JobView {
        JobView {
            job_id: self.job_id.clone(),
            status: self.status,
            model: self.model.clone(),
            progress: self.progress,
            result: self.result.clone(),
            error: self.error.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// Where a listing stopped: opaque to clients (`nextToken`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    created_at: String,
    job_id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let value = serde_json::json!({ "c": self.created_at, "j": self.job_id });
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    /// The cursor in `token`, if it is one this API could have returned: base64 of
    /// `{"c": <a table timestamp>, "j": <a job id>}`, at most `max_len` characters.
    pub fn decode(token: &str, max_len: usize) -> Option<Cursor> {
        if token.len() > max_len {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        let value: Value = serde_json::from_slice(&bytes).ok()?;
        let created_at = value.get("c")?.as_str()?;
        // Only a time as the table writes it can be a start key of the index.
        let parsed = PrimitiveDateTime::parse(created_at, TIMESTAMP_FORMAT).ok()?;
        if timestamp(parsed.assume_utc(), "nextToken").ok()? != created_at {
            return None;
        }
        Some(Cursor {
            created_at: created_at.to_string(),
            job_id: JobId::parse(value.get("j")?.as_str()?).ok()?.to_string(),
        })
    }
}

/// The jobs table through the SDK.
#[derive(Debug, Clone, Copy)]
pub struct JobStore<'a> {
    client: &'a Client,
    table: &'a str,
}

impl<'a> JobStore<'a> {
    pub fn new(client: &'a Client, table: &'a str) -> JobStore<'a> {
        JobStore { client, table }
    }

    /// Writes a QUEUED row unless one exists for the job id.
    pub async fn create(&self, job: &NewJob) -> Result<Created, StoreError> {
        let now = timestamp(job.created_at, "createdAt")?;
        let mut item = HashMap::from([
            (attr::JOB_ID.to_string(), s(job.job_id.as_str())),
            (attr::REQUESTED_BY.to_string(), s(&job.requested_by)),
            (attr::MODEL.to_string(), s(&job.model)),
            (
                attr::PARAMS.to_string(),
                s(&Value::Object(job.params.clone()).to_string()),
            ),
            (attr::STATUS.to_string(), s(JobStatus::Queued.as_str())),
            (attr::STATUS_RANK.to_string(), n(rank(JobStatus::Queued))),
            (attr::PROGRESS.to_string(), n(0)),
            (attr::CREATED_AT.to_string(), s(&now)),
            (attr::UPDATED_AT.to_string(), s(&now)),
        ]);
        if let Some(key) = &job.idempotency_key {
            item.insert(attr::IDEMPOTENCY_KEY.to_string(), s(key));
        }
        let result = self
            .client
            .put_item()
            .table_name(self.table)
            .set_item(Some(item))
            // The same write again is no collision: a call whose answer was lost (a
            // dropped connection, a timeout) is sent again by the SDK's retry, and finds
            // the row its first attempt wrote.
            .condition_expression(
                "attribute_not_exists(#id) OR (#by = :by AND #created = :created AND #status = :queued)",
            )
            .expression_attribute_names("#id", attr::JOB_ID)
            .expression_attribute_names("#by", attr::REQUESTED_BY)
            .expression_attribute_names("#created", attr::CREATED_AT)
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_values(":by", s(&job.requested_by))
            .expression_attribute_values(":created", s(&now))
            .expression_attribute_values(":queued", s(JobStatus::Queued.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Created::New),
            Err(e) if is_condition_failed(&e) => Ok(Created::AlreadyThere),
            Err(e) => Err(self.error("PutItem", &e)),
        }
    }

    /// Reads a job row (strongly consistent: an immediate GET after POST finds it).
    pub async fn get(&self, job_id: &JobId) -> Result<Option<JobRecord>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(self.table)
            .key(attr::JOB_ID, s(job_id.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", &e))?;
        output.item().map(record).transpose()
    }

    /// Deletes a job row: only for a job whose `JobRequested` could not be published.
    pub async fn delete(&self, job_id: &JobId) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(self.table)
            .key(attr::JOB_ID, s(job_id.as_str()))
            .send()
            .await
            .map_err(|e| self.error("DeleteItem", &e))?;
        Ok(())
    }

    /// Maps `requester`'s idempotency `key` to `job_id` in `state`, unless another
    /// request holds it: one that committed ([`Claim::Taken`], unless expired) or one
    /// still pending within its [`CLAIM_LEASE`] ([`Claim::InProgress`]).
    pub async fn claim_key(
        &self,
        requester: &str,
        key: &str,
        job_id: &JobId,
        state: ClaimState,
    ) -> Result<Claim, StoreError> {
        let id = idempotency_item_id(requester, key);
        for _ in 0..CLAIM_ATTEMPTS {
            let now = OffsetDateTime::now_utc().unix_timestamp();
            let expires = now.saturating_add(secs(IDEMPOTENCY_TTL));
            let lease = now.saturating_add(secs(CLAIM_LEASE));
            let claim_value = match state {
                ClaimState::Pending => claim::PENDING,
                ClaimState::Committed => claim::COMMITTED,
            };
            let result = self
                .client
                .put_item()
                .table_name(self.table)
                .item(attr::JOB_ID, s(&id))
                .item(attr::TARGET, s(job_id.as_str()))
                .item(attr::EXPIRES_AT, n(expires))
                .item(attr::CLAIM, s(claim_value))
                .item(attr::LEASE_UNTIL, n(lease))
                // TTL deletion lags by up to two days: an expired item is free to claim.
                // (A pending claim whose request is long gone is resumed below.)
                .condition_expression("attribute_not_exists(#id) OR #exp < :now")
                .expression_attribute_names("#id", attr::JOB_ID)
                .expression_attribute_names("#exp", attr::EXPIRES_AT)
                .expression_attribute_values(":now", n(now))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(Claim::Claimed),
                Err(e) if is_condition_failed(&e) => {}
                Err(e) => return Err(self.error("PutItem", &e)),
            }
            let output = self
                .client
                .get_item()
                .table_name(self.table)
                .key(attr::JOB_ID, s(&id))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| self.error("GetItem", &e))?;
            let Some(item) = output.item() else {
                // Released in between (a failed publish): try to claim it again.
                continue;
            };
            let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok());
            let number = |name: &str| {
                item.get(name)
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<i64>().ok())
            };
            let target = text(attr::TARGET).and_then(|t| JobId::parse(t).ok());
            let pending = text(attr::CLAIM).map(String::as_str) == Some(claim::PENDING);
            let expired = number(attr::EXPIRES_AT).is_some_and(|exp| exp < now);
            let abandoned = pending && number(attr::LEASE_UNTIL).is_none_or(|l| l < now);
            match target {
                // Expired between the write and the read: claim it again.
                _ if expired => continue,
                // Our own claim: this call's first attempt wrote it and its answer was
                // lost, so the SDK's retry found it (job ids are fresh per request).
                Some(target) if target == *job_id => return Ok(Claim::Claimed),
                Some(target) if abandoned => {
                    // Take the abandoned claim over with its own job id, unless someone
                    // else just did (or it was committed or released meanwhile).
                    let resumed = self
                        .client
                        .put_item()
                        .table_name(self.table)
                        .item(attr::JOB_ID, s(&id))
                        .item(attr::TARGET, s(target.as_str()))
                        .item(attr::EXPIRES_AT, n(expires))
                        .item(attr::CLAIM, s(claim_value))
                        .item(attr::LEASE_UNTIL, n(lease))
                        .condition_expression(
                            "#claim = :pending AND #target = :target AND (attribute_not_exists(#lease) OR #lease < :now)",
                        )
                        .expression_attribute_names("#claim", attr::CLAIM)
                        .expression_attribute_names("#target", attr::TARGET)
                        .expression_attribute_names("#lease", attr::LEASE_UNTIL)
                        .expression_attribute_values(":pending", s(claim::PENDING))
                        .expression_attribute_values(":target", s(target.as_str()))
                        .expression_attribute_values(":now", n(now))
                        .send()
                        .await;
                    match resumed {
                        Ok(_) => return Ok(Claim::Resumed(target)),
                        Err(e) if is_condition_failed(&e) => continue,
                        Err(e) => return Err(self.error("PutItem", &e)),
                    }
                }
                Some(_) if pending => return Ok(Claim::InProgress),
                Some(target) => return Ok(Claim::Taken(target)),
                None => {
                    return Err(StoreError::Corrupt {
                        job_id: id,
                        attribute: attr::TARGET,
                        problem: "is missing or not a job id".to_string(),
                    });
                }
            }
        }
        Ok(Claim::InProgress)
    }

    /// Marks `requester`'s claim of `key` for `job_id` committed: its `JobRequested` is
    /// on the bus, so retries may now be sent to the job. Does nothing if the key maps to
    /// another job or to none (a claim taken over, or already released).
    pub async fn commit_key(
        &self,
        requester: &str,
        key: &str,
        job_id: &JobId,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(self.table)
            .key(attr::JOB_ID, s(&idempotency_item_id(requester, key)))
            .update_expression("SET #claim = :committed REMOVE #lease")
            .condition_expression("#target = :job")
            .expression_attribute_names("#claim", attr::CLAIM)
            .expression_attribute_names("#lease", attr::LEASE_UNTIL)
            .expression_attribute_names("#target", attr::TARGET)
            .expression_attribute_values(":committed", s(claim::COMMITTED))
            .expression_attribute_values(":job", s(job_id.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Ok(()),
            Err(e) => Err(self.error("UpdateItem", &e)),
        }
    }

    /// Frees `requester`'s pending claim of `key` for `job_id`, whose job could not be
    /// requested, so that a retry can. A claim that maps to another job (taken over after
    /// its lease) or that is committed (the event got through after all) stays.
    pub async fn release_key(
        &self,
        requester: &str,
        key: &str,
        job_id: &JobId,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(self.table)
            .key(attr::JOB_ID, s(&idempotency_item_id(requester, key)))
            .condition_expression("#target = :job AND #claim = :pending")
            .expression_attribute_names("#target", attr::TARGET)
            .expression_attribute_names("#claim", attr::CLAIM)
            .expression_attribute_values(":job", s(job_id.as_str()))
            .expression_attribute_values(":pending", s(claim::PENDING))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Ok(()),
            Err(e) => Err(self.error("DeleteItem", &e)),
        }
    }

    /// `requester`'s jobs, newest first, optionally only those in `status`; at most
    /// `limit`, and a cursor when there may be more.
    pub async fn list(
        &self,
        requester: &str,
        status: Option<JobStatus>,
        limit: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<JobRecord>, Option<Cursor>), StoreError> {
        // A status filter applies after DynamoDB's page limit, so a page may hold fewer
        // matches than asked for: read a few pages before answering.
        const MAX_PAGES: usize = 5;
        let mut jobs = Vec::new();
        let mut start = after.map(|c| {
            HashMap::from([
                (attr::JOB_ID.to_string(), s(&c.job_id)),
                (attr::REQUESTED_BY.to_string(), s(requester)),
                (attr::CREATED_AT.to_string(), s(&c.created_at)),
            ])
        });
        for _ in 0..MAX_PAGES {
            let want = limit - jobs.len();
            let mut query = self
                .client
                .query()
                .table_name(self.table)
                .index_name(BY_REQUESTER)
                .key_condition_expression("#rb = :rb")
                .expression_attribute_names("#rb", attr::REQUESTED_BY)
                .expression_attribute_values(":rb", s(requester))
                .scan_index_forward(false)
                .limit(i32::try_from(want).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take());
            if let Some(status) = status {
                query = query
                    .filter_expression("#st = :st")
                    .expression_attribute_names("#st", attr::STATUS)
                    .expression_attribute_values(":st", s(status.as_str()));
            }
            let output = query.send().await.map_err(|e| self.error("Query", &e))?;
            for item in output.items() {
                jobs.push(record(item)?);
            }
            start = output.last_evaluated_key().cloned();
            if start.is_none() || jobs.len() >= limit {
                break;
            }
        }
        let next = start.and_then(|key| {
            Some(Cursor {
                created_at: key.get(attr::CREATED_AT)?.as_s().ok()?.clone(),
                job_id: key.get(attr::JOB_ID)?.as_s().ok()?.clone(),
            })
        });
        Ok((jobs, next))
    }

    /// Applies a job event to its row with a conditional update, so the row only moves
    /// forward: status by rank (QUEUED < RUNNING < SUCCEEDED|FAILED|CANCELLED, a final status is
    /// never overwritten), progress only up, the start `(handout, attempt)` only up.
    pub async fn apply(&self, envelope: &Envelope<JobEvent>) -> Result<Applied, StoreError> {
        // The event's time came from its producer: it may not be representable in UTC
        // (e.g. year 9999 with a negative offset), which is the event's fault, for good.
        let at = timestamp(envelope.meta.occurred_at, "meta.occurredAt")?;
        let now = timestamp(OffsetDateTime::now_utc(), "updatedAt")?;
        let mut u = Update::default();
        let job_id = match &envelope.event {
            JobEvent::Requested(_) => return Ok(Applied::Stale),
            JobEvent::Started(e) => {
                u.set(attr::STATUS, s(JobStatus::Running.as_str()));
                u.set(attr::STATUS_RANK, n(rank(JobStatus::Running)));
                u.set(attr::WORKER, s(&e.worker));
                u.set(attr::HANDOUT, n(e.handout));
                u.set(attr::ATTEMPT, n(e.attempt));
                u.set_if_absent(attr::STARTED_AT, s(&at));
                let rank_ok = u.cmp(attr::STATUS_RANK, "<=", n(rank(JobStatus::Running)));
                let attempt = u.name(attr::ATTEMPT);
                let attempt_value = u.value(n(e.attempt));
                let handout = u.name(attr::HANDOUT);
                let handout_value = u.value(n(e.handout));
                // Starts are ordered by (handout, attempt); a row written before hand-outs
                // were recorded shows hand-out 0.
                let (newer, same) = if e.handout == 0 {
                    (
                        format!("{handout} < {handout_value}"),
                        format!("(attribute_not_exists({handout}) OR {handout} = {handout_value})"),
                    )
                } else {
                    (
                        format!("(attribute_not_exists({handout}) OR {handout} < {handout_value})"),
                        format!("{handout} = {handout_value}"),
                    )
                };
                u.condition(format!(
                    "{rank_ok} AND (attribute_not_exists({attempt}) OR {newer} OR ({same} AND {attempt} <= {attempt_value}))"
                ));
                &e.job_id
            }
            JobEvent::Progress(e) => {
                u.set(attr::STATUS, s(JobStatus::Running.as_str()));
                u.set(attr::STATUS_RANK, n(rank(JobStatus::Running)));
                u.set(attr::PROGRESS, n(e.progress));
                u.set_if_absent(attr::STARTED_AT, s(&at));
                let rank_ok = u.cmp(attr::STATUS_RANK, "<=", n(rank(JobStatus::Running)));
                let progress = u.name(attr::PROGRESS);
                let value = u.value(n(e.progress));
                u.condition(format!(
                    "{rank_ok} AND (attribute_not_exists({progress}) OR {progress} < {value})"
                ));
                &e.job_id
            }
            JobEvent::Succeeded(e) => {
                u.set(attr::STATUS, s(JobStatus::Succeeded.as_str()));
                u.set(attr::STATUS_RANK, n(rank(JobStatus::Succeeded)));
                u.set(attr::PROGRESS, n(1));
                u.set(attr::SUMMARY, s(&e.summary.to_string()));
                u.set(attr::RESULT_BUCKET, s(&e.result.bucket));
                u.set(attr::RESULT_KEY, s(&e.result.key));
                u.set(attr::RESULT_BYTES, n(e.result.bytes));
                u.set(attr::FINISHED_AT, s(&at));
                let not_final = u.cmp(attr::STATUS_RANK, "<", n(rank(JobStatus::Succeeded)));
                u.condition(not_final);
                &e.job_id
            }
            JobEvent::Failed(e) => {
                u.set(attr::STATUS, s(JobStatus::Failed.as_str()));
                u.set(attr::STATUS_RANK, n(rank(JobStatus::Failed)));
                u.set(attr::ERROR, s(&e.error));
                u.set(attr::CAUSE, s(&e.cause));
                u.set(attr::FINISHED_AT, s(&at));
                let not_final = u.cmp(attr::STATUS_RANK, "<", n(rank(JobStatus::Failed)));
                u.condition(not_final);
                &e.job_id
            }
            JobEvent::Cancelled(e) => {
                u.set(attr::STATUS, s(JobStatus::Cancelled.as_str()));
                u.set(attr::STATUS_RANK, n(rank(JobStatus::Cancelled)));
                u.set(attr::ERROR, s(CANCELLED_ERROR));
                u.set(attr::CAUSE, s(&format!("cancelled by {}", e.cancelled_by)));
                u.set(attr::FINISHED_AT, s(&at));
                let not_final = u.cmp(attr::STATUS_RANK, "<", n(rank(JobStatus::Cancelled)));
                u.condition(not_final);
                &e.job_id
            }
        };
        u.set(attr::UPDATED_AT, s(&now));
        let exists = format!("attribute_exists({})", u.name(attr::JOB_ID));
        let condition = match u.condition.take() {
            Some(c) => format!("{exists} AND {c}"),
            None => exists,
        };
        let result = self
            .client
            .update_item()
            .table_name(self.table)
            .key(attr::JOB_ID, s(job_id.as_str()))
            .update_expression(format!("SET {}", u.sets.join(", ")))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(u.names))
            .set_expression_attribute_values(Some(u.values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Applied::Updated),
            Err(e) if is_condition_failed(&e) => match self.get(job_id).await? {
                Some(_) => Ok(Applied::Stale),
                None => Ok(Applied::UnknownJob),
            },
            Err(e) => Err(self.error("UpdateItem", &e)),
        }
    }

    fn error<E, R>(&self, operation: &'static str, e: &SdkError<E, R>) -> StoreError
    where
        E: std::error::Error + ProvideErrorMetadata + 'static,
        R: std::fmt::Debug,
    {
        StoreError::Dynamo {
            operation,
            table: self.table.to_string(),
            message: DisplayErrorContext(e).to_string(),
            transient: is_transient(e),
        }
    }
}

/// Builds an update expression with a placeholder for every name and value, so no
/// attribute ever clashes with DynamoDB's reserved words (`status`, `error`, ...).
#[derive(Default)]
struct Update {
    sets: Vec<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
    condition: Option<String>,
}

impl Update {
    fn name(&mut self, attribute: &str) -> String {
        let placeholder = format!("#{attribute}");
        self.names
            .insert(placeholder.clone(), attribute.to_string());
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    fn set(&mut self, attribute: &str, value: AttributeValue) {
        let name = self.name(attribute);
        let value = self.value(value);
        self.sets.push(format!("{name} = {value}"));
    }

    fn set_if_absent(&mut self, attribute: &str, value: AttributeValue) {
        let name = self.name(attribute);
        let value = self.value(value);
        self.sets
            .push(format!("{name} = if_not_exists({name}, {value})"));
    }

    fn cmp(&mut self, attribute: &str, op: &str, value: AttributeValue) -> String {
        let name = self.name(attribute);
        let value = self.value(value);
        format!("{name} {op} {value}")
    }

    fn condition(&mut self, condition: String) {
        self.condition = Some(condition);
    }
}

/// The id of the item mapping `requester`'s idempotency `key` to a job. `%` and `#` are
/// escaped in the key so that no two (requester, key) pairs share an id.
fn idempotency_item_id(requester: &str, key: &str) -> String {
    let escape = |text: &str| text.replace('%', "%25").replace('#', "%23");
    format!("idem#{}#{}", escape(requester), escape(key))
}

/// The error a cancelled job shows, and its stopped execution's (the cause names who
/// cancelled it).
pub const CANCELLED_ERROR: &str = "Job.Cancelled";

fn rank(status: JobStatus) -> u8 {
    match status {
        JobStatus::Queued => 0,
        JobStatus::Running => 1,
        JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled => 2,
    }
}

/// The table's timestamps: RFC 3339 UTC with a four-digit year and six fractional
/// digits, so that text order is time order.
const TIMESTAMP_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// `at` as the table writes times, or an error naming `field` when `at` has no such
/// text: its UTC instant is outside what `OffsetDateTime` holds (`to_offset` would panic),
/// or its year is not four digits (text order would no longer be time order).
pub(crate) fn timestamp(at: OffsetDateTime, field: &'static str) -> Result<String, StoreError> {
    let out_of_range = || StoreError::OutOfRange {
        field,
        message: format!(
            "{} is out of range: the jobs table holds times from year 0000 to 9999 in UTC",
            at.format(&Rfc3339).unwrap_or_else(|_| format!(
                "{} {} {}",
                at.date(),
                at.time(),
                at.offset()
            ))
        ),
    };
    let utc = at
        .checked_to_offset(time::UtcOffset::UTC)
        .ok_or_else(out_of_range)?;
    if !(0..=9999).contains(&utc.year()) {
        return Err(out_of_range());
    }
    utc.format(TIMESTAMP_FORMAT).map_err(|_| out_of_range())
}

/// Whole seconds of a duration, for epoch arithmetic.
fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_string())
}

fn n(number: impl ToString) -> AttributeValue {
    AttributeValue::N(number.to_string())
}

/// Whether a failed call may succeed if tried again: the service was unreachable, slow,
/// throttling or failing (5xx). A request the service refused (validation, a missing
/// table, access denied) fails the same way every time.
fn is_transient<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    const TRANSIENT_CODES: [&str; 7] = [
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "ThrottlingException",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
        "LimitExceededException",
    ];
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(_) => e.code().is_some_and(|code| TRANSIENT_CODES.contains(&code)),
        // Construction failures (a request the SDK could not build) and anything new.
        _ => false,
    }
}

fn is_condition_failed<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error()
        .is_some_and(|e| e.code() == Some("ConditionalCheckFailedException"))
}

fn record(item: &HashMap<String, AttributeValue>) -> Result<JobRecord, StoreError> {
    let id_text = item
        .get(attr::JOB_ID)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default();
    let corrupt = |attribute: &'static str, problem: &str| StoreError::Corrupt {
        job_id: id_text.clone(),
        attribute,
        problem: problem.to_string(),
    };
    let text = |attribute: &'static str| -> Option<String> {
        item.get(attribute).and_then(|v| v.as_s().ok()).cloned()
    };
    let number = |attribute: &'static str| -> Option<&str> {
        item.get(attribute)
            .and_then(|v| v.as_n().ok())
            .map(String::as_str)
    };
    let required =
        |attribute: &'static str| text(attribute).ok_or_else(|| corrupt(attribute, "is missing"));
    let time = |attribute: &'static str| -> Result<OffsetDateTime, StoreError> {
        OffsetDateTime::parse(&required(attribute)?, &Rfc3339)
            .map_err(|e| corrupt(attribute, &format!("is not RFC 3339: {e}")))
    };

    let job_id = JobId::parse(&id_text).map_err(|_| corrupt(attr::JOB_ID, "is not a job id"))?;
    let status: JobStatus = required(attr::STATUS)?
        .parse()
        .map_err(|_| corrupt(attr::STATUS, "is not a status"))?;
    let progress = match number(attr::PROGRESS) {
        Some(p) => p
            .parse::<f64>()
            .map_err(|_| corrupt(attr::PROGRESS, "is not a number"))?,
        None => 0.0,
    };
    let result = match (text(attr::RESULT_BUCKET), text(attr::RESULT_KEY)) {
        (Some(bucket), Some(key)) => {
            let summary = match text(attr::SUMMARY) {
                Some(json) => serde_json::from_str(&json)
                    .map_err(|_| corrupt(attr::SUMMARY, "is not JSON"))?,
                None => Value::Null,
            };
            let bytes = number(attr::RESULT_BYTES)
                .and_then(|b| b.parse().ok())
                .unwrap_or(0);
            Some(JobResultView {
                summary,
                location: ResultLocation { bucket, key, bytes },
            })
        }
        _ => None,
    };
    let error = text(attr::ERROR).map(|error| JobErrorView {
        error,
        cause: text(attr::CAUSE).unwrap_or_default(),
    });
    Ok(JobRecord {
        job_id,
        requested_by: required(attr::REQUESTED_BY)?,
        model: required(attr::MODEL)?,
        status,
        progress,
        created_at: time(attr::CREATED_AT)?,
        updated_at: time(attr::UPDATED_AT)?,
        worker: text(attr::WORKER),
        handout: number(attr::HANDOUT).and_then(|a| a.parse().ok()),
        attempt: number(attr::ATTEMPT).and_then(|a| a.parse().ok()),
        result,
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_sort_as_text() {
        let a = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let b = a + time::Duration::microseconds(100);
        let c = a + time::Duration::seconds(1);
        let (ta, tb, tc) = (
            timestamp(a, "a").unwrap(),
            timestamp(b, "b").unwrap(),
            timestamp(c, "c").unwrap(),
        );
        assert_eq!(ta, "2027-01-15T08:00:00.000000Z");
        assert!(ta < tb && tb < tc, "{ta} {tb} {tc}");
        assert_eq!(OffsetDateTime::parse(&tb, &Rfc3339).unwrap(), b);
    }

    #[test]
    fn unrepresentable_times_are_errors_naming_the_field() {
        let year_10000 = time::macros::datetime!(9999-12-31 23:59:59 -1);
        let error = timestamp(year_10000, "meta.occurredAt").unwrap_err();
        assert!(matches!(
            error,
            StoreError::OutOfRange {
                field: "meta.occurredAt",
                ..
            }
        ));
        assert!(error.to_string().contains("meta.occurredAt"), "{error}");
        let last = time::macros::datetime!(9999-12-31 23:59:59.999999 UTC);
        assert_eq!(timestamp(last, "t").unwrap(), "9999-12-31T23:59:59.999999Z");
    }

    #[test]
    fn idempotency_ids_do_not_collide() {
        assert_eq!(idempotency_item_id("alice", "k1"), "idem#alice#k1");
        assert_ne!(
            idempotency_item_id("a#b", "c"),
            idempotency_item_id("a", "b#c")
        );
        assert_ne!(
            idempotency_item_id("a%23b", "c"),
            idempotency_item_id("a#b", "c")
        );
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = Cursor {
            created_at: "2027-01-15T08:00:00.000000Z".to_string(),
            job_id: "abc-1".to_string(),
        };
        let decode = |token: &str| Cursor::decode(token, 512);
        assert_eq!(decode(&cursor.encode()), Some(cursor.clone()));
        assert_eq!(Cursor::decode(&cursor.encode(), 10), None, "too long");
        assert_eq!(decode("not base64!"), None);
        assert_eq!(decode(&URL_SAFE_NO_PAD.encode("{\"c\":1}")), None);
        assert_eq!(
            decode(&URL_SAFE_NO_PAD.encode("{\"c\":\"x\",\"j\":\"no#pe\"}")),
            None
        );
        for time in [
            "yesterday",
            "2027-01-15T08:00:00Z",
            "2027-01-15T08:00:00.000000+01:00",
        ] {
            let token = URL_SAFE_NO_PAD.encode(format!("{{\"c\":\"{time}\",\"j\":\"abc-1\"}}"));
            assert_eq!(decode(&token), None, "{time}");
        }
    }
}
