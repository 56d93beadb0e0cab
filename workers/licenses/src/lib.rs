//! The licenses service, and the scheduler's first client.
//!
//! - [`handle_subscription_cancelled`]: a cancelled subscription keeps its license until
//!   the paid period ends. The license row (its own table, `licenses`) becomes
//!   `ACTIVE_UNTIL` the period's end, and a `ScheduleRequested` asks the scheduler to emit
//!   `LicenseDeactivationDue` then (key `license-<id>-<unix end>`, so a repeat of the same
//!   cancellation is the same schedule).
//! - [`handle_deactivation_due`]: deactivates the license, only if it is still due for
//!   that end (a renewed subscription clears `activeUntil`, and an old schedule then does
//!   nothing). The emulator's `Wait` counts whole seconds and may fire up to one second
//!   early; an event that arrives before its time waits out the rest here (at most
//!   [`MAX_EARLY`]), so a license never ends before its period.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use contracts::licenses::{LicenseDeactivationDue, SubscriptionCancelled};
use contracts::schedules::{ScheduleRequested, ScheduledEvent};
use contracts::{BusEvent, Envelope, Event};
use time::OffsetDateTime;

/// The most a deactivation waits for its time when it arrives early.
pub const MAX_EARLY: Duration = Duration::from_secs(5);
/// The producer name on published events.
pub const PRODUCER: &str = "licenses";

/// What the handlers need.
#[derive(Clone)]
pub struct Deps {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub table: String,
    pub publisher: bus::Publisher,
}

impl Deps {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        table: impl Into<String>,
        bus: impl Into<String>,
    ) -> Deps {
        Deps {
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            table: table.into(),
            publisher: bus::Publisher::from_sdk(sdk, bus),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LicensesError {
    #[error(transparent)]
    Contract(#[from] contracts::ContractError),
    #[error("licenses table {operation}: {message}")]
    Table {
        operation: &'static str,
        message: String,
    },
    #[error("publishing the schedule request: {0}")]
    Publish(String),
    #[error("the deactivation is {0:?} early; retry later")]
    TooEarly(Duration),
}

impl LicensesError {
    pub fn error_type(&self) -> &'static str {
        match self {
            LicensesError::Contract(_) => "Licenses.InvalidEvent",
            _ => "Licenses.Transient",
        }
    }
}

impl From<LicensesError> for lambda_runtime::Diagnostic {
    fn from(error: LicensesError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: error.error_type().to_string(),
            error_message: error.to_string(),
        }
    }
}

/// A license as the table holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct License {
    pub license_id: String,
    /// `ACTIVE_UNTIL` or `INACTIVE`.
    pub status: String,
    pub active_until: Option<i64>,
    pub deactivated_at: Option<i64>,
}

/// The schedule key for deactivating `license_id` at `end`.
pub fn schedule_key(license_id: &str, end: OffsetDateTime) -> String {
    format!("license-{license_id}-{}", end.unix_timestamp())
}

/// Keeps the license until the period's end and schedules its deactivation.
pub async fn handle_subscription_cancelled(
    event: BusEvent,
    deps: &Deps,
) -> Result<(), LicensesError> {
    let envelope = contracts::detail::decode::<SubscriptionCancelled>(
        &event.detail_type,
        &event.detail,
        &event.received(),
        |e| Some(e.license_id.clone()),
    )?;
    let cancelled = envelope.event;
    let end = cancelled.period_end;
    deps.dynamodb
        .update_item()
        .table_name(&deps.table)
        .key("licenseId", AttributeValue::S(cancelled.license_id.clone()))
        .update_expression("SET #status = :status, activeUntil = :until, subscriptionId = :sub")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":status", AttributeValue::S("ACTIVE_UNTIL".into()))
        .expression_attribute_values(
            ":until",
            AttributeValue::N(end.unix_timestamp().to_string()),
        )
        .expression_attribute_values(":sub", AttributeValue::S(cancelled.subscription_id.clone()))
        .send()
        .await
        .map_err(|e| LicensesError::Table {
            operation: "UpdateItem",
            message: aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string(),
        })?;
    let due = LicenseDeactivationDue {
        license_id: cancelled.license_id.clone(),
        subscription_id: cancelled.subscription_id.clone(),
        due: end,
    };
    let detail = Envelope::new(due.clone(), PRODUCER).detail();
    let detail = detail.as_object().cloned().unwrap_or_default();
    let request = ScheduleRequested {
        key: schedule_key(&cancelled.license_id, end),
        at: end,
        event: ScheduledEvent {
            source: due.source().to_string(),
            detail_type: due.detail_type().to_string(),
            detail,
        },
    };
    request.validate()?;
    let mut envelope = Envelope::new(request, PRODUCER);
    envelope.meta.correlation_id = cancelled.license_id.clone();
    deps.publisher
        .publish(&envelope)
        .await
        .map_err(|e| LicensesError::Publish(e.to_string()))?;
    tracing::info!(license_id = %cancelled.license_id, until = %end, "license kept until the period's end; deactivation scheduled");
    Ok(())
}

/// Deactivates the license whose period ended.
pub async fn handle_deactivation_due(event: BusEvent, deps: &Deps) -> Result<(), LicensesError> {
    let envelope = contracts::detail::decode::<LicenseDeactivationDue>(
        &event.detail_type,
        &event.detail,
        &event.received(),
        |e| Some(e.license_id.clone()),
    )?;
    let due = envelope.event;
    let early = due.due - OffsetDateTime::now_utc();
    if early.is_positive() {
        let early = Duration::try_from(early).unwrap_or(MAX_EARLY);
        if early > MAX_EARLY {
            return Err(LicensesError::TooEarly(early));
        }
        tokio::time::sleep(early).await;
    }
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let out = deps
        .dynamodb
        .update_item()
        .table_name(&deps.table)
        .key("licenseId", AttributeValue::S(due.license_id.clone()))
        .update_expression("SET #status = :inactive, deactivatedAt = :now")
        .condition_expression("activeUntil = :until")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":inactive", AttributeValue::S("INACTIVE".into()))
        .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
        .expression_attribute_values(
            ":until",
            AttributeValue::N(due.due.unix_timestamp().to_string()),
        )
        .send()
        .await;
    match out {
        Ok(_) => {
            tracing::info!(license_id = %due.license_id, "license deactivated");
            Ok(())
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
        {
            tracing::info!(license_id = %due.license_id, "license no longer due for this end; left as is");
            Ok(())
        }
        Err(e) => Err(LicensesError::Table {
            operation: "UpdateItem",
            message: aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string(),
        }),
    }
}

/// Reads a license.
pub async fn license(deps: &Deps, license_id: &str) -> Result<Option<License>, LicensesError> {
    let out = deps
        .dynamodb
        .get_item()
        .table_name(&deps.table)
        .key("licenseId", AttributeValue::S(license_id.to_string()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| LicensesError::Table {
            operation: "GetItem",
            message: aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string(),
        })?;
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
