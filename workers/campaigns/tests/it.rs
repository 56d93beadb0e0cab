//! The campaigns service's handlers against the emulator.

use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_sfn::types::ExecutionStatus;
use campaigns::fake::{FakeConfig, FakeProvider};
use campaigns::{Deps, ProviderConfig};
use contracts::BusEvent;
use contracts::campaigns::{CampaignAccepted, SEND_REQUESTED};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(30);

async fn sdk() -> SdkConfig {
    emulator::test_emulator().await.sdk_config()
}

/// A table shaped like the topology's campaigns table (key `pk`).
async fn table(sdk: &SdkConfig) -> String {
    let name = emulator::unique_name("campaigns");
    aws_sdk_dynamodb::Client::new(sdk)
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .expect("key schema"),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute definition"),
        )
        .send()
        .await
        .expect("create the campaigns table");
    name
}

/// An execution waiting on a task token, as the campaign-delivery machine's `AskProvider`
/// waits (the token goes to a queue here: the test plays EventBridge). Returns the
/// execution's ARN and the token.
async fn waiting_task(sdk: &SdkConfig) -> (String, String) {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let queue_url = sqs
        .create_queue()
        .queue_name(emulator::unique_name("ask-provider"))
        .send()
        .await
        .expect("create the queue")
        .queue_url
        .expect("a queue url");
    let definition = json!({
        "StartAt": "AskProvider",
        "States": {"AskProvider": {
            "Type": "Task",
            "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "Parameters": {"QueueUrl": queue_url, "MessageBody": {"taskToken.$": "$$.Task.Token"}},
            "HeartbeatSeconds": 120,
            "End": true
        }}
    });
    let sfn = aws_sdk_sfn::Client::new(sdk);
    let machine = sfn
        .create_state_machine()
        .name(emulator::unique_name("campaign-delivery"))
        .definition(definition.to_string())
        .role_arn(format!("arn:aws:iam::{}:role/test", emulator::ACCOUNT_ID))
        .send()
        .await
        .expect("create the state machine")
        .state_machine_arn;
    let execution = sfn
        .start_execution()
        .state_machine_arn(machine)
        .send()
        .await
        .expect("start the execution")
        .execution_arn;
    let token = within("a task on the queue", || async {
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        let body = received.messages().first()?.body()?;
        let body: Value = serde_json::from_str(body).expect("the task is JSON");
        Some(
            body["taskToken"]
                .as_str()
                .expect("a task token")
                .to_string(),
        )
    })
    .await;
    (execution, token)
}

/// The execution's output once it has ended.
async fn ended(sdk: &SdkConfig, execution: &str) -> (ExecutionStatus, Option<String>) {
    let sfn = aws_sdk_sfn::Client::new(sdk);
    within("the execution to end", || async {
        let out = sfn
            .describe_execution()
            .execution_arn(execution)
            .send()
            .await
            .expect("describe the execution");
        (out.status() != &ExecutionStatus::Running)
            .then(|| (out.status().clone(), out.output().map(ToString::to_string)))
    })
    .await
}

/// Polls `probe` until it gives a value, failing the test after [`LIMIT`].
async fn within<T, F: Future<Output = Option<T>>>(what: &str, mut probe: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "waited {LIMIT:?} for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn send_requested(token: &str, campaign_id: &str) -> BusEvent {
    BusEvent::from_json(
        &json!({
            "id": emulator::unique_name("event"),
            "detail-type": SEND_REQUESTED,
            "source": "fleet.campaigns",
            "detail": {
                "taskToken": token,
                "campaignId": campaign_id,
                "subject": "Spring news",
                "audience": ["alice", "bob"]
            }
        })
        .to_string(),
    )
    .expect("a CampaignSendRequested event")
}

#[tokio::test]
async fn a_repeated_send_request_answers_once_and_succeeds_again() {
    let sdk = sdk().await;
    let table = table(&sdk).await;
    let mut config = FakeConfig::new("fake", b"secret");
    config.script = Vec::new();
    let provider = FakeProvider::start(config)
        .await
        .expect("the fake provider starts");
    let deps = Deps::new(&sdk, &table).with_provider(ProviderConfig {
        name: "fake".to_string(),
        url: provider.url(),
    });
    let (execution, token) = waiting_task(&sdk).await;
    let campaign_id = emulator::unique_name("campaign");
    let event = send_requested(&token, &campaign_id);

    campaigns::handle_send_requested(event.clone(), &deps)
        .await
        .expect("the first delivery answers the task");
    let (status, output) = ended(&sdk, &execution).await;
    assert_eq!(status, ExecutionStatus::Succeeded);
    let accepted: CampaignAccepted =
        serde_json::from_str(output.as_deref().expect("an output")).expect("CampaignAccepted");

    // EventBridge and asynchronous invocation deliver at least once: the same event again
    // finds the task settled. That is no failure (nothing for the dead letter), and the
    // provider was asked for one campaign, not two.
    campaigns::handle_send_requested(event, &deps)
        .await
        .expect("a repeated delivery is not an error");
    assert_eq!(
        provider.campaigns(),
        vec![accepted.provider_campaign_id.clone()]
    );
    let recorded = aws_sdk_dynamodb::Client::new(&sdk)
        .get_item()
        .table_name(&table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("campaign#{campaign_id}")),
        )
        .send()
        .await
        .expect("get the campaign");
    let id = recorded
        .item()
        .and_then(|item| item.get("providerCampaignId"))
        .and_then(|v| v.as_s().ok());
    assert_eq!(id, Some(&accepted.provider_campaign_id));
    provider.stop().await;
}
