//! The real queue: [`Queue`] through the official SDK.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
};

use crate::config::QueueUrl;
use crate::policy::sqs_seconds;
use crate::queue::{
    EntryFailure, Queue, QueueAttributes, QueueError, ReceiptHandle, ReceivedMessage, Redrive,
};

/// One SQS queue through the SDK client.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: QueueUrl,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: QueueUrl) -> Self {
        SqsQueue { client, url }
    }

    pub fn from_sdk(sdk: &aws_config::SdkConfig, url: QueueUrl) -> Self {
        SqsQueue::new(aws_sdk_sqs::Client::new(sdk), url)
    }

    pub fn client(&self) -> &aws_sdk_sqs::Client {
        &self.client
    }

    fn error<E>(&self, api: &'static str, error: &aws_sdk_sqs::error::SdkError<E>) -> QueueError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        QueueError {
            api,
            queue: self.url.to_string(),
            code: error.code().unwrap_or("CallFailed").to_string(),
            message: DisplayErrorContext(error).to_string(),
        }
    }
}

impl Queue for SqsQueue {
    fn url(&self) -> &QueueUrl {
        &self.url
    }

    async fn attributes(&self) -> Result<QueueAttributes, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(self.url.as_str())
            .attribute_names(QueueAttributeName::VisibilityTimeout)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| self.error("GetQueueAttributes", &e))?;
        let attrs = out.attributes();
        let invalid = |message: String| QueueError {
            api: "GetQueueAttributes",
            queue: self.url.to_string(),
            code: "InvalidAttribute".to_string(),
            message,
        };
        let visibility = attrs
            .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout))
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|e| invalid(format!("VisibilityTimeout `{v}`: {e}")))
            })
            .transpose()?
            .unwrap_or(30);
        let redrive = match attrs.and_then(|a| a.get(&QueueAttributeName::RedrivePolicy)) {
            None => None,
            Some(policy) if policy.trim().is_empty() => None,
            Some(policy) => {
                let (arn, max_receive_count) = parse_redrive_policy(policy).ok_or_else(|| {
                    invalid(format!("RedrivePolicy `{policy}` is not understood"))
                })?;
                let dead_letter_queue = self.resolve_arn(&arn).await?;
                Some(Redrive {
                    dead_letter_queue,
                    max_receive_count,
                })
            }
        };
        Ok(QueueAttributes {
            visibility_timeout: Duration::from_secs(visibility),
            redrive,
        })
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(self.url.as_str())
            .max_number_of_messages(i32::try_from(max.clamp(1, 10)).unwrap_or(10))
            .wait_time_seconds(sqs_seconds(wait).min(20))
            .visibility_timeout(sqs_seconds(visibility))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(
                MessageSystemAttributeName::ApproximateFirstReceiveTimestamp,
            )
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| self.error("ReceiveMessage", &e))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                let (Some(id), Some(handle)) = (m.message_id(), m.receipt_handle()) else {
                    tracing::warn!(queue = %self.url, "SQS returned a message without id or receipt handle; skipped");
                    return None;
                };
                let system = m.attributes();
                let get = |name: MessageSystemAttributeName| system.and_then(|a| a.get(&name));
                let timestamp = |name| {
                    get(name)
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
                };
                let attributes: BTreeMap<String, String> = m
                    .message_attributes()
                    .map(|attrs| {
                        attrs
                            .iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.string_value()?.to_string())))
                            .collect()
                    })
                    .unwrap_or_default();
                Some(ReceivedMessage {
                    message_id: id.to_string(),
                    receipt_handle: ReceiptHandle(handle.to_string()),
                    body: m.body().unwrap_or_default().to_string(),
                    receive_count: get(MessageSystemAttributeName::ApproximateReceiveCount)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(1),
                    first_received_at: timestamp(
                        MessageSystemAttributeName::ApproximateFirstReceiveTimestamp,
                    ),
                    sent_at: timestamp(MessageSystemAttributeName::SentTimestamp),
                    attributes,
                })
            })
            .collect())
    }

    async fn delete_batch(
        &self,
        handles: &[ReceiptHandle],
    ) -> Result<Vec<EntryFailure>, QueueError> {
        let mut entries = Vec::with_capacity(handles.len());
        for (i, handle) in handles.iter().enumerate() {
            entries.push(
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(&handle.0)
                    .build()
                    .map_err(|e| build_error("DeleteMessageBatch", &self.url, &e))?,
            );
        }
        let out = self
            .client
            .delete_message_batch()
            .queue_url(self.url.as_str())
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| self.error("DeleteMessageBatch", &e))?;
        Ok(failures(out.failed()))
    }

    async fn change_visibility_batch(
        &self,
        changes: &[(ReceiptHandle, Duration)],
    ) -> Result<Vec<EntryFailure>, QueueError> {
        let mut entries = Vec::with_capacity(changes.len());
        for (i, (handle, after)) in changes.iter().enumerate() {
            entries.push(
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(&handle.0)
                    .visibility_timeout(sqs_seconds(*after))
                    .build()
                    .map_err(|e| build_error("ChangeMessageVisibilityBatch", &self.url, &e))?,
            );
        }
        let out = self
            .client
            .change_message_visibility_batch()
            .queue_url(self.url.as_str())
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| self.error("ChangeMessageVisibilityBatch", &e))?;
        Ok(failures(out.failed()))
    }

    async fn send(
        &self,
        to: &QueueUrl,
        body: &str,
        attributes: &[(String, String)],
    ) -> Result<(), QueueError> {
        let mut request = self
            .client
            .send_message()
            .queue_url(to.as_str())
            .message_body(body);
        for (name, value) in attributes {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| build_error("SendMessage", to, &e))?;
            request = request.message_attributes(name, value);
        }
        request.send().await.map_err(|e| QueueError {
            api: "SendMessage",
            queue: to.to_string(),
            code: e.code().unwrap_or("CallFailed").to_string(),
            message: DisplayErrorContext(&e).to_string(),
        })?;
        Ok(())
    }
}

impl SqsQueue {
    /// The URL of the queue `arn:aws:sqs:<region>:<account>:<name>` names.
    async fn resolve_arn(&self, arn: &str) -> Result<QueueUrl, QueueError> {
        let mut parts = arn.split(':');
        let (account, name) = (parts.nth(4), parts.next());
        let (Some(account), Some(name)) = (account, name) else {
            return Err(QueueError {
                api: "GetQueueUrl",
                queue: self.url.to_string(),
                code: "InvalidArn".to_string(),
                message: format!("`{arn}` is not a queue ARN"),
            });
        };
        let out = self
            .client
            .get_queue_url()
            .queue_name(name)
            .queue_owner_aws_account_id(account)
            .send()
            .await
            .map_err(|e| self.error("GetQueueUrl", &e))?;
        let url = out.queue_url().unwrap_or_default();
        QueueUrl::parse(url).map_err(|e| QueueError {
            api: "GetQueueUrl",
            queue: self.url.to_string(),
            code: "InvalidUrl".to_string(),
            message: e.to_string(),
        })
    }
}

fn build_error(api: &'static str, queue: &QueueUrl, e: &dyn std::error::Error) -> QueueError {
    QueueError {
        api,
        queue: queue.to_string(),
        code: "InvalidRequest".to_string(),
        message: e.to_string(),
    }
}

/// `(deadLetterTargetArn, maxReceiveCount)` from a `RedrivePolicy`; SQS may give the count
/// as a number or as a string.
pub(crate) fn parse_redrive_policy(policy: &str) -> Option<(String, u32)> {
    let value: serde_json::Value = serde_json::from_str(policy).ok()?;
    let arn = value.get("deadLetterTargetArn")?.as_str()?.to_string();
    let count = match value.get("maxReceiveCount")? {
        serde_json::Value::Number(n) => u32::try_from(n.as_u64()?).ok()?,
        serde_json::Value::String(s) => s.parse().ok()?,
        _ => return None,
    };
    Some((arn, count))
}

/// Milliseconds since the epoch, for SQS and DynamoDB attributes.
pub(crate) fn epoch_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A batch call's failed entries, by the index each entry's id carries.
fn failures(failed: &[aws_sdk_sqs::types::BatchResultErrorEntry]) -> Vec<EntryFailure> {
    failed
        .iter()
        .map(|f| EntryFailure {
            index: f.id().parse().unwrap_or(usize::MAX),
            code: f.code().to_string(),
            message: f.message().unwrap_or_default().to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redrive_policies_parse_in_both_spellings() {
        let arn = "arn:aws:sqs:us-east-1:123456789012:q-dlq";
        assert_eq!(
            parse_redrive_policy(&format!(
                r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":3}}"#
            )),
            Some((arn.to_string(), 3))
        );
        assert_eq!(
            parse_redrive_policy(&format!(
                r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"5"}}"#
            )),
            Some((arn.to_string(), 5))
        );
        assert_eq!(parse_redrive_policy("{}"), None);
    }
}
