//! The campaigns service's handlers against the emulator.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_sfn::types::ExecutionStatus;
use campaigns::fake::{FakeConfig, FakeProvider};
use campaigns::{Campaigns, SendDeps};
use contracts::BusEvent;
use contracts::campaigns::{CampaignAccepted, SEND_REQUESTED};
use emulator::testing::{self, TableKey};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(30);

async fn sdk() -> SdkConfig {
    emulator::test_emulator().await.sdk_config()
}

/// A table shaped like the topology's campaigns table (key `pk`).
async fn table(sdk: &SdkConfig) -> String {
    testing::table(sdk, "campaigns", TableKey::partition("pk")).await
}

/// An execution waiting on a task token, as the campaign-delivery machine's `AskProvider`
/// waits (the token goes to a queue here: the test plays EventBridge). Returns the
/// execution's ARN and the token.
async fn waiting_task(sdk: &SdkConfig) -> (String, String) {
    let queue_url = testing::queue(sdk, "ask-provider").await.url;
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
    let machine = testing::state_machine(sdk, "campaign-delivery", &definition.to_string()).await;
    let sfn = aws_sdk_sfn::Client::new(sdk);
    let execution = sfn
        .start_execution()
        .state_machine_arn(machine)
        .send()
        .await
        .expect("start the execution")
        .execution_arn;
    let token = testing::receive_until(sdk, &queue_url, LIMIT, |m| {
        let body: Value = serde_json::from_str(m.body()?).expect("the task is JSON");
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
    testing::wait_for("the execution to end", LIMIT, || async {
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
    let deps = SendDeps::new(&sdk, Campaigns::new(&sdk, &table), provider.url());
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
