//! The envelope every event on the bus carries, and the bus entry it becomes.
//!
//! On the wire an event is EventBridge's `source`, `detail-type` and `detail`; the detail
//! is the payload's fields plus a `meta` object (event id, schema version, occurred-at,
//! producer, correlation id). Consumers are tolerant readers: unknown fields are ignored,
//! and an event from an upstream service without `meta` gets one derived from
//! EventBridge's own envelope (its `id`, `time` and `source`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::error::{ContractError, from_value};

/// The newest schema version this build produces and understands.
pub const SCHEMA_VERSION: u32 = 1;

/// Metadata carried by every event, under `detail.meta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    /// Unique per event; consumers deduplicate on it.
    pub event_id: String,
    pub schema_version: u32,
    /// RFC 3339.
    #[serde(with = "crate::timestamp::bounded")]
    #[schemars(with = "String")]
    pub occurred_at: OffsetDateTime,
    /// The service (or state machine) that emitted the event.
    pub producer: String,
    /// Links everything about one job: its id, its execution, its WebSocket frames.
    pub correlation_id: String,
}

/// A typed event: knows its bus `source` and `detail-type`.
pub trait Event: Serialize + Clone {
    fn source(&self) -> &'static str;
    fn detail_type(&self) -> &'static str;
    /// The id that correlates this event with others (for job events: the job id).
    fn correlation_id(&self) -> Option<String>;
}

/// An event with its metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<E> {
    pub meta: Meta,
    pub event: E,
}

impl<E: Event> Envelope<E> {
    /// Wraps `event` with fresh metadata: a new event id, now, the producer's name.
    pub fn new(event: E, producer: &str) -> Self {
        let event_id = uuid::Uuid::now_v7().to_string();
        let correlation_id = event.correlation_id().unwrap_or_else(|| event_id.clone());
        Envelope {
            meta: Meta {
                event_id,
                schema_version: SCHEMA_VERSION,
                occurred_at: OffsetDateTime::now_utc(),
                producer: producer.to_string(),
                correlation_id,
            },
            event,
        }
    }

    /// The `detail` object: the payload's fields plus `meta`.
    pub fn detail(&self) -> Value {
        let mut detail = serde_json::to_value(&self.event).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut detail {
            map.insert(
                "meta".to_string(),
                serde_json::to_value(&self.meta).unwrap_or(Value::Null),
            );
        }
        detail
    }

    /// The entry to put on the bus.
    pub fn to_entry(&self) -> Entry {
        Entry {
            source: self.event.source().to_string(),
            detail_type: self.event.detail_type().to_string(),
            detail: self.detail().to_string(),
        }
    }
}

/// One `PutEvents` entry (the bus name is the publisher's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub source: String,
    pub detail_type: String,
    /// A JSON object, serialized.
    pub detail: String,
}

impl Entry {
    /// An entry from raw parts; `detail` must be a JSON object, as EventBridge requires.
    pub fn new(source: &str, detail_type: &str, detail: &Value) -> Result<Entry, ContractError> {
        if source.trim().is_empty() {
            return Err(ContractError::invalid(
                "event",
                "source",
                "must not be empty (e.g. `fleet.jobs`)",
            ));
        }
        if detail_type.trim().is_empty() {
            return Err(ContractError::invalid(
                "event",
                "detail-type",
                "must not be empty (e.g. `JobRequested`)",
            ));
        }
        if !detail.is_object() {
            return Err(ContractError::invalid(
                "event",
                "detail",
                format!(
                    "must be a JSON object like {{\"key\": \"value\"}}, got {}",
                    json_kind(detail)
                ),
            ));
        }
        Ok(Entry {
            source: source.to_string(),
            detail_type: detail_type.to_string(),
            detail: detail.to_string(),
        })
    }

    /// The size EventBridge counts against its 256 KB entry limit.
    pub fn size(&self) -> usize {
        self.source.len() + self.detail_type.len() + self.detail.len()
    }
}

/// What a consumer knows from EventBridge's own envelope, used when `meta` is absent.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    pub id: &'a str,
    pub source: &'a str,
    pub time: Option<OffsetDateTime>,
}

/// Splits a detail into its metadata and its payload, checking the schema version first
/// so that a newer producer gets a version error rather than a confusing field error.
pub(crate) fn split_detail(
    what: &str,
    detail: &Value,
) -> Result<(Option<Meta>, Value), ContractError> {
    let Value::Object(map) = detail else {
        return Err(ContractError::invalid(
            what,
            "detail",
            format!("must be a JSON object, got {}", json_kind(detail)),
        ));
    };
    let mut payload = map.clone();
    let Some(meta) = payload.remove("meta") else {
        return Ok((None, Value::Object(payload)));
    };
    if let Some(version) = meta.get("schemaVersion") {
        match version.as_u64() {
            Some(v) if v > u64::from(SCHEMA_VERSION) => {
                return Err(ContractError::UnsupportedVersion {
                    what: what.to_string(),
                    found: u32::try_from(v).unwrap_or(u32::MAX),
                    supported: SCHEMA_VERSION,
                });
            }
            Some(0) | None => {
                return Err(ContractError::invalid(
                    what,
                    "meta.schemaVersion",
                    format!("must be a positive integer, got {version}"),
                ));
            }
            Some(_) => {}
        }
    }
    let meta: Meta = from_value(what, &meta).map_err(|e| prefix_field(e, "meta"))?;
    Ok((Some(meta), Value::Object(payload)))
}

/// Metadata for an event that arrived without any.
pub(crate) fn derived_meta(received: &Received<'_>, correlation_id: Option<String>) -> Meta {
    Meta {
        event_id: received.id.to_string(),
        schema_version: SCHEMA_VERSION,
        occurred_at: received.time.unwrap_or_else(OffsetDateTime::now_utc),
        producer: received.source.to_string(),
        correlation_id: correlation_id.unwrap_or_else(|| received.id.to_string()),
    }
}

fn prefix_field(error: ContractError, prefix: &str) -> ContractError {
    match error {
        ContractError::Invalid {
            what,
            field,
            message,
        } => ContractError::Invalid {
            what,
            field: format!("{prefix}.{field}"),
            message,
        },
        other => other,
    }
}

pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An event as EventBridge delivers it to a target (a Lambda function, an SQS queue).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusEvent {
    #[serde(default)]
    pub version: Option<String>,
    pub id: String,
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub source: String,
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default, with = "crate::timestamp::bounded::option")]
    pub time: Option<OffsetDateTime>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    pub detail: Value,
}

impl BusEvent {
    /// Parses a delivered event (e.g. an SQS message body from a rule target).
    pub fn from_json(text: &str) -> Result<BusEvent, ContractError> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            ContractError::invalid("EventBridge event", "(body)", format!("not JSON: {e}"))
        })?;
        from_value("EventBridge event", &value)
    }

    pub fn received(&self) -> Received<'_> {
        Received {
            id: &self.id,
            source: &self.source,
            time: self.time,
        }
    }
}
