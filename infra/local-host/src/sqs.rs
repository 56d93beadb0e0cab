//! SQS → Lambda, as an event source mapping with `ReportBatchItemFailures` does it.
//!
//! A batch of up to the topology's batch size becomes one SQS event. After the
//! invocation, the messages that succeeded are deleted; failed ones are left alone, so
//! they become visible again after the queue's visibility timeout and the queue's redrive
//! policy moves them to its dead-letter queue after `maxReceiveCount` receives.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use aws_lambda_events::encodings::Base64Data;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message};
use aws_smithy_types::error::display::DisplayErrorContext;
use serde_json::Value;

use crate::invoke::{Bound, Trigger};
use crate::poll::Source;

/// Everything one function's event source mapping needs.
pub(crate) struct Mapping {
    pub(crate) function: Bound,
    pub(crate) sqs: aws_sdk_sqs::Client,
    pub(crate) source: Source,
    pub(crate) queue_arn: String,
    pub(crate) region: String,
}

/// Invokes the function with one batch and deletes what succeeded.
pub(crate) async fn handle_batch(m: Arc<Mapping>, messages: Vec<Message>) {
    let request_id = uuid::Uuid::new_v4().to_string();
    let event = sqs_event(&messages, &m.queue_arn, &m.region);
    let payload = match serde_json::to_value(&event) {
        Ok(payload) => payload,
        Err(e) => unreachable!("an SQS event always serializes: {e}"),
    };
    let ids: Vec<&str> = messages
        .iter()
        .filter_map(|msg| msg.message_id.as_deref())
        .collect();
    let failed = match m.function.invoke(&request_id, payload, Trigger::Sqs).await {
        Ok(response) => batch_item_failures(&response, &ids),
        Err(e) => Err(format!("the function failed ({})", e.error_type)),
    };
    let failed = match failed {
        Ok(failed) => failed,
        Err(reason) => {
            tracing::info!(
                function = %m.function.name,
                request_id = %request_id,
                messages = messages.len(),
                reason = %reason,
                "the whole batch failed; its messages return after the visibility timeout"
            );
            return;
        }
    };
    if !failed.is_empty() {
        tracing::info!(
            function = %m.function.name,
            request_id = %request_id,
            failed = failed.len(),
            messages = messages.len(),
            "batch items failed; they return after the visibility timeout"
        );
    }
    let entries: Vec<DeleteMessageBatchRequestEntry> = messages
        .iter()
        .enumerate()
        .filter(|(_, msg)| {
            msg.message_id
                .as_deref()
                .is_none_or(|id| !failed.contains(id))
        })
        .filter_map(|(i, msg)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .set_receipt_handle(msg.receipt_handle.clone())
                .build()
                .ok()
        })
        .collect();
    if entries.is_empty() {
        return;
    }
    match m
        .sqs
        .delete_message_batch()
        .queue_url(&m.source.url)
        .set_entries(Some(entries))
        .send()
        .await
    {
        Ok(out) if !out.failed.is_empty() => tracing::warn!(
            queue = %m.source.name,
            failed = out.failed.len(),
            "some handled messages could not be deleted; they will be delivered again"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(
            queue = %m.source.name,
            error = %DisplayErrorContext(&e),
            "handled messages could not be deleted; they will be delivered again"
        ),
    }
}

/// The event Lambda builds from received messages.
fn sqs_event(messages: &[Message], queue_arn: &str, region: &str) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|msg| {
            let mut record = SqsMessage::default();
            record.message_id = msg.message_id.clone();
            record.receipt_handle = msg.receipt_handle.clone();
            record.body = msg.body.clone();
            record.md5_of_body = msg.md5_of_body.clone();
            record.md5_of_message_attributes = msg.md5_of_message_attributes.clone();
            record.attributes = msg
                .attributes
                .iter()
                .flatten()
                .map(|(name, value)| (name.as_str().to_owned(), value.clone()))
                .collect();
            record.message_attributes = msg
                .message_attributes
                .iter()
                .flatten()
                .map(|(name, value)| {
                    let mut attribute = SqsMessageAttribute::default();
                    attribute.data_type = Some(value.data_type.clone());
                    attribute.string_value = value.string_value.clone();
                    attribute.binary_value =
                        value.binary_value.as_ref().map(|b| base64_data(b.as_ref()));
                    attribute.string_list_values =
                        value.string_list_values.clone().unwrap_or_default();
                    attribute.binary_list_values = value
                        .binary_list_values
                        .iter()
                        .flatten()
                        .map(|b| base64_data(b.as_ref()))
                        .collect();
                    (name.clone(), attribute)
                })
                .collect::<HashMap<_, _>>();
            record.event_source = Some("aws:sqs".to_owned());
            record.event_source_arn = Some(queue_arn.to_owned());
            record.aws_region = Some(region.to_owned());
            record
        })
        .collect();
    event
}

fn base64_data(bytes: &[u8]) -> Base64Data {
    let mut data = Base64Data::default();
    data.extend_from_slice(bytes);
    data
}

/// The message ids a response reports as failed, under Lambda's rules for
/// `ReportBatchItemFailures`: a null or empty response, or a null or empty
/// `batchItemFailures`, is complete success; a response of another shape, or an item
/// without a non-empty `itemIdentifier` naming a message of the batch, fails the whole
/// batch (`Err` says why).
fn batch_item_failures(response: &Value, batch: &[&str]) -> Result<HashSet<String>, String> {
    let object = match response {
        Value::Null => return Ok(HashSet::new()),
        Value::Object(object) => object,
        other => return Err(format!("the response is not a batch response: {other}")),
    };
    let items = match object.get("batchItemFailures") {
        None | Some(Value::Null) => return Ok(HashSet::new()),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(format!("batchItemFailures is not a list: {other}")),
    };
    let mut failed = HashSet::new();
    for item in items {
        match item.get("itemIdentifier") {
            Some(Value::String(id)) if !id.is_empty() && batch.contains(&id.as_str()) => {
                failed.insert(id.clone());
            }
            _ => return Err(format!("invalid batch item failure {item}")),
        }
    }
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(response: Value, expected: Result<&[&str], ()>) {
        let batch = ["a", "b", "c"];
        let got = batch_item_failures(&response, &batch);
        match expected {
            Ok(ids) => {
                let want: HashSet<String> = ids.iter().map(|s| (*s).to_owned()).collect();
                assert_eq!(got, Ok(want), "{response}");
            }
            Err(()) => assert!(got.is_err(), "{response} should fail the batch: {got:?}"),
        }
    }

    #[test]
    fn batch_responses_follow_lambdas_rules() {
        check(Value::Null, Ok(&[]));
        check(json!({}), Ok(&[]));
        check(json!({ "batchItemFailures": null }), Ok(&[]));
        check(json!({ "batchItemFailures": [] }), Ok(&[]));
        check(
            json!({ "batchItemFailures": [{ "itemIdentifier": "b" }] }),
            Ok(&["b"]),
        );
        check(
            json!({ "batchItemFailures": [{ "itemIdentifier": "" }] }),
            Err(()),
        );
        check(
            json!({ "batchItemFailures": [{ "itemIdentifier": null }] }),
            Err(()),
        );
        check(json!({ "batchItemFailures": [{ "id": "b" }] }), Err(()));
        check(
            json!({ "batchItemFailures": [{ "itemIdentifier": "z" }] }),
            Err(()),
        );
        check(json!({ "batchItemFailures": "b" }), Err(()));
        check(json!("ok"), Err(()));
    }

    #[test]
    fn records_carry_what_lambda_puts_in_an_sqs_event() {
        use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
        let message = Message::builder()
            .message_id("m-1")
            .receipt_handle("r-1")
            .body("{\"n\":1}")
            .md5_of_body("abc")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "2")
            .message_attributes(
                "trace",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("t-1")
                    .build()
                    .expect("data type is set"),
            )
            .build();
        let arn = "arn:aws:sqs:us-east-1:123456789012:q";
        let event = serde_json::to_value(sqs_event(&[message], arn, "us-east-1")).expect("JSON");
        let record = &event["Records"][0];
        assert_eq!(record["messageId"], "m-1");
        assert_eq!(record["receiptHandle"], "r-1");
        assert_eq!(record["body"], "{\"n\":1}");
        assert_eq!(record["attributes"]["ApproximateReceiveCount"], "2");
        assert_eq!(record["messageAttributes"]["trace"]["stringValue"], "t-1");
        assert_eq!(record["messageAttributes"]["trace"]["dataType"], "String");
        assert_eq!(record["eventSource"], "aws:sqs");
        assert_eq!(record["eventSourceARN"], arn);
        assert_eq!(record["awsRegion"], "us-east-1");
        let parsed: SqsEvent = serde_json::from_value(event).expect("an SqsEvent");
        assert_eq!(parsed.records.len(), 1);
    }
}
