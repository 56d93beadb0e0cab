//! Idempotency records: which keys are being worked on (a lease) and which are done.
//!
//! A record per key, in DynamoDB:
//!
//! | attribute | value |
//! | --- | --- |
//! | *partition key* | the key (attribute name from [`IdempotencyConfig::key_attribute`]) |
//! | `status` | `in-progress` or `completed` |
//! | `owner` | who holds the lease: worker id and message id |
//! | `attempt` | [`IdempotencyKey::attempt`] |
//! | `sequence` | [`IdempotencyKey::sequence`]: orders the attempts |
//! | `leaseExpiresAt` | epoch milliseconds; renewed with the message's visibility |
//! | `expiresAt` | epoch seconds; the table's TTL attribute |
//!
//! Every write is conditional. A worker takes a key when there is no record, when the
//! record is for another attempt of no higher sequence, or when it is in progress under an
//! expired lease or under its own ownership. A completed record of the same attempt means
//! "acknowledge without running", and so does a record of a newer attempt (a higher
//! sequence): an older attempt never displaces a newer one. A live lease elsewhere means
//! "put the message back for a while".

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use futures::future::BoxFuture;

use crate::config::IdempotencyConfig;
use crate::handler::IdempotencyKey;

const IN_PROGRESS: &str = "in-progress";
const COMPLETED: &str = "completed";

/// The result of trying to take a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This worker holds the lease: run the handler.
    Acquired,
    /// The same attempt already completed: acknowledge without running.
    Completed,
    /// Another worker holds a live lease, which lapses in `lease_left`.
    HeldElsewhere { lease_left: Duration },
    /// The record belongs to a newer attempt (a higher [`IdempotencyKey::sequence`]):
    /// acknowledge without running; nobody waits for this attempt any more.
    Superseded,
}

/// The store could not be reached or answered with an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("idempotency store {operation} failed: {message}")]
pub struct StoreError {
    pub operation: &'static str,
    pub message: String,
}

/// The port to the idempotency records. Futures are boxed so the runtime can hold any
/// store behind one pointer.
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Takes `key` for `owner` with a lease of `lease`.
    fn acquire<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Claim, StoreError>>;

    /// Extends the lease; `Ok(false)` when `owner` no longer holds it.
    fn renew<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Marks the key completed; `Ok(false)` when `owner` no longer held it.
    fn complete<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Gives the lease up without completing (the handler failed or the worker stops),
    /// so the next delivery can take the key at once.
    fn release<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// A shared store is a store: tests keep an `Arc` to look at the records the worker uses.
impl<S: IdempotencyStore> IdempotencyStore for std::sync::Arc<S> {
    fn acquire<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        (**self).acquire(key, owner, lease)
    }

    fn renew<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        (**self).renew(key, owner, lease)
    }

    fn complete<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        (**self).complete(key, owner)
    }

    fn release<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).release(key, owner)
    }
}

/// Idempotency records in a DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    config: IdempotencyConfig,
}

impl DynamoStore {
    pub fn new(client: aws_sdk_dynamodb::Client, config: IdempotencyConfig) -> Self {
        DynamoStore { client, config }
    }

    pub fn from_sdk(sdk: &aws_config::SdkConfig, config: IdempotencyConfig) -> Self {
        DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), config)
    }

    fn key(&self, key: &IdempotencyKey) -> (String, AttributeValue) {
        (
            self.config.key_attribute.clone(),
            AttributeValue::S(key.key.clone()),
        )
    }

    fn error<E: ProvideErrorMetadata + std::error::Error + 'static>(
        operation: &'static str,
        e: &aws_sdk_dynamodb::error::SdkError<E>,
    ) -> StoreError {
        StoreError {
            operation,
            message: DisplayErrorContext(e).to_string(),
        }
    }

    fn claim_from(key: &IdempotencyKey, item: Option<&HashMap<String, AttributeValue>>) -> Claim {
        let Some(item) = item else {
            // The record vanished between the write and the read: try again shortly.
            return Claim::HeldElsewhere {
                lease_left: Duration::ZERO,
            };
        };
        let attempt = item.get("attempt").and_then(|v| v.as_s().ok());
        let sequence = item
            .get("sequence")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        if attempt != Some(&key.attempt) {
            // The write refuses another attempt only when the record's is newer; a record
            // that changed between the write and the read is judged by the same rule.
            return if sequence > key.sequence {
                Claim::Superseded
            } else {
                Claim::HeldElsewhere {
                    lease_left: Duration::ZERO,
                }
            };
        }
        let status = item.get("status").and_then(|v| v.as_s().ok());
        if status.map(String::as_str) == Some(COMPLETED) {
            return Claim::Completed;
        }
        let lease_until = item
            .get("leaseExpiresAt")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        Claim::HeldElsewhere {
            lease_left: Duration::from_millis(lease_until.saturating_sub(now_millis())),
        }
    }

    async fn acquire_impl(
        &self,
        key: &IdempotencyKey,
        owner: &str,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let now = now_millis();
        let lease_until = now + millis(lease);
        let expires_at = now / 1000 + self.config.completed_ttl.as_secs();
        let (key_name, key_value) = self.key(key);
        let result = self
            .client
            .put_item()
            .table_name(&self.config.table)
            .item(&key_name, key_value.clone())
            .item("status", AttributeValue::S(IN_PROGRESS.to_string()))
            .item("owner", AttributeValue::S(owner.to_string()))
            .item("attempt", AttributeValue::S(key.attempt.clone()))
            .item("sequence", AttributeValue::N(key.sequence.to_string()))
            .item("leaseExpiresAt", AttributeValue::N(lease_until.to_string()))
            .item("expiresAt", AttributeValue::N(expires_at.to_string()))
            .condition_expression(
                "attribute_not_exists(#k) \
                 OR (#attempt <> :attempt AND (attribute_not_exists(#seq) OR #seq <= :seq)) \
                 OR (#attempt = :attempt AND #status = :in_progress \
                     AND (#owner = :owner OR #lease < :now))",
            )
            .expression_attribute_names("#k", &key_name)
            .expression_attribute_names("#attempt", "attempt")
            .expression_attribute_names("#seq", "sequence")
            .expression_attribute_values(":seq", AttributeValue::N(key.sequence.to_string()))
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#lease", "leaseExpiresAt")
            .expression_attribute_values(":attempt", AttributeValue::S(key.attempt.clone()))
            .expression_attribute_values(":in_progress", AttributeValue::S(IN_PROGRESS.to_string()))
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::Acquired),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                    if failed.item().is_some() {
                        return Ok(Self::claim_from(key, failed.item()));
                    }
                    // Not every implementation returns the old item; read it.
                    let out = self
                        .client
                        .get_item()
                        .table_name(&self.config.table)
                        .key(key_name, key_value)
                        .consistent_read(true)
                        .send()
                        .await
                        .map_err(|e| Self::error("GetItem", &e))?;
                    Ok(Self::claim_from(key, out.item()))
                }
                _ => Err(Self::error("PutItem", &e)),
            },
        }
    }

    /// A conditional write that only the current owner of `key`'s attempt may make;
    /// `Ok(false)` when the condition failed.
    async fn owned_update(
        &self,
        operation: &'static str,
        key: &IdempotencyKey,
        owner: &str,
        update: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<bool, StoreError> {
        let (key_name, key_value) = self.key(key);
        let mut request = self
            .client
            .update_item()
            .table_name(&self.config.table)
            .key(key_name, key_value)
            .update_expression(update)
            .condition_expression(
                "#owner = :owner AND #attempt = :attempt AND #status = :in_progress",
            )
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#attempt", "attempt")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_string()))
            .expression_attribute_values(":attempt", AttributeValue::S(key.attempt.clone()))
            .expression_attribute_values(
                ":in_progress",
                AttributeValue::S(IN_PROGRESS.to_string()),
            );
        if update.contains("#lease") {
            request = request.expression_attribute_names("#lease", "leaseExpiresAt");
        }
        if update.contains("#expires") {
            request = request.expression_attribute_names("#expires", "expiresAt");
        }
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(Self::error(operation, &e)),
        }
    }
}

impl IdempotencyStore for DynamoStore {
    fn acquire<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        Box::pin(self.acquire_impl(key, owner, lease))
    }

    fn renew<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let until = now_millis() + millis(lease);
            self.owned_update(
                "UpdateItem (renew)",
                key,
                owner,
                "SET #lease = :lease",
                vec![(":lease", AttributeValue::N(until.to_string()))],
            )
            .await
        })
    }

    fn complete<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let expires_at = now_millis() / 1000 + self.config.completed_ttl.as_secs();
            self.owned_update(
                "UpdateItem (complete)",
                key,
                owner,
                "SET #status = :completed, #expires = :expires REMOVE #lease",
                vec![
                    (":completed", AttributeValue::S(COMPLETED.to_string())),
                    (":expires", AttributeValue::N(expires_at.to_string())),
                ],
            )
            .await
        })
    }

    fn release<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let (key_name, key_value) = self.key(key);
            let result = self
                .client
                .delete_item()
                .table_name(&self.config.table)
                .key(key_name, key_value)
                .condition_expression(
                    "#owner = :owner AND #attempt = :attempt AND #status = :in_progress",
                )
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_names("#attempt", "attempt")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":owner", AttributeValue::S(owner.to_string()))
                .expression_attribute_values(":attempt", AttributeValue::S(key.attempt.clone()))
                .expression_attribute_values(
                    ":in_progress",
                    AttributeValue::S(IN_PROGRESS.to_string()),
                )
                .send()
                .await;
            match result {
                Ok(_) => Ok(()),
                // Someone else took the key over: nothing of ours to release.
                Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(()),
                Err(e) => Err(Self::error("DeleteItem", &e)),
            }
        })
    }
}

/// Idempotency records in memory, with the same rules, for unit tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: Mutex<HashMap<String, MemoryRecord>>,
}

#[derive(Debug, Clone)]
struct MemoryRecord {
    completed: bool,
    owner: String,
    attempt: String,
    sequence: u64,
    lease_until: tokio::time::Instant,
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// Whether `key` is recorded as completed.
    pub fn is_completed(&self, key: &str) -> bool {
        self.records
            .lock()
            .map(|r| r.get(key).is_some_and(|r| r.completed))
            .unwrap_or(false)
    }

    /// The owner of `key`'s lease while it is in progress.
    pub fn owner(&self, key: &str) -> Option<String> {
        self.records
            .lock()
            .ok()?
            .get(key)
            .filter(|r| !r.completed)
            .map(|r| r.owner.clone())
    }

    /// The attempt `key`'s record is for.
    pub fn attempt(&self, key: &str) -> Option<String> {
        self.records
            .lock()
            .ok()?
            .get(key)
            .map(|r| r.attempt.clone())
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut HashMap<String, MemoryRecord>) -> T,
    ) -> Result<T, StoreError> {
        let mut records = self.records.lock().map_err(|_| StoreError {
            operation: "lock",
            message: "a thread panicked while holding the memory store".to_string(),
        })?;
        Ok(f(&mut records))
    }
}

impl IdempotencyStore for MemoryStore {
    fn acquire<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        Box::pin(async move {
            let now = tokio::time::Instant::now();
            self.with(|records| {
                if let Some(r) = records.get(&key.key)
                    && r.attempt != key.attempt
                    && r.sequence > key.sequence
                {
                    return Claim::Superseded;
                }
                if let Some(r) = records.get(&key.key)
                    && r.attempt == key.attempt
                {
                    if r.completed {
                        return Claim::Completed;
                    }
                    if r.owner != owner && r.lease_until >= now {
                        return Claim::HeldElsewhere {
                            lease_left: r.lease_until - now,
                        };
                    }
                }
                records.insert(
                    key.key.clone(),
                    MemoryRecord {
                        completed: false,
                        owner: owner.to_string(),
                        attempt: key.attempt.clone(),
                        sequence: key.sequence,
                        lease_until: now + lease,
                    },
                );
                Claim::Acquired
            })
        })
    }

    fn renew<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            self.with(|records| match records.get_mut(&key.key) {
                Some(r) if !r.completed && r.owner == owner && r.attempt == key.attempt => {
                    r.lease_until = tokio::time::Instant::now() + lease;
                    true
                }
                _ => false,
            })
        })
    }

    fn complete<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            self.with(|records| match records.get_mut(&key.key) {
                Some(r) if !r.completed && r.owner == owner && r.attempt == key.attempt => {
                    r.completed = true;
                    true
                }
                _ => false,
            })
        })
    }

    fn release<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.with(|records| {
                if records
                    .get(&key.key)
                    .is_some_and(|r| !r.completed && r.owner == owner && r.attempt == key.attempt)
                {
                    records.remove(&key.key);
                }
            })
        })
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn memory_store_follows_the_rules() {
        let store = MemoryStore::new();
        let key = IdempotencyKey::with_attempt("job-1", "token-a");
        let lease = Duration::from_secs(10);
        assert_eq!(store.acquire(&key, "w1", lease).await, Ok(Claim::Acquired));
        // Another owner waits for the lease; the same owner may take it again.
        assert!(matches!(
            store.acquire(&key, "w2", lease).await,
            Ok(Claim::HeldElsewhere { .. })
        ));
        assert_eq!(store.acquire(&key, "w1", lease).await, Ok(Claim::Acquired));
        // An expired lease can be taken over; the old owner then cannot renew.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(store.acquire(&key, "w2", lease).await, Ok(Claim::Acquired));
        assert_eq!(store.renew(&key, "w1", lease).await, Ok(false));
        assert_eq!(store.complete(&key, "w2").await, Ok(true));
        assert_eq!(store.acquire(&key, "w3", lease).await, Ok(Claim::Completed));
        // A new attempt of the same key runs again.
        let retry = IdempotencyKey::with_attempt("job-1", "token-b");
        assert_eq!(
            store.acquire(&retry, "w3", lease).await,
            Ok(Claim::Acquired)
        );
        store.release(&retry, "w3").await.unwrap();
        assert_eq!(
            store.acquire(&retry, "w4", lease).await,
            Ok(Claim::Acquired)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_older_attempt_never_displaces_a_newer_one() {
        let store = MemoryStore::new();
        let lease = Duration::from_secs(10);
        let older = IdempotencyKey::with_attempt("job-1", "token-a").ordered(1);
        let newer = IdempotencyKey::with_attempt("job-1", "token-b").ordered(2);
        assert_eq!(
            store.acquire(&newer, "w2", lease).await,
            Ok(Claim::Acquired)
        );
        // In progress, and later with its lease lapsed, and completed: never displaced.
        assert_eq!(
            store.acquire(&older, "w1", lease).await,
            Ok(Claim::Superseded)
        );
        tokio::time::advance(Duration::from_secs(11)).await;
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
        assert_eq!(store.attempt("job-1").as_deref(), Some("token-b"));
        // A newer attempt still supersedes an older record.
        let newest = IdempotencyKey::with_attempt("job-1", "token-c").ordered(3);
        assert_eq!(
            store.acquire(&newest, "w3", lease).await,
            Ok(Claim::Acquired)
        );
        assert_eq!(store.renew(&newer, "w2", lease).await, Ok(false));
    }
}
