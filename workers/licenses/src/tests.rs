//! The handlers' logic on the in-memory licenses and a bus that records what it is given.

use std::sync::{Arc, Mutex};

use bus::{EntryResult, EventSink, SinkError};
use contracts::licenses::{DEACTIVATION_DUE, SOURCE, SUBSCRIPTION_CANCELLED, SUBSCRIPTIONS_SOURCE};
use contracts::{BusEvent, Entry};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::*;

/// Accepts every entry and keeps it.
#[derive(Debug, Clone, Default)]
struct RecordingBus(Arc<Mutex<Vec<Entry>>>);

impl EventSink for RecordingBus {
    async fn put_events(
        &self,
        _bus: &str,
        entries: &[Entry],
    ) -> Result<Vec<EntryResult>, SinkError> {
        let mut seen = self.0.lock().expect("no test panics holding the record");
        seen.extend_from_slice(entries);
        Ok((0..entries.len())
            .map(|i| EntryResult::Accepted {
                event_id: format!("event-{}", seen.len() + i),
            })
            .collect())
    }
}

type TestDeps = Deps<MemoryLicenses, bus::Publisher<RecordingBus>>;

fn deps() -> (TestDeps, RecordingBus) {
    let bus = RecordingBus::default();
    let deps = Deps {
        store: MemoryLicenses::default(),
        publisher: bus::Publisher::new(bus.clone(), "fleet-test", bus::Config::default()),
    };
    (deps, bus)
}

/// Whole seconds, as the table and the schedule keys count.
fn at(offset: time::Duration) -> OffsetDateTime {
    let t = OffsetDateTime::now_utc() + offset;
    t.replace_nanosecond(0).expect("zero nanoseconds are valid")
}

fn delivered(source: &str, detail_type: &str, detail: Value) -> BusEvent {
    BusEvent::from_json(
        &json!({"id": "e-1", "source": source, "detail-type": detail_type, "detail": detail})
            .to_string(),
    )
    .expect("an EventBridge event")
}

fn cancelled(license_id: &str, period_end: OffsetDateTime) -> BusEvent {
    let detail = serde_json::to_value(SubscriptionCancelled {
        subscription_id: "sub-1".into(),
        license_id: license_id.into(),
        period_end,
    })
    .expect("SubscriptionCancelled serializes");
    delivered(SUBSCRIPTIONS_SOURCE, SUBSCRIPTION_CANCELLED, detail)
}

fn due(license_id: &str, due: OffsetDateTime) -> BusEvent {
    let detail = serde_json::to_value(LicenseDeactivationDue {
        license_id: license_id.into(),
        subscription_id: "sub-1".into(),
        due,
    })
    .expect("LicenseDeactivationDue serializes");
    delivered(SOURCE, DEACTIVATION_DUE, detail)
}

/// The schedule requests published so far.
fn requests(bus: &RecordingBus) -> Vec<ScheduleRequested> {
    let entries = bus
        .0
        .lock()
        .expect("no test panics holding the record")
        .clone();
    entries
        .iter()
        .map(|entry| {
            assert_eq!(entry.detail_type, "ScheduleRequested");
            let mut detail: Value = serde_json::from_str(&entry.detail).expect("JSON detail");
            if let Some(object) = detail.as_object_mut() {
                object.remove("meta");
            }
            serde_json::from_value(detail).expect("a ScheduleRequested detail")
        })
        .collect()
}

/// Handles a cancellation of `license_id`'s subscription ending at `end`.
async fn cancel(deps: &TestDeps, license_id: &str, end: OffsetDateTime) {
    subscription_cancelled(cancelled(license_id, end), deps)
        .await
        .expect("the cancellation is handled");
}

/// Handles a deactivation of `license_id` due at `end`.
async fn deactivate(deps: &TestDeps, license_id: &str, end: OffsetDateTime) {
    deactivation_due(due(license_id, end), deps)
        .await
        .expect("the deactivation is handled");
}

async fn license_of(deps: &TestDeps, id: &str) -> Option<License> {
    deps.store.get(id).await.expect("the memory store answers")
}

#[tokio::test]
async fn a_cancelled_subscription_stays_active_until_the_period_end_and_schedules_the_deactivation()
{
    let (deps, bus) = deps();
    let end = at(time::Duration::days(30));
    cancel(&deps, "lic-1", end).await;

    let license = license_of(&deps, "lic-1")
        .await
        .expect("the license is kept");
    assert_eq!(license.status, ACTIVE_UNTIL);
    assert_eq!(license.active_until, Some(end.unix_timestamp()));
    assert_eq!(license.deactivated_at, None);

    let requests = requests(&bus);
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(request.key, schedule_key("lic-1", end));
    assert_eq!(request.at, end);
    assert_eq!(request.event.source, SOURCE);
    assert_eq!(request.event.detail_type, DEACTIVATION_DUE);
    let mut detail = Value::Object(request.event.detail.clone());
    if let Some(object) = detail.as_object_mut() {
        object.remove("meta");
    }
    let scheduled: LicenseDeactivationDue =
        serde_json::from_value(detail).expect("the scheduled event is a LicenseDeactivationDue");
    assert_eq!(
        scheduled,
        LicenseDeactivationDue {
            license_id: "lic-1".into(),
            subscription_id: "sub-1".into(),
            due: end,
        }
    );
}

#[tokio::test]
async fn a_repeated_cancellation_keeps_the_license_and_requests_the_same_schedule() {
    let (deps, bus) = deps();
    let end = at(time::Duration::days(30));
    for _ in 0..2 {
        cancel(&deps, "lic-1", end).await;
    }
    let license = license_of(&deps, "lic-1")
        .await
        .expect("the license is kept");
    assert_eq!(
        (license.status.as_str(), license.active_until),
        (ACTIVE_UNTIL, Some(end.unix_timestamp()))
    );
    // The scheduler keys executions by the key: the same key twice is one schedule.
    let keys: Vec<String> = requests(&bus).into_iter().map(|r| r.key).collect();
    assert_eq!(keys, vec![schedule_key("lic-1", end); 2]);
}

#[tokio::test]
async fn the_deactivation_applies_when_the_license_is_still_due_for_that_end() {
    let (deps, _) = deps();
    let end = at(-time::Duration::minutes(1));
    cancel(&deps, "lic-1", end).await;
    let before = OffsetDateTime::now_utc().unix_timestamp();
    deactivate(&deps, "lic-1", end).await;

    let license = license_of(&deps, "lic-1")
        .await
        .expect("the license is kept");
    assert_eq!(license.status, INACTIVE);
    let deactivated_at = license.deactivated_at.expect("deactivatedAt is set");
    assert!(deactivated_at >= before, "{deactivated_at} < {before}");
}

#[tokio::test]
async fn a_deactivation_for_another_end_leaves_the_license_as_it_is() {
    let (deps, _) = deps();
    let old_end = at(-time::Duration::minutes(1));
    let new_end = at(time::Duration::days(30));
    // Cancelled, renewed, cancelled again: the license now ends later.
    cancel(&deps, "lic-1", old_end).await;
    cancel(&deps, "lic-1", new_end).await;

    deactivate(&deps, "lic-1", old_end).await;
    let license = license_of(&deps, "lic-1")
        .await
        .expect("the license is kept");
    assert_eq!(license.status, ACTIVE_UNTIL);
    assert_eq!(license.active_until, Some(new_end.unix_timestamp()));
    assert_eq!(license.deactivated_at, None);
}

#[tokio::test]
async fn a_repeated_deactivation_is_harmless_and_an_unknown_license_stays_unknown() {
    let (deps, _) = deps();
    let end = at(-time::Duration::minutes(1));
    cancel(&deps, "lic-1", end).await;
    for _ in 0..2 {
        deactivate(&deps, "lic-1", end).await;
    }
    let license = license_of(&deps, "lic-1")
        .await
        .expect("the license is kept");
    assert_eq!(license.status, INACTIVE);

    deactivate(&deps, "lic-unknown", end).await;
    assert_eq!(license_of(&deps, "lic-unknown").await, None);
}

#[tokio::test]
async fn a_deactivation_more_than_max_early_ahead_is_retried_later_and_changes_nothing() {
    let (deps, _) = deps();
    let end = at(time::Duration::hours(1));
    cancel(&deps, "lic-1", end).await;
    let error = deactivation_due(due("lic-1", end), &deps)
        .await
        .expect_err("an hour early is too early");
    assert!(matches!(error, LicensesError::TooEarly(_)), "{error}");
    assert_eq!(error.error_type(), "Licenses.Transient");
    let license = license_of(&deps, "lic-1")
        .await
        .expect("the license is kept");
    assert_eq!(license.status, ACTIVE_UNTIL);
}

#[tokio::test]
async fn bad_events_are_contract_errors_naming_the_field_and_change_nothing() {
    let (deps, bus) = deps();
    let cases = [
        (
            json!({"subscriptionId": "sub-1", "licenseId": "lic-1"}),
            "periodEnd",
        ),
        (
            json!({"subscriptionId": "sub-1", "licenseId": 7, "periodEnd": "2030-01-01T00:00:00Z"}),
            "licenseId",
        ),
        (
            json!({"subscriptionId": "sub-1", "licenseId": "lic-1", "periodEnd": "next week"}),
            "periodEnd",
        ),
    ];
    for (detail, field) in cases {
        let event = delivered(SUBSCRIPTIONS_SOURCE, SUBSCRIPTION_CANCELLED, detail.clone());
        let error = subscription_cancelled(event, &deps)
            .await
            .expect_err("a bad event is refused");
        assert_eq!(error.error_type(), "Licenses.InvalidEvent", "{error}");
        let LicensesError::Contract(contract) = &error else {
            panic!("{detail}: expected a contract error, got {error}")
        };
        assert_eq!(contract.field(), field, "{detail}: {error}");
    }
    let event = delivered(
        SOURCE,
        DEACTIVATION_DUE,
        json!({"licenseId": "lic-1", "subscriptionId": "sub-1"}),
    );
    match deactivation_due(event, &deps).await {
        Err(LicensesError::Contract(contract)) => assert_eq!(contract.field(), "due"),
        other => panic!("expected a contract error, got {other:?}"),
    }
    assert_eq!(license_of(&deps, "lic-1").await, None);
    assert!(requests(&bus).is_empty());
}
