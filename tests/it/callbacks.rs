//! Signed webhooks resuming state machines, on the local stack `fleet dev` runs
//! (in-process here): the campaign-delivery flow end to end with the fake provider, and
//! the webhook's refusals (bad signature, stale timestamp, replay) changing nothing.

use std::time::Duration;

use crate::support::{stack, until};
use aws_sdk_sfn::types::ExecutionStatus;
use contracts::Envelope;
use contracts::callbacks::signature;
use contracts::campaigns::CampaignRequested;
use fleet::dev::{FAKE_PROVIDER, Stack};
use serde_json::{Value, json};

async fn execution_status(sfn: &aws_sdk_sfn::Client, arn: &str) -> ExecutionStatus {
    sfn.describe_execution()
        .execution_arn(arn)
        .send()
        .await
        .unwrap()
        .status
}

fn execution_arn(stack: &Stack, machine: &str, name: &str) -> String {
    let machine_arn = stack.report.state_machine_arn(machine).unwrap();
    format!(
        "{}:{name}",
        machine_arn.replacen(":stateMachine:", ":execution:", 1)
    )
}

#[tokio::test]
async fn a_campaign_goes_pending_pending_sent_through_signed_webhooks() {
    let stack = stack().await;
    let campaign_id = emulator::unique_name("campaign");
    let publisher = bus::Publisher::from_sdk(&stack.sdk, stack.topology.names().bus());
    publisher
        .publish(&Envelope::new(
            CampaignRequested {
                campaign_id: campaign_id.clone(),
                subject: "Spring sale".into(),
                audience: vec!["ada".into(), "grace".into()],
            },
            "e2e",
        ))
        .await
        .unwrap();

    let sfn = aws_sdk_sfn::Client::new(&stack.sdk);
    let arn = execution_arn(&stack, "campaign-delivery", &campaign_id);
    let (sfn, arn) = (&sfn, &arn);
    let status = until(
        "the campaign's execution to end",
        Duration::from_secs(90),
        move || async move {
            match sfn.describe_execution().execution_arn(arn).send().await {
                Ok(d) if d.status != ExecutionStatus::Running => Some(d.status),
                _ => None,
            }
        },
    )
    .await;
    assert_eq!(status, ExecutionStatus::Succeeded);

    // The provider reported pending, pending, sent; each was accepted once. The fake
    // records an answer only once it has it, which may be after the execution ended.
    let provider = &stack.provider;
    let accepted: Vec<String> = until(
        "the provider to record the answer to its last delivery",
        Duration::from_secs(10),
        move || async move {
            let attempts = provider.attempts();
            attempts
                .iter()
                .any(|a| a.status == "sent" && a.answered.is_some())
                .then(|| {
                    attempts
                        .into_iter()
                        .filter(|a| a.answered == Some(200))
                        .map(|a| a.status)
                        .collect()
                })
        },
    )
    .await;
    assert_eq!(accepted, ["pending", "pending", "sent"]);

    // The flow looped: one wait per webhook.
    let history = sfn
        .get_execution_history()
        .execution_arn(arn)
        .max_results(1000)
        .send()
        .await
        .unwrap();
    let waits = history
        .events()
        .iter()
        .filter_map(|e| e.state_entered_event_details())
        .filter(|d| d.name() == "AwaitStatus")
        .count();
    assert_eq!(waits, 3, "AwaitStatus entered once per status");

    // "Update users": CampaignSent reached the campaigns service.
    let deps = campaigns::Campaigns::new(&stack.sdk, stack.topology.names().table("campaigns"));
    let (deps, campaign_id) = (&deps, &campaign_id);
    let (status, provider_id) = until(
        "the campaign to be SENT",
        Duration::from_secs(30),
        move || async move {
            campaigns::campaign(deps, campaign_id)
                .await
                .unwrap()
                .filter(|(status, _)| status == "SENT")
        },
    )
    .await;
    assert_eq!(status, "SENT");
    assert!(provider_id.unwrap().starts_with("fake-"));
    for user in ["ada", "grace"] {
        assert_eq!(
            campaigns::last_campaign_of(deps, user).await.unwrap(),
            Some(campaign_id.clone())
        );
    }
    stack.stop().await;
}

/// A machine that waits twice on the same external id, through the callbacks service.
fn two_waits(bus: &str, external_id: &str) -> Value {
    let wait = |next: Value| {
        let mut state = json!({
            "Type": "Task",
            "Resource": "arn:aws:states:::events:putEvents.waitForTaskToken",
            "Parameters": {"Entries": [{
                "EventBusName": bus,
                "Source": "fleet.tests",
                "DetailType": "CallbackAwaited",
                "Detail": {
                    "taskToken.$": "$$.Task.Token",
                    "provider": FAKE_PROVIDER,
                    "externalId": external_id,
                    "timeoutSeconds": 300
                }
            }]},
            "TimeoutSeconds": 300,
        });
        let obj = state.as_object_mut().unwrap();
        for (k, v) in next.as_object().unwrap() {
            obj.insert(k.clone(), v.clone());
        }
        state
    };
    json!({
        "StartAt": "First",
        "States": {
            "First": wait(json!({"ResultPath": "$.first", "Next": "Second"})),
            "Second": wait(json!({"ResultPath": "$.second", "End": true})),
        }
    })
}

#[tokio::test]
async fn bad_signatures_stale_timestamps_and_replays_are_refused_and_change_nothing() {
    let stack = stack().await;
    let sfn = aws_sdk_sfn::Client::new(&stack.sdk);
    let names = stack.topology.names();
    let external_id = emulator::unique_name("ext");
    let machine = sfn
        .create_state_machine()
        .name(emulator::unique_name("two-waits"))
        .definition(two_waits(&names.bus(), &external_id).to_string())
        .role_arn(format!("arn:aws:iam::{}:role/test", emulator::ACCOUNT_ID))
        .send()
        .await
        .unwrap()
        .state_machine_arn;
    let execution = sfn
        .start_execution()
        .state_machine_arn(&machine)
        .input("{}")
        .send()
        .await
        .unwrap()
        .execution_arn;
    let store = callbacks::Store::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        names.table("callbacks"),
    );
    let (sfn, store, external_id, execution) = (&sfn, &store, &external_id, &execution);
    let first_token = until(
        "the first token",
        Duration::from_secs(30),
        move || async move { store.token(FAKE_PROVIDER, external_id).await.unwrap() },
    )
    .await;

    let http = reqwest::Client::new();
    let url = format!("http://{}/callbacks/{FAKE_PROVIDER}", stack.http_addr);
    let secret = stack.provider.secret().to_vec();
    let body = |delivery_id: &str, status: &str| {
        json!({"deliveryId": delivery_id, "externalId": external_id, "status": status}).to_string()
    };
    let post = |header: String, body: String| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let r = http
                .post(&url)
                .header(signature::HEADER, header)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let now = || time::OffsetDateTime::now_utc().unix_timestamp();
    let unchanged = |stage: &'static str| {
        let sfn = sfn.clone();
        let store = store.clone();
        let execution = execution.clone();
        let external_id = external_id.clone();
        let expected = first_token.clone();
        async move {
            assert_eq!(
                execution_status(&sfn, &execution).await,
                ExecutionStatus::Running,
                "{stage}"
            );
            assert_eq!(
                store.token(FAKE_PROVIDER, &external_id).await.unwrap(),
                Some(expected),
                "{stage}: the token is still waiting"
            );
        }
    };

    // A bad signature: signed with another secret.
    let b = body("d-bad", "done");
    let answer = post(signature::sign(b"not-the-secret", now(), b.as_bytes()), b).await;
    assert_eq!(answer, (401, json!({"error": "invalid signature"})));
    unchanged("bad signature").await;

    // A tampered body under a valid signature.
    let b = body("d-tampered", "done");
    let header = signature::sign(&secret, now(), b.as_bytes());
    let answer = post(header, b.replace("done", "sent")).await;
    assert_eq!(answer.0, 401);
    unchanged("tampered body").await;

    // A stale timestamp, correctly signed.
    let b = body("d-stale", "done");
    let answer = post(signature::sign(&secret, now() - 6 * 60, b.as_bytes()), b).await;
    assert_eq!(answer, (401, json!({"error": "stale timestamp"})));
    unchanged("stale timestamp").await;

    // An unknown id: 404, and the body says nothing more.
    let b = json!({"deliveryId": "d-x", "externalId": "nobody", "status": "done"}).to_string();
    let answer = post(signature::sign(&secret, now(), b.as_bytes()), b).await;
    assert_eq!(answer, (404, json!({"error": "not found"})));
    unchanged("unknown id").await;

    // A good delivery resumes the first wait...
    let b = body("d-1", "done");
    let header = signature::sign(&secret, now(), b.as_bytes());
    let answer = post(header.clone(), b.clone()).await;
    assert_eq!(answer, (200, json!({"outcome": "accepted"})));
    let first = &first_token;
    let second_token = until(
        "the second token",
        Duration::from_secs(30),
        move || async move {
            store
                .token(FAKE_PROVIDER, external_id)
                .await
                .unwrap()
                .filter(|t| t != first)
        },
    )
    .await;

    // ...and replaying it, byte for byte, is refused: the second wait is not resumed.
    let answer = post(header, b).await;
    assert_eq!(answer, (200, json!({"outcome": "duplicate"})));
    assert_eq!(
        execution_status(sfn, execution).await,
        ExecutionStatus::Running
    );
    assert_eq!(
        store.token(FAKE_PROVIDER, external_id).await.unwrap(),
        Some(second_token),
        "the replay spent no token"
    );

    // A new delivery ends the execution, with what the webhook said.
    let b = body("d-2", "sent");
    let answer = post(signature::sign(&secret, now(), b.as_bytes()), b).await;
    assert_eq!(answer, (200, json!({"outcome": "accepted"})));
    let output = until(
        "the execution to succeed",
        Duration::from_secs(30),
        move || async move {
            let d = sfn
                .describe_execution()
                .execution_arn(execution)
                .send()
                .await
                .unwrap();
            (d.status == ExecutionStatus::Succeeded).then(|| d.output.unwrap_or_default())
        },
    )
    .await;
    let output: Value = serde_json::from_str(&output).unwrap();
    assert_eq!(output["first"]["status"], "done");
    assert_eq!(output["first"]["deliveryId"], "d-1");
    assert_eq!(output["second"]["status"], "sent");
    stack.stop().await;
}

#[tokio::test]
async fn a_campaign_the_provider_reports_failed_ends_failed() {
    let stack = stack().await;
    stack.provider.set_script(&["pending", "failed"]);
    let campaign_id = emulator::unique_name("campaign");
    let publisher = bus::Publisher::from_sdk(&stack.sdk, stack.topology.names().bus());
    publisher
        .publish(&Envelope::new(
            CampaignRequested {
                campaign_id: campaign_id.clone(),
                subject: "Doomed".into(),
                audience: vec!["linus".into()],
            },
            "e2e",
        ))
        .await
        .unwrap();
    let sfn = aws_sdk_sfn::Client::new(&stack.sdk);
    let arn = execution_arn(&stack, "campaign-delivery", &campaign_id);
    let (sfn, arn) = (&sfn, &arn);
    let described = until(
        "the campaign's execution to end",
        Duration::from_secs(90),
        move || async move {
            match sfn.describe_execution().execution_arn(arn).send().await {
                Ok(d) if d.status != ExecutionStatus::Running => Some(d),
                _ => None,
            }
        },
    )
    .await;
    assert_eq!(described.status, ExecutionStatus::Failed);
    assert_eq!(described.error.as_deref(), Some("Campaign.Failed"));

    let deps = campaigns::Campaigns::new(&stack.sdk, stack.topology.names().table("campaigns"));
    let (deps, campaign_id) = (&deps, &campaign_id);
    until(
        "the campaign to be FAILED",
        Duration::from_secs(30),
        move || async move {
            campaigns::campaign(deps, campaign_id)
                .await
                .unwrap()
                .filter(|(status, _)| status == "FAILED")
        },
    )
    .await;
    assert_eq!(
        campaigns::last_campaign_of(deps, "linus").await.unwrap(),
        None,
        "no user is updated for a failed campaign"
    );
    stack.stop().await;
}
