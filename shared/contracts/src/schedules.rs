//! The scheduler's contracts: `ScheduleRequested` (emit an event at a time, under a key),
//! `ScheduleCancelled` (by key), and the `schedule` state machine's input.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::envelope::{Entry, Event};
use crate::error::ContractError;

/// The `source` of schedule requests published from Rust. The scheduler's rules match
/// the detail-types from any source: every service may schedule.
pub const SOURCE: &str = "fleet.schedules";
pub const REQUESTED: &str = "ScheduleRequested";
pub const CANCELLED: &str = "ScheduleCancelled";

/// Emit `event` at `at`. `key` names the schedule (and its execution): requesting the
/// same key twice with the same content is a no-op; keys are single-use (an execution
/// name cannot be reused for 90 days), so a new schedule needs a new key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleRequested {
    /// 1 to 80 characters of `A-Z a-z 0-9 - _`.
    pub key: String,
    /// RFC 3339; precision is one second (rounded up).
    #[serde(with = "crate::timestamp::bounded")]
    #[schemars(with = "String")]
    pub at: OffsetDateTime,
    pub event: ScheduledEvent,
}

impl ScheduleRequested {
    /// Checks the key and the event.
    pub fn validate(&self) -> Result<(), ContractError> {
        crate::detail::execution_name("schedule request", "key", &self.key)?;
        // A request built in Rust did not go through the bounded deserializer.
        crate::timestamp::check(self.at)
            .map_err(|message| ContractError::invalid("schedule request", "at", message))?;
        if self.event.source == crate::jobs::SOURCE {
            // Consumers trust the jobs service's events (the notifier takes job owners
            // from them); the scheduler publishes for anyone, so never as that service.
            return Err(ContractError::invalid(
                "schedule request",
                "event.source",
                format!(
                    "`{}` is the jobs service's own source and cannot be scheduled; schedule an event of your own service",
                    crate::jobs::SOURCE
                ),
            ));
        }
        self.event.to_entry().map(|_| ())
    }
}

/// The event a schedule emits, as it goes on the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledEvent {
    pub source: String,
    pub detail_type: String,
    pub detail: Map<String, Value>,
}

impl ScheduledEvent {
    /// The bus entry, checked as [`Entry::new`] checks it.
    pub fn to_entry(&self) -> Result<Entry, ContractError> {
        Entry::new(
            &self.source,
            &self.detail_type,
            &Value::Object(self.detail.clone()),
        )
    }
}

/// Stop the schedule named `key`, if it is still pending; a no-op otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleCancelled {
    pub key: String,
}

impl Event for ScheduleRequested {
    fn source(&self) -> &'static str {
        SOURCE
    }
    fn detail_type(&self) -> &'static str {
        REQUESTED
    }
    fn correlation_id(&self) -> Option<String> {
        Some(self.key.clone())
    }
}

impl Event for ScheduleCancelled {
    fn source(&self) -> &'static str {
        SOURCE
    }
    fn detail_type(&self) -> &'static str {
        CANCELLED
    }
    fn correlation_id(&self) -> Option<String> {
        Some(self.key.clone())
    }
}

/// The `schedule` state machine's input (`statemachines/schedule.asl.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleInput {
    pub key: String,
    /// `YYYY-MM-DDTHH:MM:SSZ`, the form a `Wait` state's `TimestampPath` accepts everywhere.
    pub at: String,
    pub event: ScheduledEvent,
}

impl ScheduleInput {
    /// The input for `request`: its time rounded up to the second, in UTC with `Z`.
    pub fn from_request(request: &ScheduleRequested) -> ScheduleInput {
        ScheduleInput {
            key: request.key.clone(),
            at: wait_timestamp(request.at),
            event: request.event.clone(),
        }
    }

    /// The due time back from [`ScheduleInput::at`].
    pub fn due(&self) -> Option<OffsetDateTime> {
        OffsetDateTime::parse(&self.at, &time::format_description::well_known::Rfc3339).ok()
    }
}

/// `at` in UTC, rounded up to the next whole second, as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn wait_timestamp(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let at = if at.nanosecond() > 0 {
        at.replace_nanosecond(0).unwrap_or(at) + time::Duration::SECOND
    } else {
        at
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn wait_timestamps_round_up_to_the_second_in_utc() {
        assert_eq!(
            wait_timestamp(datetime!(2026-03-01 10:00:00.001 +01:00)),
            "2026-03-01T09:00:01Z"
        );
        assert_eq!(
            wait_timestamp(datetime!(2026-12-31 23:59:59.5 UTC)),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(
            wait_timestamp(datetime!(2026-03-01 10:00:00 UTC)),
            "2026-03-01T10:00:00Z"
        );
    }

    #[test]
    fn keys_must_name_an_execution() {
        let mut request = ScheduleRequested {
            key: "license-42".into(),
            at: datetime!(2026-03-01 10:00:00 UTC),
            event: ScheduledEvent {
                source: "fleet.licenses".into(),
                detail_type: "LicenseDeactivationDue".into(),
                detail: Map::new(),
            },
        };
        assert_eq!(request.validate(), Ok(()));
        request.key = "no spaces".into();
        assert_eq!(
            request.validate().map_err(|e| e.field().to_string()),
            Err("key".into())
        );
        request.key = "ok".into();
        request.event.source = String::new();
        assert!(request.validate().is_err());
        request.event.source = "fleet.jobs".into();
        request.event.detail_type = "JobRequested".into();
        assert_eq!(
            request.validate().map_err(|e| e.field().to_string()),
            Err("event.source".into()),
            "a schedule must not speak as the jobs service"
        );
    }
}
