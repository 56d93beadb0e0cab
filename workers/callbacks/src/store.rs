//! The callbacks table (partition key `pk`, TTL attribute `expiresAt`): task tokens under
//! `token#<provider>#<external id>` and delivery records under
//! `delivery#<provider>#<delivery id>`. DynamoDB deletes expired items up to days late,
//! so every read checks `expiresAt` itself.

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
        match out {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(store_error("DeleteItem")(e)),
        }
    }

    /// Whether the delivery was applied already.
    pub async fn delivery_done(
        &self,
        provider: &str,
        delivery_id: &str,
    ) -> Result<bool, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(delivery_key(provider, delivery_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error("GetItem"))?;
        Ok(out.item.is_some_and(|item| {
            item.get("state")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|s| s == "done")
        }))
    }

    /// Claims a delivery for applying it, until `lease_until`: succeeds when the id is
    /// new, or when a previous claim was abandoned (its lease ran out).
    pub async fn claim(
        &self,
        provider: &str,
        delivery_id: &str,
        lease_until: OffsetDateTime,
        expires: OffsetDateTime,
    ) -> Result<Claim, StoreError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(delivery_key(provider, delivery_id)))
            .item("state", s("claimed"))
            .item("leaseUntil", n(lease_until.unix_timestamp()))
            .item("expiresAt", n(expires.unix_timestamp()))
            .condition_expression(
                "attribute_not_exists(pk) OR (#state = :claimed AND leaseUntil < :now)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":claimed", s("claimed"))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match out {
            Ok(_) => Ok(Claim::Claimed),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                if self.delivery_done(provider, delivery_id).await? {
                    Ok(Claim::Done)
                } else {
                    Ok(Claim::Busy)
                }
            }
            Err(e) => Err(store_error("PutItem")(e)),
        }
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

    /// Gives a claim back, so the provider's retry can apply the delivery.
    pub async fn release(&self, provider: &str, delivery_id: &str) -> Result<(), StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(delivery_key(provider, delivery_id)))
            .condition_expression("#state = :claimed")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":claimed", s("claimed"))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(store_error("DeleteItem")(e)),
        }
    }
}
