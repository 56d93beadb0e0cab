//! DynamoDB Time to Live, which the emulator records (`UpdateTimeToLive`) but never
//! applies: every [`Config::ttl_sweep_interval`] the host deletes the items of each TTL
//! table whose TTL attribute is in the past, as DynamoDB's background process does.
//!
//! As on AWS:
//! - the attribute must be a Number of epoch seconds; an item whose attribute is missing
//!   or of another type never expires;
//! - a time more than five years in the past is taken for a mistake and ignored;
//! - an expired item stays readable until it is deleted (on AWS usually within a few
//!   days), so readers filter on the attribute themselves;
//! - the delete is conditional on the item still being expired: one whose expiry was
//!   moved on after the scan stays.
//!
//! [`Config::ttl_sweep_interval`]: crate::Config::ttl_sweep_interval

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use tokio_util::sync::CancellationToken;
use topology::Table;

use crate::HostError;

/// Five years of seconds: AWS ignores TTL values further in the past than this.
const OLDEST_SECONDS: i64 = 5 * 365 * 24 * 60 * 60;

/// One table whose expired items the host deletes.
#[derive(Debug, Clone)]
pub(crate) struct Expiry {
    /// The table's physical name.
    pub(crate) table: String,
    pub(crate) attribute: String,
    /// The key attributes' names (partition key, then sort key).
    pub(crate) keys: Vec<String>,
}

impl Expiry {
    /// The TTL of `table` (deployed as `physical`), if it has one.
    pub(crate) fn of(table: &Table, physical: String) -> Option<Expiry> {
        let attribute = table.ttl_attribute.clone()?;
        let keys = std::iter::once(&table.partition_key)
            .chain(table.sort_key.as_ref())
            .map(|k| k.name.clone())
            .collect();
        Some(Expiry {
            table: physical,
            attribute,
            keys,
        })
    }
}

/// Sweeps every table at once, then every `interval`, until `token` is cancelled. A
/// failed sweep is logged and tried again at the next interval.
pub(crate) async fn run(
    dynamodb: aws_sdk_dynamodb::Client,
    expiries: Vec<Expiry>,
    interval: Duration,
    token: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        for expiry in &expiries {
            // A stopping host does not wait for a sweep: the next start does it.
            let swept = tokio::select! {
                () = token.cancelled() => return,
                swept = sweep(&dynamodb, expiry, now) => swept,
            };
            match swept {
                Ok(0) => {}
                Ok(deleted) => {
                    tracing::debug!(table = %expiry.table, deleted, "deleted expired items");
                }
                Err(error) => {
                    tracing::warn!(table = %expiry.table, %error, "could not delete expired items");
                }
            }
        }
    }
}

/// Deletes the items of one table that had expired at `now`; returns how many it deleted.
pub(crate) async fn sweep(
    dynamodb: &aws_sdk_dynamodb::Client,
    expiry: &Expiry,
    now: i64,
) -> Result<usize, HostError> {
    use aws_sdk_dynamodb::error::DisplayErrorContext;
    let failed = |operation, detail: String| HostError::Sdk {
        resource: format!("table {}", expiry.table),
        operation,
        detail,
    };
    let mut names = HashMap::from([("#ttl".to_owned(), expiry.attribute.clone())]);
    let mut projection = Vec::new();
    for (i, key) in expiry.keys.iter().enumerate() {
        names.insert(format!("#k{i}"), key.clone());
        projection.push(format!("#k{i}"));
    }
    let number = |n: i64| AttributeValue::N(n.to_string());
    let values = HashMap::from([
        (":number".to_owned(), AttributeValue::S("N".to_owned())),
        (":now".to_owned(), number(now)),
        (":oldest".to_owned(), number(now - OLDEST_SECONDS)),
    ]);
    // The type test comes first: moto fails the whole request comparing a String
    // attribute with a Number, where DynamoDB takes the comparison as false.
    let expired = "attribute_type(#ttl, :number) AND #ttl < :now AND #ttl > :oldest";
    let mut deleted = 0;
    let mut start: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let page = dynamodb
            .scan()
            .table_name(&expiry.table)
            .filter_expression(expired)
            .projection_expression(projection.join(", "))
            .set_expression_attribute_names(Some(names.clone()))
            .set_expression_attribute_values(Some(values.clone()))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| failed("Scan", DisplayErrorContext(&e).to_string()))?;
        for key in page.items() {
            let removed = dynamodb
                .delete_item()
                .table_name(&expiry.table)
                .set_key(Some(key.clone()))
                .condition_expression(expired)
                .expression_attribute_names("#ttl", &expiry.attribute)
                .set_expression_attribute_values(Some(values.clone()))
                .send()
                .await;
            match removed {
                Ok(_) => deleted += 1,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(failed("DeleteItem", DisplayErrorContext(&e).to_string())),
            }
        }
        match page.last_evaluated_key() {
            Some(last) if !last.is_empty() => start = Some(last.clone()),
            _ => return Ok(deleted),
        }
    }
}
