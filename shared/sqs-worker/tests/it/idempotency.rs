//! Idempotency records in DynamoDB: completed work is not run again.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use emulator::testing::{self, TableKey, wait_until};
use sqs_worker::{
    Config, Delivery, Handler, HandlerError, IdempotencyConfig, IdempotencyKey, JobContext,
};

use crate::{Recorder, queues, start};

/// Keys each message by its body.
struct ByBody(Recorder);

impl Handler for ByBody {
    async fn handle(&self, delivery: Delivery, ctx: JobContext) -> Result<(), HandlerError> {
        self.0.handle(delivery, ctx).await
    }

    fn idempotency_key(&self, delivery: &Delivery) -> Option<IdempotencyKey> {
        Some(IdempotencyKey::new(delivery.body.clone()))
    }
}

async fn table() -> (aws_sdk_dynamodb::Client, String) {
    let sdk = emulator::test_emulator().await.sdk_config();
    let name = testing::table(&sdk, "jobs", TableKey::partition("jobId")).await;
    (aws_sdk_dynamodb::Client::new(&sdk), name)
}

#[tokio::test]
async fn a_message_for_a_completed_key_is_acknowledged_without_running() {
    let q = queues(30, 3).await;
    let (dynamo, table) = table().await;
    let handler = Recorder::new(|_| (Duration::from_millis(50), Ok(())));
    let worker = start(
        Config {
            idempotency: Some(IdempotencyConfig::new(&table, "jobId")),
            ..q.config()
        },
        ByBody(handler.clone()),
    )
    .await;
    q.send("job-1").await;
    wait_until(
        "first delivery handled",
        Duration::from_secs(20),
        || async { worker.metrics.snapshot().succeeded == 1 },
    )
    .await;
    q.send("job-1").await;
    q.send("job-2").await;
    wait_until("the rest settled", Duration::from_secs(20), || async {
        let s = worker.metrics.snapshot();
        s.succeeded == 2 && s.duplicates == 1 && q.counts(&q.queue).await == (0, 0)
    })
    .await;
    worker.stop().await;
    assert_eq!(handler.count("job-1"), 1);
    assert_eq!(handler.count("job-2"), 1);

    let record = dynamo
        .get_item()
        .table_name(&table)
        .key("jobId", AttributeValue::S("job-1".into()))
        .send()
        .await
        .unwrap();
    let item = record.item().expect("a record for job-1");
    assert_eq!(item["status"].as_s().unwrap(), "completed");
    assert!(item.contains_key("expiresAt"));
}

#[tokio::test]
async fn an_older_attempt_never_displaces_a_newer_one_in_dynamodb() {
    use sqs_worker::idempotency::{Claim, DynamoStore, IdempotencyStore};

    let (dynamo, table) = table().await;
    let store = DynamoStore::new(dynamo.clone(), IdempotencyConfig::new(&table, "jobId"));
    let lease = Duration::from_secs(30);
    let older = IdempotencyKey::with_attempt("job-1", "token-a").ordered(1);
    let newer = IdempotencyKey::with_attempt("job-1", "token-b").ordered(2);
    assert_eq!(
        store.acquire(&newer, "w2", lease).await,
        Ok(Claim::Acquired)
    );
    assert_eq!(
        store.acquire(&older, "w1", lease).await,
        Ok(Claim::Superseded)
    );
    assert_eq!(store.renew(&newer, "w2", lease).await, Ok(true));
    assert_eq!(store.complete(&newer, "w2").await, Ok(true));
    assert_eq!(
        store.acquire(&older, "w1", lease).await,
        Ok(Claim::Superseded)
    );
    let record = dynamo
        .get_item()
        .table_name(&table)
        .key("jobId", AttributeValue::S("job-1".into()))
        .send()
        .await
        .unwrap();
    let item = record.item().expect("a record for job-1");
    assert_eq!(item["attempt"].as_s().unwrap(), "token-b");
    assert_eq!(item["status"].as_s().unwrap(), "completed");

    // A newer attempt still supersedes; the one it displaced can no longer renew.
    let newest = IdempotencyKey::with_attempt("job-1", "token-c").ordered(3);
    assert_eq!(
        store.acquire(&newest, "w3", lease).await,
        Ok(Claim::Acquired)
    );
    assert_eq!(store.renew(&newer, "w2", lease).await, Ok(false));
    // A release gives the key back at once.
    store.release(&newest, "w3").await.unwrap();
    assert_eq!(
        store.acquire(&newest, "w4", lease).await,
        Ok(Claim::Acquired)
    );
}
