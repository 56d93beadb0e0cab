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
//!
//! The handlers read and write licenses through [`LicenseStore`] ([`DynamoLicenses`] in
//! the binaries, [`MemoryLicenses`] in unit tests) and publish through
//! [`SchedulePublisher`].

pub mod service;
mod store;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::time::Duration;

use contracts::licenses::{LicenseDeactivationDue, SubscriptionCancelled};
use contracts::schedules::{ScheduleRequested, ScheduledEvent};
use contracts::{BusEvent, Envelope, Event};
use time::OffsetDateTime;

pub use store::{ACTIVE_UNTIL, DynamoLicenses, INACTIVE, License, LicenseStore, MemoryLicenses};

/// The most a deactivation waits for its time when it arrives early.
pub const MAX_EARLY: Duration = Duration::from_secs(5);
/// The producer name on published events.
pub const PRODUCER: &str = "licenses";

/// What the handlers need: the licenses, and the bus the schedule requests go to. The
/// binaries use [`Deps::new`] (DynamoDB and EventBridge); unit tests put
/// [`MemoryLicenses`] and a recording publisher in their place.
#[derive(Clone)]
pub struct Deps<S = DynamoLicenses, P = bus::Publisher> {
    pub store: S,
    pub publisher: P,
}

impl Deps {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        table: impl Into<String>,
        bus: impl Into<String>,
    ) -> Deps {
        Deps {
            store: DynamoLicenses::new(aws_sdk_dynamodb::Client::new(sdk), table),
            publisher: bus::Publisher::from_sdk(sdk, bus),
        }
    }
}

/// Where the handlers publish their `ScheduleRequested`: a [`bus::Publisher`] on the
/// stage's bus.
pub trait SchedulePublisher: Send + Sync {
    fn publish_request(
        &self,
        envelope: &Envelope<ScheduleRequested>,
    ) -> impl Future<Output = Result<(), LicensesError>> + Send;
}

impl<B: bus::EventSink> SchedulePublisher for bus::Publisher<B> {
    async fn publish_request(
        &self,
        envelope: &Envelope<ScheduleRequested>,
    ) -> Result<(), LicensesError> {
        self.publish(envelope)
            .await
            .map(|_| ())
            .map_err(|e| LicensesError::Publish(e.to_string()))
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

/// The schedule key for deactivating `license_id` at `end`.
pub fn schedule_key(license_id: &str, end: OffsetDateTime) -> String {
    format!("license-{license_id}-{}", end.unix_timestamp())
}

/// Keeps the license until the period's end and schedules its deactivation.
pub async fn handle_subscription_cancelled(
    event: BusEvent,
    deps: &Deps,
) -> Result<(), LicensesError> {
    subscription_cancelled(event, deps).await
}

/// Deactivates the license whose period ended.
pub async fn handle_deactivation_due(event: BusEvent, deps: &Deps) -> Result<(), LicensesError> {
    deactivation_due(event, deps).await
}

/// Reads a license.
pub async fn license(deps: &Deps, license_id: &str) -> Result<Option<License>, LicensesError> {
    deps.store.get(license_id).await
}

async fn subscription_cancelled<S: LicenseStore, P: SchedulePublisher>(
    event: BusEvent,
    deps: &Deps<S, P>,
) -> Result<(), LicensesError> {
    let envelope = contracts::detail::decode::<SubscriptionCancelled>(
        &event.detail_type,
        &event.detail,
        &event.received(),
        |e| Some(e.license_id.clone()),
    )?;
    let cancelled = envelope.event;
    let end = cancelled.period_end;
    deps.store
        .keep_until(
            &cancelled.license_id,
            &cancelled.subscription_id,
            end.unix_timestamp(),
        )
        .await?;
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
    deps.publisher.publish_request(&envelope).await?;
    tracing::info!(license_id = %cancelled.license_id, until = %end, "license kept until the period's end; deactivation scheduled");
    Ok(())
}

async fn deactivation_due<S: LicenseStore, P>(
    event: BusEvent,
    deps: &Deps<S, P>,
) -> Result<(), LicensesError> {
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
    if deps
        .store
        .deactivate_if_due(&due.license_id, due.due.unix_timestamp(), now)
        .await?
    {
        tracing::info!(license_id = %due.license_id, "license deactivated");
    } else {
        tracing::info!(license_id = %due.license_id, "license no longer due for this end; left as is");
    }
    Ok(())
}
