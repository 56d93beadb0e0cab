//! The webhook against the emulator, with a fault injected where a delivery can fail
//! halfway: the answers that need the table and Step Functions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_sfn::types::ExecutionStatus;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use axum::body::Body;
use axum::http::Request;
use callbacks::{Config, Deps, ProviderConfig, Secret, SecretSource, Store};
use contracts::BusEvent;
use contracts::callbacks::signature;
use emulator::testing::{self, TableKey};
use serde_json::{Value, json};
use tower::ServiceExt as _;

const LIMIT: Duration = Duration::from_secs(30);
const PROVIDER: &str = "acme";
const SECRET: &[u8] = b"whsec_it";

/// Fails every write of a `done` delivery record while armed: the delivery was applied
/// to its task, but the table never learns it.
#[derive(Debug, Clone, Default)]
struct LoseDeliveryRecord(Arc<AtomicBool>);

impl Intercept for LoseDeliveryRecord {
    fn name(&self) -> &'static str {
        "LoseDeliveryRecord"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let body = context.request().body().bytes().unwrap_or_default();
        let done = br#""state":{"S":"done"}"#;
        if self.0.load(Ordering::SeqCst) && body.windows(done.len()).any(|w| w == done) {
            return Err("injected: the delivery record's write was lost".into());
        }
        Ok(())
    }
}

/// Loses Step Functions' answer once while armed: the call was applied, the caller sees
/// an error (a timeout after the request went out).
#[derive(Debug, Clone, Default)]
struct LoseSfnAnswer(Arc<AtomicBool>);

impl Intercept for LoseSfnAnswer {
    fn name(&self) -> &'static str {
        "LoseSfnAnswer"
    }

    fn read_after_transmit(
        &self,
        _: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.0.swap(false, Ordering::SeqCst) {
            return Err("injected: Step Functions' answer was lost".into());
        }
        Ok(())
    }
}

struct Fixture {
    sdk: SdkConfig,
    deps: Arc<Deps>,
    lose_record: Arc<AtomicBool>,
    lose_answer: Arc<AtomicBool>,
    queue_url: String,
    execution: String,
    external_id: String,
}

/// A table shaped like the topology's callbacks table, the webhook's dependencies with
/// both faults ready (disarmed), and an execution that waits twice on one external id,
/// each wait's token sent to a queue (the test plays EventBridge and
/// `callbacks-awaited`).
async fn fixture() -> Fixture {
    let sdk = emulator::test_emulator().await.sdk_config();
    let table = testing::table(&sdk, "callbacks", TableKey::partition("pk")).await;
    let lose_record = LoseDeliveryRecord::default();
    let lose_answer = LoseSfnAnswer::default();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(lose_record.clone())
            .build(),
    );
    let sfn = aws_sdk_sfn::Client::from_conf(
        aws_sdk_sfn::config::Builder::from(&sdk)
            .interceptor(lose_answer.clone())
            .retry_config(aws_sdk_sfn::config::retry::RetryConfig::disabled())
            .build(),
    );
    let deps = Arc::new(Deps {
        store: Store::new(dynamodb, table),
        sfn,
        secrets: Arc::new(SecretSource::single(PROVIDER, Secret::new(SECRET))),
        config: Config {
            // An abandoned claim may be taken over within a second.
            claim_lease: Duration::ZERO,
            ..Config::default().with_provider(PROVIDER, ProviderConfig::default())
        },
    });

    let queue_url = testing::queue(&sdk, "waits").await.url;
    let wait = |next: Value| {
        let mut state = json!({
            "Type": "Task",
            "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "Parameters": {"QueueUrl": queue_url, "MessageBody": {"taskToken.$": "$$.Task.Token"}},
            "TimeoutSeconds": 300,
        });
        if let (Some(state), Some(next)) = (state.as_object_mut(), next.as_object()) {
            state.extend(next.clone());
        }
        state
    };
    let definition = json!({
        "StartAt": "First",
        "States": {
            "First": wait(json!({"ResultPath": "$.first", "Next": "Second"})),
            "Second": wait(json!({"ResultPath": "$.second", "End": true})),
        }
    });
    let machine = testing::state_machine(&sdk, "two-waits", &definition.to_string()).await;
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let execution = sfn
        .start_execution()
        .state_machine_arn(machine)
        .input("{}")
        .send()
        .await
        .expect("start the execution")
        .execution_arn;
    Fixture {
        sdk,
        deps,
        lose_record: lose_record.0,
        lose_answer: lose_answer.0,
        queue_url,
        execution,
        external_id: emulator::unique_name("ext"),
    }
}

impl Fixture {
    /// The next wait's token, registered as `callbacks-awaited` registers it.
    async fn next_wait(&self) -> String {
        let (message, token) = testing::receive_until(&self.sdk, &self.queue_url, LIMIT, |m| {
            let body: Value = serde_json::from_str(m.body()?).expect("the task is JSON");
            Some((m.clone(), body["taskToken"].as_str()?.to_string()))
        })
        .await;
        testing::delete(&self.sdk, &self.queue_url, &message).await;
        let event = BusEvent::from_json(
            &json!({
                "id": emulator::unique_name("event"),
                "detail-type": "CallbackAwaited",
                "source": "fleet.tests",
                "detail": {
                    "taskToken": token,
                    "provider": PROVIDER,
                    "externalId": self.external_id,
                    "timeoutSeconds": 300
                }
            })
            .to_string(),
        )
        .expect("a CallbackAwaited event");
        callbacks::handle_awaited(event, &self.deps.store)
            .await
            .expect("the token is registered");
        token
    }

    /// Posts a signed delivery, as the provider (and its retries) would.
    async fn deliver(&self, delivery_id: &str, status: &str) -> (u16, Value) {
        let body =
            json!({"deliveryId": delivery_id, "externalId": self.external_id, "status": status})
                .to_string();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let request = Request::post(format!("/callbacks/{PROVIDER}"))
            .header(
                signature::HEADER,
                signature::sign(SECRET, now, body.as_bytes()),
            )
            .body(Body::from(body))
            .expect("a request");
        let response = callbacks::app(self.deps.clone())
            .oneshot(request)
            .await
            .unwrap_or_else(|e| match e {});
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("the answer");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// The provider retrying `delivery_id` until the webhook stops answering "in
    /// progress" (the abandoned claim's lease runs out within a second).
    async fn retry(&self, delivery_id: &str, status: &str) -> (u16, Value) {
        within("the abandoned claim's lease to run out", || async {
            let answer = self.deliver(delivery_id, status).await;
            (answer.0 != 409).then_some(answer)
        })
        .await
    }

    async fn waiting_token(&self) -> Option<String> {
        self.deps
            .store
            .token(PROVIDER, &self.external_id)
            .await
            .expect("read the token")
    }

    async fn status(&self) -> ExecutionStatus {
        aws_sdk_sfn::Client::new(&self.sdk)
            .describe_execution()
            .execution_arn(&self.execution)
            .send()
            .await
            .expect("describe the execution")
            .status
    }

    /// Ends the execution with a fresh delivery and returns its output.
    async fn finish(&self) -> Value {
        assert_eq!(
            self.deliver("d-2", "sent").await,
            (200, json!({"outcome": "accepted"}))
        );
        let sfn = aws_sdk_sfn::Client::new(&self.sdk);
        let output = within("the execution to succeed", || async {
            let d = sfn
                .describe_execution()
                .execution_arn(&self.execution)
                .send()
                .await
                .expect("describe the execution");
            (d.status == ExecutionStatus::Succeeded).then(|| d.output.unwrap_or_default())
        })
        .await;
        serde_json::from_str(&output).expect("the output is JSON")
    }
}

/// Polls `probe` until it gives a value, failing the test after [`LIMIT`].
async fn within<T, F: Future<Output = Option<T>>>(what: &str, probe: impl FnMut() -> F) -> T {
    testing::wait_for(what, LIMIT, probe).await
}

#[tokio::test]
async fn a_retry_after_the_delivery_record_was_lost_does_not_resume_the_next_wait() {
    let f = fixture().await;
    let first = f.next_wait().await;

    // d-1 resumes the first wait, but its record is never written: 503, and the
    // provider will retry.
    f.lose_record.store(true, Ordering::SeqCst);
    assert_eq!(
        f.deliver("d-1", "first").await,
        (503, json!({"error": "unavailable"}))
    );
    f.lose_record.store(false, Ordering::SeqCst);

    // The machine has moved on to its second wait, on the same external id.
    let second = f.next_wait().await;
    assert_ne!(first, second);

    // The retry of d-1 must not resume it: d-1 was for the first wait.
    assert_eq!(
        f.retry("d-1", "first").await,
        (200, json!({"outcome": "duplicate"}))
    );
    assert_eq!(f.status().await, ExecutionStatus::Running);
    assert_eq!(
        f.waiting_token().await,
        Some(second),
        "the second wait waits on"
    );
    // And from now on it is a plain duplicate.
    assert_eq!(
        f.deliver("d-1", "first").await,
        (200, json!({"outcome": "duplicate"}))
    );

    let output = f.finish().await;
    assert_eq!(output["first"]["deliveryId"], "d-1");
    assert_eq!(output["second"]["deliveryId"], "d-2");
}

#[tokio::test]
async fn a_retry_after_step_functions_answer_was_lost_does_not_resume_the_next_wait() {
    let f = fixture().await;
    f.next_wait().await;

    // Step Functions applies d-1 to the first wait, but its answer is lost: 503.
    f.lose_answer.store(true, Ordering::SeqCst);
    assert_eq!(
        f.deliver("d-1", "first").await,
        (503, json!({"error": "unavailable"}))
    );
    let second = f.next_wait().await;

    assert_eq!(
        f.retry("d-1", "first").await,
        (200, json!({"outcome": "duplicate"}))
    );
    assert_eq!(f.status().await, ExecutionStatus::Running);
    assert_eq!(f.waiting_token().await, Some(second));

    let output = f.finish().await;
    assert_eq!(output["first"]["deliveryId"], "d-1");
    assert_eq!(output["second"]["deliveryId"], "d-2");
}

#[tokio::test]
async fn a_delivery_before_its_wait_is_registered_reaches_it_on_retry() {
    let f = fixture().await;
    // Nothing waits yet (the token is on its way): 404, and nothing is recorded.
    assert_eq!(
        f.deliver("d-1", "first").await,
        (404, json!({"error": "not found"}))
    );
    f.next_wait().await;
    assert_eq!(
        f.deliver("d-1", "first").await,
        (200, json!({"outcome": "accepted"}))
    );
    f.next_wait().await;
    let output = f.finish().await;
    assert_eq!(output["first"]["deliveryId"], "d-1");
}

/// A claim whose answer was lost is sent again by the SDK's retry: that second, identical
/// write is the same claim, not another applier's (which would answer the provider "busy"
/// until the lease ran out). Another token's claim of the delivery still is busy.
#[tokio::test]
async fn the_same_delivery_claim_written_twice_is_one_claim() {
    let sdk = emulator::test_emulator().await.sdk_config();
    let table = testing::table(&sdk, "callbacks", TableKey::partition("pk")).await;
    let store = Store::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    let now = time::OffsetDateTime::now_utc();
    let (lease, expires) = (
        now + Duration::from_secs(30),
        now + Duration::from_secs(3600),
    );
    for _ in 0..2 {
        let claim = store
            .claim("fake", "d-1", "token-1", lease, expires)
            .await
            .unwrap();
        assert_eq!(claim, callbacks::store::Claim::Claimed);
    }
    let other = store
        .claim("fake", "d-1", "token-2", lease, expires)
        .await
        .unwrap();
    assert_eq!(other, callbacks::store::Claim::Busy);
}
