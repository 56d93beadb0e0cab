//! What a dead message is and why it is there: its reason attributes (Lambda's, the
//! worker's, EventBridge's, or none: the redrive policy moved it), its body decoded
//! against the contracts, and task tokens redacted.

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use contracts::tasks::SimulationTask;
use contracts::{BusEvent, JobEvent};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use super::{DeadLetterQueue, DlqKind, DlqSource};
use crate::times::{from_epoch_millis, redact};

/// Why a message is in a DLQ.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Reason {
    /// Lambda's attributes on a failed asynchronous invocation.
    Lambda {
        request_id: Option<String>,
        error_code: Option<String>,
        error_message: Option<String>,
    },
    /// A worker dead-lettered it at once (the `fleet.*` attributes of `sqs-worker`).
    Worker {
        error: Option<String>,
        reason: Option<String>,
        source_queue: Option<String>,
        worker: Option<String>,
    },
    /// EventBridge could not deliver it to a target.
    EventbridgeTarget {
        error_code: Option<String>,
        error_message: Option<String>,
        rule_arn: Option<String>,
        target_arn: Option<String>,
    },
    /// No reason attributes: the source queue's redrive policy moved it after
    /// `maxReceiveCount` receives (the handler failed or timed out each time).
    MaxReceives { max_receive_count: Option<u32> },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let or = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".to_owned());
        match self {
            Reason::Lambda {
                request_id,
                error_code,
                error_message,
            } => write!(
                f,
                "lambda request {} failed (ErrorCode {}): {}",
                or(request_id),
                or(error_code),
                or(error_message)
            ),
            Reason::Worker { error, reason, .. } => {
                write!(f, "worker: {}: {}", or(error), or(reason))
            }
            Reason::EventbridgeTarget {
                error_code,
                error_message,
                ..
            } => write!(
                f,
                "eventbridge delivery: {}: {}",
                or(error_code),
                or(error_message)
            ),
            Reason::MaxReceives {
                max_receive_count: Some(n),
            } => write!(f, "received {n} times without success (redrive policy)"),
            Reason::MaxReceives { .. } => {
                write!(f, "received too often without success (redrive policy)")
            }
        }
    }
}

/// What a message body is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Body {
    /// An EventBridge event; `decoded` names the contract it passed (or `error` says why
    /// not).
    Event {
        id: String,
        source: String,
        detail_type: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        decoded: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        detail: Value,
    },
    /// A job handed to a simulation worker; the task token is redacted.
    SimulationTask {
        job_id: String,
        model: String,
        params: Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        requested_by: Option<String>,
        task_token: String,
    },
    Json {
        value: Value,
    },
    Text {
        text: String,
    },
}

/// A dead message, decoded.
#[derive(Debug, Clone, Serialize)]
pub struct DeadMessage {
    pub message_id: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub sent_at: Option<OffsetDateTime>,
    /// When it failed for good: the worker's `fleet.failed-at`, SNS's timestamp for a
    /// Lambda failure, else when it was sent to the DLQ.
    #[serde(with = "time::serde::rfc3339::option")]
    pub first_failed_at: Option<OffsetDateTime>,
    /// Receives on the source queue when the worker recorded them (`fleet.receive-count`),
    /// else SQS's `ApproximateReceiveCount` (which counts peeks at the DLQ too).
    pub receive_count: Option<u64>,
    pub reason: Reason,
    pub correlation_id: Option<String>,
    pub body: Body,
}

/// Decodes one message of `queue`.
pub fn describe(queue: &DeadLetterQueue, message: &Message) -> DeadMessage {
    let body_text = message.body().unwrap_or_default();
    let sent = sent_at(message);
    let sqs_receives = message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|v| v.parse::<u64>().ok());
    let envelope = (queue.kind == DlqKind::LambdaFailures)
        .then(|| sns_envelope(body_text))
        .flatten();
    let (reason, failed_at, receives, inner) = match envelope {
        Some(envelope) => {
            let attribute = |name: &str| {
                envelope
                    .get("MessageAttributes")
                    .and_then(|a| a.get(name))
                    .and_then(|a| a.get("Value"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            let reason = Reason::Lambda {
                request_id: attribute("RequestID"),
                error_code: attribute("ErrorCode"),
                error_message: attribute("ErrorMessage"),
            };
            let failed_at = envelope
                .get("Timestamp")
                .and_then(Value::as_str)
                .and_then(|t| {
                    OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
                });
            let inner = envelope
                .get("Message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            // Lambda does not record how many attempts it made.
            (reason, failed_at.or(sent), None, inner)
        }
        None => {
            let worker_error = message_attribute(message, sqs_worker::attributes::ERROR);
            let target_error = message_attribute(message, "ERROR_CODE");
            let reason = if worker_error.is_some()
                || message_attribute(message, sqs_worker::attributes::REASON).is_some()
            {
                Reason::Worker {
                    error: worker_error,
                    reason: message_attribute(message, sqs_worker::attributes::REASON),
                    source_queue: message_attribute(message, sqs_worker::attributes::SOURCE_QUEUE),
                    worker: message_attribute(message, sqs_worker::attributes::WORKER),
                }
            } else if target_error.is_some() || queue.kind == DlqKind::EventbridgeTarget {
                Reason::EventbridgeTarget {
                    error_code: target_error,
                    error_message: message_attribute(message, "ERROR_MESSAGE"),
                    rule_arn: message_attribute(message, "RULE_ARN"),
                    target_arn: message_attribute(message, "TARGET_ARN"),
                }
            } else {
                Reason::MaxReceives {
                    max_receive_count: queue.sources.iter().find_map(|s| match s {
                        DlqSource::Queue {
                            max_receive_count, ..
                        } => Some(*max_receive_count),
                        _ => None,
                    }),
                }
            };
            let failed_at =
                message_attribute(message, sqs_worker::attributes::FAILED_AT).and_then(|t| {
                    OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).ok()
                });
            let receives = message_attribute(message, sqs_worker::attributes::RECEIVE_COUNT)
                .and_then(|n| n.parse().ok())
                .or(sqs_receives);
            (reason, failed_at.or(sent), receives, body_text.to_owned())
        }
    };
    let (body, correlation_id) = decode_body(&inner);
    DeadMessage {
        message_id: message.message_id().unwrap_or_default().to_owned(),
        sent_at: sent,
        first_failed_at: failed_at,
        receive_count: receives,
        reason,
        correlation_id,
        body,
    }
}

/// Decodes a body: an event (checked against the job contracts), a simulation task, any
/// JSON, or text. Returns it with its correlation id.
pub fn decode_body(text: &str) -> (Body, Option<String>) {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return (
            Body::Text {
                text: text.to_owned(),
            },
            None,
        );
    };
    if value.get("detail-type").is_some()
        && let Ok(event) = BusEvent::from_json(text)
    {
        let meta_correlation = event
            .detail
            .get("meta")
            .and_then(|m| m.get("correlationId"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let (decoded, error, correlation) = if event.source == contracts::jobs::SOURCE {
            match JobEvent::decode(&event.detail_type, &event.detail, &event.received()) {
                Ok(envelope) => (
                    Some(format!(
                        "{} v{}",
                        event.detail_type, envelope.meta.schema_version
                    )),
                    None,
                    Some(envelope.meta.correlation_id),
                ),
                Err(e) => (None, Some(e.to_string()), meta_correlation),
            }
        } else {
            (None, None, meta_correlation)
        };
        let correlation = correlation.or_else(|| {
            event
                .detail
                .get("jobId")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        return (
            Body::Event {
                id: event.id,
                source: event.source,
                detail_type: event.detail_type,
                decoded,
                error,
                detail: event.detail,
            },
            correlation,
        );
    }
    if value.get("taskToken").is_some()
        && let Ok(task) = SimulationTask::from_body(text)
    {
        let job_id = task.job_id.to_string();
        return (
            Body::SimulationTask {
                job_id: job_id.clone(),
                model: task.model,
                params: Value::Object(task.params),
                requested_by: task.requested_by,
                task_token: redact(&task.task_token),
            },
            Some(job_id),
        );
    }
    let correlation = value
        .get("jobId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    (Body::Json { value }, correlation)
}

/// The body with every `taskToken` string (at any depth, in nested JSON strings too, as
/// in an SNS envelope) redacted.
pub fn redact_tokens(text: &str) -> String {
    fn walk(value: &mut Value) -> bool {
        let mut changed = false;
        match value {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if k == "taskToken"
                        && let Value::String(s) = v
                    {
                        *s = redact(s);
                        changed = true;
                    } else if let Value::String(s) = v
                        && let Ok(mut inner) = serde_json::from_str::<Value>(s)
                        && inner.is_object()
                        && walk(&mut inner)
                    {
                        *s = inner.to_string();
                        changed = true;
                    } else {
                        changed |= walk(v);
                    }
                }
            }
            Value::Array(items) => {
                for v in items {
                    changed |= walk(v);
                }
            }
            _ => {}
        }
        changed
    }
    let Ok(mut value) = serde_json::from_str::<Value>(text) else {
        return text.to_owned();
    };
    if walk(&mut value) {
        value.to_string()
    } else {
        text.to_owned()
    }
}

/// The body to redrive: the original event inside the SNS envelope for Lambda failures,
/// the body itself otherwise.
pub(super) fn original_body(kind: DlqKind, message: &Message) -> String {
    let body = message.body().unwrap_or_default();
    if kind == DlqKind::LambdaFailures
        && let Some(envelope) = sns_envelope(body)
        && let Some(inner) = envelope.get("Message").and_then(Value::as_str)
    {
        return inner.to_owned();
    }
    body.to_owned()
}

fn sns_envelope(body: &str) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_str::<Value>(body).ok()? {
        Value::Object(map) if map.get("Type").and_then(Value::as_str) == Some("Notification") => {
            Some(map)
        }
        _ => None,
    }
}

pub(super) fn sent_at(message: &Message) -> Option<OffsetDateTime> {
    message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
        .and_then(|v| from_epoch_millis(v))
}

pub(super) fn message_attribute(message: &Message, name: &str) -> Option<String> {
    message
        .message_attributes()
        .and_then(|a| a.get(name))
        .and_then(|v| v.string_value())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn task_tokens_are_redacted_even_inside_an_sns_envelope() {
        let task = json!({"taskToken": "774a59e0-f515-4401-876b-def622c6b40a", "jobId": "j-1"});
        let redacted = redact_tokens(&task.to_string());
        assert!(!redacted.contains("f515-4401"), "{redacted}");
        assert!(redacted.contains("774a59e0…(36 chars)"), "{redacted}");
        let envelope = json!({"Type": "Notification", "Message": task.to_string()});
        let redacted = redact_tokens(&envelope.to_string());
        assert!(!redacted.contains("f515-4401"), "{redacted}");
        assert_eq!(redact_tokens("not json taskToken"), "not json taskToken");
    }

    #[test]
    fn bodies_decode_as_job_events_tasks_json_or_text() {
        let event = json!({
            "id": "e-1", "source": "fleet.jobs", "detail-type": "JobRequested",
            "detail": {"model": "sir", "params": {}, "jobId": "job-7",
                "meta": {"eventId": "e-1", "schemaVersion": 1, "occurredAt": "2026-01-01T00:00:00Z",
                         "producer": "jobs-api", "correlationId": "job-7"}}
        });
        let (body, correlation) = decode_body(&event.to_string());
        assert!(
            matches!(body, Body::Event { decoded: Some(ref d), .. } if d == "JobRequested v1"),
            "{body:?}"
        );
        assert_eq!(correlation.as_deref(), Some("job-7"));

        let bad = json!({"id": "e-2", "source": "fleet.jobs", "detail-type": "JobProgress",
            "detail": {"jobId": "job-8", "progress": 7}});
        let (body, correlation) = decode_body(&bad.to_string());
        assert!(
            matches!(body, Body::Event { error: Some(_), .. }),
            "{body:?}"
        );
        assert_eq!(correlation.as_deref(), Some("job-8"));

        let task = json!({"taskToken": "secret-token-value", "jobId": "job-9", "model": "sir", "params": {"beta": 1}});
        let (body, correlation) = decode_body(&task.to_string());
        let Body::SimulationTask { task_token, .. } = &body else {
            panic!("{body:?}")
        };
        assert_eq!(task_token, "secret-t…(18 chars)");
        assert_eq!(correlation.as_deref(), Some("job-9"));

        assert!(matches!(decode_body("[1]").0, Body::Json { .. }));
        assert!(matches!(decode_body("plain").0, Body::Text { .. }));
    }
}
