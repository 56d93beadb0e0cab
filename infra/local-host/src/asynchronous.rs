//! EventBridge rule → Lambda, invoked asynchronously as Lambda does.
//!
//! moto's EventBridge delivers only to SQS, so each function a rule targets gets a local
//! delivery queue that the rule targets instead. A message there is one event exactly as
//! EventBridge passes it to Lambda. Lambda's asynchronous semantics follow: at least once;
//! on error, a retry after each of [`Config::async_retry_delays`] with the same request
//! id; after the last failure the original event goes to the function's dead-letter
//! topic with `RequestID`, `ErrorCode` and `ErrorMessage` attributes. The message is
//! deleted only after a success or a successful dead-letter publish, so nothing is lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sns::types::MessageAttributeValue;
use aws_sdk_sqs::types::{Message, QueueAttributeName};
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::HostError;
use crate::function::FunctionError;
use crate::invoke::{Bound, Trigger};
use crate::poll::{Source, pause, release};

/// A rule that targets the function: its physical name, bus and ARN.
#[derive(Debug, Clone)]
pub(crate) struct RuleRef {
    pub(crate) physical: String,
    pub(crate) bus: String,
    pub(crate) arn: String,
}

/// Lambda's `ErrorCode` for a function error: the Invoke API's status, 200.
const FUNCTION_ERROR_CODE: &str = "200";
/// Lambda puts the first kilobyte of the error message in `ErrorMessage`.
const MAX_ERROR_MESSAGE: usize = 1024;
/// Publishing to the dead-letter topic is tried this often before the event is left for
/// redelivery.
const DEAD_LETTER_TRIES: usize = 3;

/// Creates (or aligns) the function's delivery queue and points each rule at it; returns
/// the queue to poll.
pub(crate) async fn ensure_delivery(
    sqs: &aws_sdk_sqs::Client,
    events: &aws_sdk_eventbridge::Client,
    function: &Bound,
    queue_name: &str,
    target_id: &str,
    rules: &[RuleRef],
    config: &Config,
) -> Result<Source, HostError> {
    let visibility = visibility_timeout(function.timeout, &config.async_retry_delays);
    let attributes = HashMap::from([(
        QueueAttributeName::VisibilityTimeout,
        visibility.as_secs().to_string(),
    )]);
    let url = match sqs.get_queue_url().queue_name(queue_name).send().await {
        Ok(out) => {
            let url = out.queue_url.unwrap_or_default();
            sqs.set_queue_attributes()
                .queue_url(&url)
                .set_attributes(Some(attributes))
                .send()
                .await
                .map_err(HostError::sdk(queue_name, "SetQueueAttributes"))?;
            url
        }
        Err(e)
            if e.code().is_some_and(|c| {
                c.contains("NonExistentQueue") || c.contains("QueueDoesNotExist")
            }) =>
        {
            sqs.create_queue()
                .queue_name(queue_name)
                .set_attributes(Some(attributes))
                .send()
                .await
                .map_err(HostError::sdk(queue_name, "CreateQueue"))?
                .queue_url
                .unwrap_or_default()
        }
        Err(e) => return Err(HostError::sdk(queue_name, "GetQueueUrl")(e)),
    };
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(HostError::sdk(queue_name, "GetQueueAttributes"))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .unwrap_or_default();
    // As on AWS, the queue admits only its rules (the emulator does not check).
    let statements: Vec<Value> = rules
        .iter()
        .map(|rule| {
            json!({
                "Effect": "Allow",
                "Principal": { "Service": "events.amazonaws.com" },
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": { "ArnEquals": { "aws:SourceArn": rule.arn } },
            })
        })
        .collect();
    let policy = json!({ "Version": "2012-10-17", "Statement": statements });
    sqs.set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::Policy, policy.to_string())
        .send()
        .await
        .map_err(HostError::sdk(queue_name, "SetQueueAttributes"))?;

    for rule in rules {
        let resource = format!("{}/{target_id}", rule.physical);
        let have = events
            .list_targets_by_rule()
            .rule(&rule.physical)
            .event_bus_name(&rule.bus)
            .send()
            .await
            .map_err(HostError::sdk(&resource, "ListTargetsByRule"))?;
        let present = have
            .targets()
            .iter()
            .any(|t| t.id() == target_id && t.arn() == arn);
        if present {
            continue;
        }
        let target = aws_sdk_eventbridge::types::Target::builder()
            .id(target_id)
            .arn(&arn)
            .build()
            .map_err(HostError::sdk(&resource, "PutTargets"))?;
        let out = events
            .put_targets()
            .rule(&rule.physical)
            .event_bus_name(&rule.bus)
            .targets(target)
            .send()
            .await
            .map_err(HostError::sdk(&resource, "PutTargets"))?;
        if out.failed_entry_count() > 0 {
            let detail = out
                .failed_entries()
                .iter()
                .map(|e| e.error_message().unwrap_or("?").to_owned())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(HostError::Sdk {
                resource,
                operation: "PutTargets",
                detail,
            });
        }
        tracing::info!(rule = %rule.physical, queue = %queue_name, "rule target added for local delivery");
    }
    Ok(Source {
        url,
        name: queue_name.to_owned(),
    })
}

/// Removes the host's own targets (ids starting with `prefix`) that a rule no longer asks
/// for, so events stop piling up in delivery queues nobody polls. Deployment leaves these
/// targets alone, and the host leaves every other target alone.
pub(crate) async fn prune_targets(
    events: &aws_sdk_eventbridge::Client,
    rule: &RuleRef,
    prefix: &str,
    wanted: &[String],
) -> Result<(), HostError> {
    let have = events
        .list_targets_by_rule()
        .rule(&rule.physical)
        .event_bus_name(&rule.bus)
        .send()
        .await
        .map_err(HostError::sdk(&rule.physical, "ListTargetsByRule"))?;
    let stale: Vec<String> = have
        .targets()
        .iter()
        .map(|t| t.id())
        .filter(|id| id.starts_with(prefix) && !wanted.iter().any(|w| w == id))
        .map(str::to_owned)
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    tracing::info!(rule = %rule.physical, targets = ?stale, "removing stale local delivery targets");
    events
        .remove_targets()
        .rule(&rule.physical)
        .event_bus_name(&rule.bus)
        .set_ids(Some(stale))
        .send()
        .await
        .map_err(HostError::sdk(&rule.physical, "RemoveTargets"))?;
    Ok(())
}

/// Long enough to hold a message through every attempt, every retry delay and the
/// dead-letter publish, so no second consumer sees it meanwhile.
fn visibility_timeout(function_timeout: Duration, retry_delays: &[Duration]) -> Duration {
    let attempts = u32::try_from(retry_delays.len() + 1).unwrap_or(u32::MAX);
    let needed = function_timeout.saturating_mul(attempts)
        + retry_delays.iter().sum::<Duration>()
        + Duration::from_secs(30);
    // SQS's ceiling is 12 hours; whole seconds, rounded up.
    Duration::from_secs(needed.as_secs().saturating_add(1).min(12 * 3600))
}

/// Everything delivering one function's events needs.
pub(crate) struct Delivery {
    pub(crate) function: Bound,
    pub(crate) sqs: aws_sdk_sqs::Client,
    pub(crate) sns: aws_sdk_sns::Client,
    pub(crate) source: Source,
    pub(crate) dead_letter_arn: String,
    pub(crate) retry_delays: Vec<Duration>,
    pub(crate) error_backoff: Duration,
    pub(crate) token: CancellationToken,
}

/// Invokes the function with one delivered event, with Lambda's retries and dead letter.
pub(crate) async fn deliver(d: Arc<Delivery>, message: Message) {
    let Some(receipt) = message.receipt_handle.clone() else {
        tracing::error!(queue = %d.source.name, "a received message has no receipt handle");
        return;
    };
    let body = message.body.clone().unwrap_or_default();
    // The delivery queue's message id names the event's delivery, so a redelivery after a
    // crash keeps the request id, as Lambda's own queue does.
    let request_id = message
        .message_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // EventBridge only ever sends JSON; anything else is passed on as a JSON string.
    let payload: Value =
        serde_json::from_str(&body).unwrap_or_else(|_| Value::String(body.clone()));
    let attempts = d.retry_delays.len() + 1;
    for attempt in 1..=attempts {
        let error = match d
            .function
            .invoke(&request_id, payload.clone(), Trigger::EventBridge)
            .await
        {
            Ok(_) => {
                delete(&d, &receipt).await;
                return;
            }
            Err(e) => e,
        };
        if let Some(&delay) = d.retry_delays.get(attempt - 1) {
            tracing::info!(
                function = %d.function.name,
                request_id = %request_id,
                attempt,
                retry_in_ms = delay.as_millis() as u64,
                "asynchronous invocation failed; retrying"
            );
            if pause(&d.token, delay).await {
                // Shutting down: the event waits in the queue for the next start.
                release(&d.sqs, &d.source, std::slice::from_ref(&message)).await;
                return;
            }
            continue;
        }
        if dead_letter(&d, &request_id, &body, &error).await {
            delete(&d, &receipt).await;
        } else {
            if d.token.is_cancelled() {
                release(&d.sqs, &d.source, std::slice::from_ref(&message)).await;
            }
            tracing::error!(
                function = %d.function.name,
                request_id = %request_id,
                "the failed event could not be sent to the dead-letter topic; it will be delivered again"
            );
        }
        return;
    }
}

/// Publishes the original event to the dead-letter topic as Lambda does; returns whether
/// the topic accepted it.
async fn dead_letter(d: &Delivery, request_id: &str, body: &str, error: &FunctionError) -> bool {
    let message = error_message(error);
    let attribute = |data_type: &str, value: &str| {
        MessageAttributeValue::builder()
            .data_type(data_type)
            .string_value(value)
            .build()
    };
    let attributes = match (
        attribute("String", request_id),
        attribute("Number", FUNCTION_ERROR_CODE),
        attribute("String", &message),
    ) {
        (Ok(id), Ok(code), Ok(message)) => HashMap::from([
            ("RequestID".to_owned(), id),
            ("ErrorCode".to_owned(), code),
            ("ErrorMessage".to_owned(), message),
        ]),
        _ => unreachable!("every attribute has its data type set"),
    };
    for attempt in 1..=DEAD_LETTER_TRIES {
        match d
            .sns
            .publish()
            .topic_arn(&d.dead_letter_arn)
            .message(body)
            .set_message_attributes(Some(attributes.clone()))
            .send()
            .await
        {
            Ok(_) => {
                tracing::warn!(
                    function = %d.function.name,
                    request_id = %request_id,
                    topic = %d.dead_letter_arn,
                    "asynchronous invocation failed after every retry; event sent to the dead-letter topic"
                );
                return true;
            }
            Err(e) => {
                tracing::warn!(
                    function = %d.function.name,
                    request_id = %request_id,
                    attempt,
                    error = %DisplayErrorContext(&e),
                    "dead-letter publish failed"
                );
                if attempt < DEAD_LETTER_TRIES && pause(&d.token, d.error_backoff).await {
                    return false;
                }
            }
        }
    }
    false
}

/// The first kilobyte of the error message; SNS refuses empty attribute values, so an
/// empty message is replaced by the error type.
fn error_message(error: &FunctionError) -> String {
    let text = if error.error_message.is_empty() {
        &error.error_type
    } else {
        &error.error_message
    };
    let mut end = text.len().min(MAX_ERROR_MESSAGE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end == 0 {
        "Unhandled".to_owned()
    } else {
        text[..end].to_owned()
    }
}

async fn delete(d: &Delivery, receipt: &str) {
    if let Err(e) = d
        .sqs
        .delete_message()
        .queue_url(&d.source.url)
        .receipt_handle(receipt)
        .send()
        .await
    {
        tracing::warn!(
            queue = %d.source.name,
            error = %DisplayErrorContext(&e),
            "could not delete a handled event; it will be delivered again"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_visibility_timeout_covers_every_attempt_and_delay() {
        let v = visibility_timeout(
            Duration::from_secs(30),
            &[Duration::from_millis(200), Duration::from_millis(400)],
        );
        assert_eq!(v, Duration::from_secs(90 + 30 + 1));
        let aws = visibility_timeout(Duration::from_secs(900), &Config::AWS_RETRY_DELAYS);
        assert_eq!(aws, Duration::from_secs(2700 + 180 + 30 + 1));
    }

    #[test]
    fn error_messages_are_cut_at_a_kilobyte_on_a_char_boundary() {
        let long = FunctionError::new("E", "é".repeat(600));
        let cut = error_message(&long);
        assert!(cut.len() <= MAX_ERROR_MESSAGE && cut.len() >= MAX_ERROR_MESSAGE - 1);
        assert_eq!(error_message(&FunctionError::new("Timeout", "")), "Timeout");
        assert_eq!(error_message(&FunctionError::new("", "")), "Unhandled");
    }
}
