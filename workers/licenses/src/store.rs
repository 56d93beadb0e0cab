//! Where licenses live: the [`LicenseStore`] port, its DynamoDB adapter (the `licenses`
//! table, key `licenseId`) and [`MemoryLicenses`], the in-memory twin unit tests use.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::LicensesError;

/// `status` of a license kept until its period ends.
pub const ACTIVE_UNTIL: &str = "ACTIVE_UNTIL";
/// `status` of a deactivated license.
pub const INACTIVE: &str = "INACTIVE";

/// A license as the table holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct License {
    pub license_id: String,
    /// `ACTIVE_UNTIL` or `INACTIVE`.
    pub status: String,
    pub active_until: Option<i64>,
    pub deactivated_at: Option<i64>,
}

/// The licenses the handlers read and write. Times are Unix seconds.
pub trait LicenseStore: Send + Sync {
    /// Keeps the license `ACTIVE_UNTIL` `until` for `subscription_id`, creating it if it
    /// is unknown. The write is unconditional: a repeat of it changes nothing, and a later
    /// cancellation moves the end (so a schedule for the old end no longer applies).
    fn keep_until(
        &self,
        license_id: &str,
        subscription_id: &str,
        until: i64,
    ) -> impl Future<Output = Result<(), LicensesError>> + Send;

    /// Makes the license `INACTIVE` as of `now`, only if it is still kept until exactly
    /// `until`; `false` (and nothing written) when it is not, or is unknown.
    fn deactivate_if_due(
        &self,
        license_id: &str,
        until: i64,
        now: i64,
    ) -> impl Future<Output = Result<bool, LicensesError>> + Send;

    /// The license, read consistently; `None` when it is unknown.
    fn get(
        &self,
        license_id: &str,
    ) -> impl Future<Output = Result<Option<License>, LicensesError>> + Send;
}

/// The `licenses` DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoLicenses {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoLicenses {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> DynamoLicenses {
        DynamoLicenses {
            client,
            table: table.into(),
        }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }
}

impl LicenseStore for DynamoLicenses {
    async fn keep_until(
        &self,
        license_id: &str,
        subscription_id: &str,
        until: i64,
    ) -> Result<(), LicensesError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("licenseId", AttributeValue::S(license_id.to_string()))
            .update_expression("SET #status = :status, activeUntil = :until, subscriptionId = :sub")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", AttributeValue::S(ACTIVE_UNTIL.into()))
            .expression_attribute_values(":until", AttributeValue::N(until.to_string()))
            .expression_attribute_values(":sub", AttributeValue::S(subscription_id.to_string()))
            .send()
            .await
            .map_err(|e| table_error("UpdateItem", &e))?;
        Ok(())
    }

    async fn deactivate_if_due(
        &self,
        license_id: &str,
        until: i64,
        now: i64,
    ) -> Result<bool, LicensesError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("licenseId", AttributeValue::S(license_id.to_string()))
            .update_expression("SET #status = :inactive, deactivatedAt = :now")
            .condition_expression("activeUntil = :until")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":inactive", AttributeValue::S(INACTIVE.into()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .expression_attribute_values(":until", AttributeValue::N(until.to_string()))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(table_error("UpdateItem", &e)),
        }
    }

    async fn get(&self, license_id: &str) -> Result<Option<License>, LicensesError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("licenseId", AttributeValue::S(license_id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| table_error("GetItem", &e))?;
        Ok(out.item.map(|item| {
            let n = |name: &str| {
                item.get(name)
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok())
            };
            License {
                license_id: license_id.to_string(),
                status: item
                    .get("status")
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default(),
                active_until: n("activeUntil"),
                deactivated_at: n("deactivatedAt"),
            }
        }))
    }
}

fn table_error<E: std::error::Error>(operation: &'static str, e: &E) -> LicensesError {
    LicensesError::Table {
        operation,
        message: DisplayErrorContext(e).to_string(),
    }
}

/// Licenses in memory, with the table's semantics: the twin of [`DynamoLicenses`].
#[derive(Debug, Default)]
pub struct MemoryLicenses {
    rows: Mutex<HashMap<String, License>>,
}

impl MemoryLicenses {
    fn rows(&self) -> std::sync::MutexGuard<'_, HashMap<String, License>> {
        // A panic while holding the lock leaves whole rows behind: each write replaces
        // fields of one row in one statement.
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LicenseStore for MemoryLicenses {
    async fn keep_until(
        &self,
        license_id: &str,
        _subscription_id: &str,
        until: i64,
    ) -> Result<(), LicensesError> {
        let mut rows = self.rows();
        // UpdateItem creates the row, and leaves the attributes it does not set as they
        // were (`deactivatedAt` of an earlier deactivation stays).
        let row = rows
            .entry(license_id.to_string())
            .or_insert_with(|| License {
                license_id: license_id.to_string(),
                status: String::new(),
                active_until: None,
                deactivated_at: None,
            });
        row.status = ACTIVE_UNTIL.to_string();
        row.active_until = Some(until);
        Ok(())
    }

    async fn deactivate_if_due(
        &self,
        license_id: &str,
        until: i64,
        now: i64,
    ) -> Result<bool, LicensesError> {
        let mut rows = self.rows();
        match rows.get_mut(license_id) {
            Some(row) if row.active_until == Some(until) => {
                row.status = INACTIVE.to_string();
                row.deactivated_at = Some(now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn get(&self, license_id: &str) -> Result<Option<License>, LicensesError> {
        Ok(self.rows().get(license_id).cloned())
    }
}
