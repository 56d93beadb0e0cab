//! What the test crates share on top of [`test_emulator`](crate::test_emulator): uniquely
//! named queues, tables, buses and state machines, reading queues, capturing bus events
//! through a rule and a queue, and waiting on a condition with a deadline.
//!
//! Every helper panics when the emulator refuses a setup call, naming the call: in a test
//! that is the test failing, with the reason. Nothing here sleeps to let time pass; the
//! waits poll a condition and give up at their deadline.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{Message, QueueAttributeName};
use serde_json::Value;

use crate::{ACCOUNT_ID, REGION, unique_name};

/// How often the waits look at their condition again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Polls `probe` until it gives a value and returns it; panics once `limit` has passed,
/// saying it waited for `what`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Polls `condition` until it holds; panics once `limit` has passed, saying it waited
/// for `what`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(what, limit, || {
        let holds = condition();
        async move { holds.await.then_some(()) }
    })
    .await;
}

/// A queue in the emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    pub url: String,
    pub arn: String,
    pub name: String,
}

/// A standard queue named after `prefix` that no other test uses.
pub async fn queue(sdk: &SdkConfig, prefix: &str) -> Queue {
    create_queue(sdk, &unique_name(prefix), Vec::new()).await
}

/// A queue and its dead-letter queue (`<name>-dlq`), named after `prefix`: a message
/// received `max_receive_count` times moves to the dead-letter queue.
pub async fn queue_with_dlq(
    sdk: &SdkConfig,
    prefix: &str,
    visibility_timeout: Duration,
    max_receive_count: u32,
) -> (Queue, Queue) {
    let name = unique_name(prefix);
    let dlq = create_queue(sdk, &format!("{name}-dlq"), Vec::new()).await;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq.arn,
        "maxReceiveCount": max_receive_count,
    });
    let queue = create_queue(
        sdk,
        &name,
        vec![
            (
                QueueAttributeName::VisibilityTimeout,
                visibility_timeout.as_secs().to_string(),
            ),
            (QueueAttributeName::RedrivePolicy, redrive.to_string()),
        ],
    )
    .await;
    (queue, dlq)
}

async fn create_queue(
    sdk: &SdkConfig,
    name: &str,
    attributes: Vec<(QueueAttributeName, String)>,
) -> Queue {
    let mut request = aws_sdk_sqs::Client::new(sdk)
        .create_queue()
        .queue_name(name);
    for (attribute, value) in attributes {
        request = request.attributes(attribute, value);
    }
    let url = must(request.send().await, "CreateQueue").queue_url;
    Queue {
        url: url.unwrap_or_else(|| panic!("CreateQueue answered {name} without a URL")),
        // moto's ARNs follow AWS's: region, account, name.
        arn: format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}"),
        name: name.to_string(),
    }
}

/// Receives one message from `url`, waiting at most `wait` (whole seconds), and deletes
/// it; its body, or `None` when none came.
pub async fn receive_one(sdk: &SdkConfig, url: &str, wait: Duration) -> Option<String> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let output = must(
        sqs.receive_message()
            .queue_url(url)
            .max_number_of_messages(1)
            .wait_time_seconds(i32::try_from(wait.as_secs()).unwrap_or(1))
            .send()
            .await,
        "ReceiveMessage",
    );
    let message = output.messages().first()?.clone();
    delete(sdk, url, &message).await;
    message.body().map(ToString::to_string)
}

/// Every message in `url` (received and deleted until a receive comes back empty).
pub async fn drain(sdk: &SdkConfig, url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    while let Some(body) = receive_one(sdk, url, Duration::from_secs(1)).await {
        bodies.push(body);
    }
    bodies
}

/// Receives from `url` (up to ten messages a call, with their message attributes) until
/// `pick` takes one, and returns what it took; panics once `limit` has passed, listing
/// the bodies it saw. Messages are left in the queue (see [`delete`]).
pub async fn receive_until<T>(
    sdk: &SdkConfig,
    url: &str,
    limit: Duration,
    mut pick: impl FnMut(&Message) -> Option<T>,
) -> T {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        for message in receive_batch(&sqs, url).await {
            if let Some(picked) = pick(&message) {
                return picked;
            }
            seen.push(message.body().unwrap_or_default().to_string());
        }
        assert!(
            Instant::now() < deadline,
            "nothing wanted reached {url} within {limit:?}; saw {seen:?}"
        );
    }
}

/// Receives the bodies arriving in `url` as JSON until `done` says they are enough or
/// `limit` has passed, and returns them all (the caller asserts on what came).
pub async fn collect_until(
    sdk: &SdkConfig,
    url: &str,
    limit: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    while !done(&seen) && Instant::now() < deadline {
        for message in receive_batch(&sqs, url).await {
            seen.push(body_json(&message));
        }
    }
    seen
}

/// A message's body as JSON; panics when it is not JSON.
pub fn body_json(message: &Message) -> Value {
    let body = message.body().unwrap_or("null");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("the body is not JSON ({e}): {body}"))
}

/// Deletes a received message.
pub async fn delete(sdk: &SdkConfig, url: &str, message: &Message) {
    if let Some(handle) = message.receipt_handle() {
        must(
            aws_sdk_sqs::Client::new(sdk)
                .delete_message()
                .queue_url(url)
                .receipt_handle(handle)
                .send()
                .await,
            "DeleteMessage",
        );
    }
}

async fn receive_batch(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<Message> {
    must(
        sqs.receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .send()
            .await,
        "ReceiveMessage",
    )
    .messages
    .unwrap_or_default()
}

/// Sends `body` to `url` as it is.
pub async fn send(sdk: &SdkConfig, url: &str, body: &str) {
    must(
        aws_sdk_sqs::Client::new(sdk)
            .send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await,
        "SendMessage",
    );
}

/// The approximate number of (visible, in flight) messages in `url`.
pub async fn counts(sdk: &SdkConfig, url: &str) -> (u64, u64) {
    let out = must(
        aws_sdk_sqs::Client::new(sdk)
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await,
        "GetQueueAttributes",
    );
    let get = |name: QueueAttributeName| {
        out.attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (
        get(QueueAttributeName::ApproximateNumberOfMessages),
        get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

/// An event bus no other test uses; returns its name.
pub async fn bus(sdk: &SdkConfig) -> String {
    let name = unique_name("bus");
    must(
        aws_sdk_eventbridge::Client::new(sdk)
            .create_event_bus()
            .name(&name)
            .send()
            .await,
        "CreateEventBus",
    );
    name
}

/// A queue receiving every event on `bus` that matches `pattern`, through a rule of its
/// own (named as the queue).
pub async fn capture(sdk: &SdkConfig, bus: &str, pattern: &Value) -> Queue {
    let events = aws_sdk_eventbridge::Client::new(sdk);
    let queue = queue(sdk, "capture").await;
    must(
        events
            .put_rule()
            .name(&queue.name)
            .event_bus_name(bus)
            .event_pattern(pattern.to_string())
            .send()
            .await,
        "PutRule",
    );
    let target = must(
        aws_sdk_eventbridge::types::Target::builder()
            .id("capture")
            .arn(&queue.arn)
            .build(),
        "a rule target",
    );
    must(
        events
            .put_targets()
            .rule(&queue.name)
            .event_bus_name(bus)
            .targets(target)
            .send()
            .await,
        "PutTargets",
    );
    queue
}

/// The key of a table: a string partition key, and perhaps a string sort key.
#[derive(Debug, Clone, Copy)]
pub struct TableKey<'a> {
    pub partition: &'a str,
    pub sort: Option<&'a str>,
}

impl<'a> TableKey<'a> {
    /// A partition key alone.
    pub fn partition(name: &'a str) -> TableKey<'a> {
        TableKey {
            partition: name,
            sort: None,
        }
    }

    /// A partition key and a sort key.
    pub fn with_sort(partition: &'a str, sort: &'a str) -> TableKey<'a> {
        TableKey {
            partition,
            sort: Some(sort),
        }
    }
}

/// An on-demand DynamoDB table named after `prefix` that no other test uses; returns its
/// name.
pub async fn table(sdk: &SdkConfig, prefix: &str, key: TableKey<'_>) -> String {
    let name = unique_name(prefix);
    let mut request = aws_sdk_dynamodb::Client::new(sdk)
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest);
    let parts = [
        Some((key.partition, KeyType::Hash)),
        key.sort.map(|s| (s, KeyType::Range)),
    ];
    for (attribute, kind) in parts.into_iter().flatten() {
        request = request
            .attribute_definitions(must(
                AttributeDefinition::builder()
                    .attribute_name(attribute)
                    .attribute_type(ScalarAttributeType::S)
                    .build(),
                "an attribute definition",
            ))
            .key_schema(must(
                KeySchemaElement::builder()
                    .attribute_name(attribute)
                    .key_type(kind)
                    .build(),
                "a key schema element",
            ));
    }
    must(request.send().await, "CreateTable");
    name
}

/// A state machine running `definition` (ASL text), named after `prefix`; returns its ARN.
pub async fn state_machine(sdk: &SdkConfig, prefix: &str, definition: &str) -> String {
    must(
        aws_sdk_sfn::Client::new(sdk)
            .create_state_machine()
            .name(unique_name(prefix))
            .definition(definition)
            // moto checks no role: any ARN of the account will do.
            .role_arn(format!("arn:aws:iam::{ACCOUNT_ID}:role/fleet-test"))
            .send()
            .await,
        "CreateStateMachine",
    )
    .state_machine_arn
}

/// The value of a setup call, or a panic naming the call and the emulator's reason.
fn must<T, E>(result: Result<T, E>, what: impl Display) -> T
where
    E: std::error::Error,
{
    match result {
        Ok(value) => value,
        Err(e) => panic!("{what} failed: {}", DisplayErrorContext(&e)),
    }
}
