//! The scheduler on the local stack: a schedule fires on time (the delay is measured and
//! printed), a cancelled one never fires, both are listed by `fleet schedules ls` while
//! pending; and the license case end to end.

use std::time::Duration;

use crate::support::{stack, until};
use contracts::Envelope;
use contracts::licenses::SubscriptionCancelled;
use contracts::schedules::{ScheduleCancelled, ScheduleRequested, ScheduledEvent};
use fleet::dev::Stack;
use serde_json::{Value, json};
use time::OffsetDateTime;

/// A queue receiving every `fleet.tests` event on the stage's bus.
async fn capture(stack: &Stack) -> String {
    crate::support::capture(stack, json!({"source": ["fleet.tests"]})).await
}

fn schedule(key: &str, at: OffsetDateTime) -> ScheduleRequested {
    ScheduleRequested {
        key: key.to_string(),
        at,
        event: ScheduledEvent {
            source: "fleet.tests".into(),
            detail_type: "Reminder".into(),
            detail: json!({"key": key}).as_object().unwrap().clone(),
        },
    }
}

#[tokio::test]
async fn a_schedule_fires_on_time_and_a_cancelled_one_never_does() {
    let stack = stack().await;
    let captured = capture(&stack).await;
    let publisher = bus::Publisher::from_sdk(&stack.sdk, stack.topology.names().bus());
    let fires = emulator::unique_name("fires");
    let cancelled = emulator::unique_name("cancelled");
    let due = OffsetDateTime::now_utc() + time::Duration::seconds(8);
    for key in [&fires, &cancelled] {
        publisher
            .publish(&Envelope::new(schedule(key, due), "e2e"))
            .await
            .unwrap();
    }

    // Both are listed while pending, with their due time and event.
    let (stage, sdk) = (&stack.topology.stage, &stack.sdk);
    let (fires_ref, cancelled_ref) = (&fires, &cancelled);
    let listed = until(
        "both schedules to be listed",
        Duration::from_secs(5),
        move || async move {
            let pending = fleet::cmd::schedules::pending(stage, sdk).await.unwrap();
            let keys: Vec<_> = pending.iter().map(|p| p.key.as_str()).collect();
            (keys.contains(&fires_ref.as_str()) && keys.contains(&cancelled_ref.as_str()))
                .then_some(pending)
        },
    )
    .await;
    let table = fleet::cmd::schedules::render(&listed);
    println!("fleet schedules ls:\n{table}");
    assert!(table.starts_with("KEY"), "{table}");
    for p in &listed {
        assert_eq!(p.detail_type, "Reminder");
        assert_eq!(p.source, "fleet.tests");
        // The listed due time is the requested one, rounded up to the second.
        let due_diff = p.due.unwrap() - due;
        assert!(due_diff >= time::Duration::ZERO && due_diff < time::Duration::SECOND);
    }
    let json = fleet::cmd::schedules::to_json(&listed);
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .any(|p| p["key"] == fires.as_str())
    );

    publisher
        .publish(&Envelope::new(
            ScheduleCancelled {
                key: cancelled.clone(),
            },
            "e2e",
        ))
        .await
        .unwrap();
    until(
        "the cancelled schedule to leave the list",
        Duration::from_secs(5),
        move || async move {
            let pending = fleet::cmd::schedules::pending(stage, sdk).await.unwrap();
            let keys: Vec<_> = pending.iter().map(|p| p.key.clone()).collect();
            (!keys.contains(cancelled_ref) && keys.contains(fires_ref)).then_some(())
        },
    )
    .await;
    assert!(
        OffsetDateTime::now_utc() < due,
        "the test must cancel before the due time to prove anything"
    );

    // Watch the bus until two seconds past the due time... and then some.
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let watch_until = due + time::Duration::seconds(4);
    let mut fired: Option<OffsetDateTime> = None;
    let mut seen: Vec<Value> = Vec::new();
    while OffsetDateTime::now_utc() < watch_until {
        let out = sqs
            .receive_message()
            .queue_url(&captured)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let received = OffsetDateTime::now_utc();
        for m in out.messages() {
            let event: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            if event["detail"]["key"] == fires.as_str() && fired.is_none() {
                fired = Some(received);
            }
            seen.push(event);
        }
    }
    let fired = fired.expect("the schedule fired");
    let delay = fired - due;
    println!(
        "schedule {fires}: due {due}, fired {fired}: delay {:.3} s",
        delay.as_seconds_f64()
    );
    assert!(
        delay.abs() <= time::Duration::seconds(2),
        "fired {:.3} s from its time",
        delay.as_seconds_f64()
    );
    let cancelled_fired = seen
        .iter()
        .any(|e| e["detail"]["key"] == cancelled.as_str());
    assert!(!cancelled_fired, "the cancelled schedule fired: {seen:?}");
    assert_eq!(
        seen.iter()
            .filter(|e| e["detail"]["key"] == fires.as_str())
            .count(),
        1,
        "fired exactly once"
    );
    let pending = fleet::cmd::schedules::pending(stage, sdk).await.unwrap();
    assert!(
        pending.iter().all(|p| p.key != fires && p.key != cancelled),
        "{pending:?}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_cancelled_subscription_keeps_its_license_until_the_period_ends() {
    let stack = stack().await;
    let names = stack.topology.names();
    let publisher = bus::Publisher::from_sdk(&stack.sdk, names.bus());
    let license_id = emulator::unique_name("lic");
    let period_end = (OffsetDateTime::now_utc() + time::Duration::seconds(6))
        .replace_nanosecond(0)
        .unwrap();
    publisher
        .publish(&Envelope::new(
            SubscriptionCancelled {
                subscription_id: "sub-1".into(),
                license_id: license_id.clone(),
                period_end,
            },
            "billing",
        ))
        .await
        .unwrap();
    let deps = licenses::Deps::new(&stack.sdk, names.table("licenses"), names.bus());
    let (deps_ref, id) = (&deps, &license_id);
    let kept = until(
        "the license to be kept until the end",
        Duration::from_secs(5),
        move || async move {
            licenses::license(deps_ref, id)
                .await
                .unwrap()
                .filter(|l| l.status == "ACTIVE_UNTIL")
        },
    )
    .await;
    assert_eq!(kept.active_until, Some(period_end.unix_timestamp()));
    assert!(
        OffsetDateTime::now_utc() < period_end,
        "still in the period"
    );

    let (stage, sdk) = (&stack.topology.stage, &stack.sdk);
    let key = licenses::schedule_key(&license_id, period_end);
    let key_ref = &key;
    until(
        "the deactivation to be scheduled",
        Duration::from_secs(5),
        move || async move {
            let pending = fleet::cmd::schedules::pending(stage, sdk).await.unwrap();
            pending.iter().any(|p| p.key == *key_ref).then_some(())
        },
    )
    .await;

    let inactive = until(
        "the license to be deactivated",
        Duration::from_secs(20),
        move || async move {
            licenses::license(deps_ref, id)
                .await
                .unwrap()
                .filter(|l| l.status == "INACTIVE")
        },
    )
    .await;
    let deactivated = inactive.deactivated_at.unwrap();
    println!(
        "license {license_id}: period end {}, deactivated at {deactivated}",
        period_end.unix_timestamp()
    );
    assert!(
        deactivated >= period_end.unix_timestamp(),
        "never before the period's end"
    );
    assert!(
        deactivated <= period_end.unix_timestamp() + 3,
        "within seconds of it"
    );
    stack.stop().await;
}
