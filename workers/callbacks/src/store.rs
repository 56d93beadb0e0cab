//! The callbacks table (partition key `pk`, TTL attribute `expiresAt`): task tokens under
//! `token#<provider>#<external id>` and delivery records under
//! `delivery#<provider>#<delivery id>`. DynamoDB deletes expired items up to days late,
//! so every read checks `expiresAt` itself.
//!
//! A delivery record is `claimed` (with the `token` it is being applied to and a
//! `leaseUntil`) or `done`. The token binds the delivery to one wait: every write that
//! takes a claim over or gives it back is conditional on that token, so no retry of the
//! delivery can reach the next wait registered under the same external id.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;

/// The table, through the SDK.
#[derive(Clone, Debug)]
pub struct Store {
    client: aws_sdk_dynamodb::Client,
    pub table: String,
}

#[derive(Debug, thiserror::Error)]
#[error("callbacks table {operation}: {message}")]
pub struct StoreError {
    pub operation: &'static str,
    pub message: String,
}

/// What [`Store::claim`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The delivery is ours to apply.
    Claimed,
    /// Already applied.
    Done,
    /// Someone else is applying it and their lease has not run out.
    Busy,
}

/// A delivery's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Applied (or bound to a wait that has ended).
    Done,
    /// Being applied to `token`, or abandoned if `lease_until` (unix seconds) has passed.
    /// `token` is `None` only for a claim written before claims were bound to a token.
    Claimed {
        token: Option<String>,
        lease_until: i64,
    },
}

fn store_error<E>(
    operation: &'static str,
) -> impl FnOnce(aws_sdk_dynamodb::error::SdkError<E>) -> StoreError
where
    E: std::error::Error + 'static,
    aws_sdk_dynamodb::error::SdkError<E>: std::error::Error,
{
    move |e| StoreError {
        operation,
        message: aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string(),
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn token_key(provider: &str, external_id: &str) -> String {
    format!("token#{provider}#{external_id}")
}

fn delivery_key(provider: &str, delivery_id: &str) -> String {
    format!("delivery#{provider}#{delivery_id}")
}

impl Store {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Store {
        Store {
            client,
            table: table.into(),
        }
    }

    /// Stores (or replaces) the token waiting on `(provider, external_id)`.
    pub async fn put_token(
        &self,
        provider: &str,
        external_id: &str,
        token: &str,
        expires: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(token_key(provider, external_id)))
            .item("token", s(token))
            .item("provider", s(provider))
            .item("externalId", s(external_id))
            .item("expiresAt", n(expires.unix_timestamp()))
            .send()
            .await
            .map_err(store_error("PutItem"))?;
        Ok(())
    }

    /// The token waiting on `(provider, external_id)`, unless none or expired.
    pub async fn token(
        &self,
        provider: &str,
        external_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(token_key(provider, external_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error("GetItem"))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let now = OffsetDateTime::now_utc().unix_timestamp();
        if number(&item, "expiresAt").is_some_and(|at| at <= now) {
            return Ok(None);
        }
        Ok(item.get("token").and_then(|v| v.as_s().ok()).cloned())
    }

    /// Forgets `token` once it is spent, unless a newer token has replaced it already.
    pub async fn delete_token(
        &self,
        provider: &str,
        external_id: &str,
        token: &str,
    ) -> Result<(), StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(token_key(provider, external_id)))
            .condition_expression("#token = :token")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":token", s(token))
            .send()
            .await;
        conditional(out.map(|_| ()), "DeleteItem").map(|_| ())
    }

    /// The record of a delivery, if any.
    pub async fn delivery(
        &self,
        provider: &str,
        delivery_id: &str,
    ) -> Result<Option<Delivery>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(delivery_key(provider, delivery_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error("GetItem"))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let state = item.get("state").and_then(|v| v.as_s().ok());
        Ok(Some(if state.is_some_and(|state| state == "done") {
            Delivery::Done
        } else {
            Delivery::Claimed {
                token: item.get("token").and_then(|v| v.as_s().ok()).cloned(),
                lease_until: number(&item, "leaseUntil").unwrap_or(0),
            }
        }))
    }

    /// Claims a new delivery for applying it to `token`, until `lease_until`. Only a
    /// delivery id never seen is claimed here; an abandoned claim is taken over with
    /// [`Store::retake`], bound to its own token.
    pub async fn claim(
        &self,
        provider: &str,
        delivery_id: &str,
        token: &str,
        lease_until: OffsetDateTime,
        expires: OffsetDateTime,
    ) -> Result<Claim, StoreError> {
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(delivery_key(provider, delivery_id)))
            .item("state", s("claimed"))
            .item("token", s(token))
            .item("leaseUntil", n(lease_until.unix_timestamp()))
            .item("expiresAt", n(expires.unix_timestamp()))
            // The same claim again is no conflict: a call whose answer was lost is sent
            // again by the SDK's retry and finds what its first attempt wrote.
            .condition_expression(
                "attribute_not_exists(pk) OR (#state = :claimed AND #token = :token AND #lease = :lease)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#token", "token")
            .expression_attribute_names("#lease", "leaseUntil")
            .expression_attribute_values(":claimed", s("claimed"))
            .expression_attribute_values(":token", s(token))
            .expression_attribute_values(":lease", n(lease_until.unix_timestamp()))
            .send()
            .await;
        match out {
            Ok(_) => Ok(Claim::Claimed),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                match self.delivery(provider, delivery_id).await? {
                    Some(Delivery::Done) => Ok(Claim::Done),
                    _ => Ok(Claim::Busy),
                }
            }
            Err(e) => Err(store_error("PutItem")(e)),
        }
    }

    /// Takes over an abandoned claim (its lease ran out) that is bound to `token`, until
    /// `lease_until`. `false` when someone else took it first, or it is no longer a
    /// claim on `token`.
    pub async fn retake(
        &self,
        provider: &str,
        delivery_id: &str,
        token: &str,
        lease_until: OffsetDateTime,
        expires: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        self.put_claim(
            provider,
            delivery_id,
            token,
            lease_until.unix_timestamp(),
            expires,
            Some(now),
        )
        .await
    }

    /// Ends the lease of a claim on `token` now, keeping the claim and its binding: the
    /// provider's retry may apply the delivery at once, to that token only.
    pub async fn end_lease(
        &self,
        provider: &str,
        delivery_id: &str,
        token: &str,
        expires: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.put_claim(provider, delivery_id, token, 0, expires, None)
            .await
            .map(|_| ())
    }

    /// Rewrites a claim on `token` (a `PutItem`, the one write the function may make
    /// besides deletes), if it is still one; with `lease_ended_before`, only if its lease
    /// ended before then.
    async fn put_claim(
        &self,
        provider: &str,
        delivery_id: &str,
        token: &str,
        lease_until: i64,
        expires: OffsetDateTime,
        lease_ended_before: Option<i64>,
    ) -> Result<bool, StoreError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(delivery_key(provider, delivery_id)))
            .item("state", s("claimed"))
            .item("token", s(token))
            .item("leaseUntil", n(lease_until))
            .item("expiresAt", n(expires.unix_timestamp()))
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":claimed", s("claimed"))
            .expression_attribute_values(":token", s(token));
        put = match lease_ended_before {
            Some(now) => put
                .condition_expression("#state = :claimed AND #token = :token AND leaseUntil < :now")
                .expression_attribute_values(":now", n(now)),
            None => put.condition_expression("#state = :claimed AND #token = :token"),
        };
        conditional(put.send().await.map(|_| ()), "PutItem")
    }

    /// Marks a claimed delivery applied; remembered until `expires`.
    pub async fn complete(
        &self,
        provider: &str,
        delivery_id: &str,
        expires: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(delivery_key(provider, delivery_id)))
            .item("state", s("done"))
            .item("expiresAt", n(expires.unix_timestamp()))
            .send()
            .await
            .map_err(store_error("PutItem"))?;
        Ok(())
    }

    /// Gives back a claim on `token`, so the provider's retry can apply the delivery to
    /// whichever wait is registered then: only for a delivery that was applied nowhere.
    pub async fn release(
        &self,
        provider: &str,
        delivery_id: &str,
        token: &str,
    ) -> Result<(), StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(delivery_key(provider, delivery_id)))
            .condition_expression("#state = :claimed AND #token = :token")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":claimed", s("claimed"))
            .expression_attribute_values(":token", s(token))
            .send()
            .await;
        conditional(out.map(|_| ()), "DeleteItem").map(|_| ())
    }
}

/// A conditional write's outcome: `true` when written, `false` when its condition did
/// not hold.
fn conditional<E>(
    out: Result<(), aws_sdk_dynamodb::error::SdkError<E>>,
    operation: &'static str,
) -> Result<bool, StoreError>
where
    E: ConditionFailed + std::error::Error + 'static,
    aws_sdk_dynamodb::error::SdkError<E>: std::error::Error,
{
    match out {
        Ok(()) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(ConditionFailed::is_condition_failed) =>
        {
            Ok(false)
        }
        Err(e) => Err(store_error(operation)(e)),
    }
}

/// The SDK's per-operation errors that can say "the condition did not hold".
trait ConditionFailed {
    fn is_condition_failed(&self) -> bool;
}

impl ConditionFailed for aws_sdk_dynamodb::operation::put_item::PutItemError {
    fn is_condition_failed(&self) -> bool {
        self.is_conditional_check_failed_exception()
    }
}

impl ConditionFailed for aws_sdk_dynamodb::operation::delete_item::DeleteItemError {
    fn is_condition_failed(&self) -> bool {
        self.is_conditional_check_failed_exception()
    }
}
