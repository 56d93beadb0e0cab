//! The `spin` model: success, failure, parameter limits and the hang marker.

use std::time::{Duration, Instant};

use serde_json::json;
use simulation::models::{CancelFlag, ModelError, Registry, RegistryConfig};

use crate::{Recorder, check_invalid, run};

#[test]
fn ok_spins_for_the_duration() {
    let registry = Registry::new(RegistryConfig::default()).unwrap();
    let recorder = Recorder::default();
    let started = Instant::now();
    let output = registry
        .get("spin")
        .unwrap()
        .run(&json!({"durationMs": 50}), &recorder, &CancelFlag::new())
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(output.summary, json!({"mode": "ok", "spunMs": 50}));
    assert_eq!(recorder.fractions().last(), Some(&1.0));
}

#[test]
fn zero_duration_is_a_no_op() {
    let output = run("spin", json!({"durationMs": 0})).unwrap();
    assert_eq!(output.summary, json!({"mode": "ok", "spunMs": 0}));
    assert!(run("spin", json!({})).is_ok());
}

#[test]
fn fail_mode_fails_without_retry() {
    let error = run("spin", json!({"durationMs": 1, "mode": "fail"})).unwrap_err();
    assert!(matches!(&error, ModelError::Failed(message) if message == "spin told to fail"));
    assert_eq!(error.error_name(), "Model.Failed");
    assert!(!error.is_retryable());
}

#[test]
fn invalid_spin_params_name_the_field() {
    check_invalid(
        "spin",
        json!({"durationMs": 3_600_001}),
        "params.durationMs",
        "at most 3600000",
    );
    check_invalid(
        "spin",
        json!({"mode": "explode"}),
        "params.mode",
        "unknown variant `explode`",
    );
    check_invalid(
        "spin",
        json!({"duration": 5}),
        "params.duration",
        "unknown field `duration`",
    );
}

#[test]
fn hang_asks_the_caller_to_stop_heartbeating() {
    let registry = Registry::new(RegistryConfig::default()).unwrap();
    let spin = registry.get("spin").unwrap();
    let params = json!({"durationMs": 30, "mode": "hang"});
    assert!(spin.suppresses_heartbeat(&params));
    assert!(!spin.suppresses_heartbeat(&json!({"durationMs": 30})));
    assert!(!registry.get("sir").unwrap().suppresses_heartbeat(&params));

    let recorder = Recorder::default();
    let output = spin.run(&params, &recorder, &CancelFlag::new()).unwrap();
    assert_eq!(output.summary, json!({"mode": "hang", "hungMs": 30}));
    assert!(
        recorder.fractions().is_empty(),
        "a hang reports no progress"
    );
}

#[test]
fn cancel_stops_a_long_spin() {
    let registry = Registry::new(RegistryConfig::default()).unwrap();
    let cancel = CancelFlag::new();
    let started = Instant::now();
    let error = std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            registry.get("spin").unwrap().run(
                &json!({"durationMs": 60_000}),
                &simulation::models::NoProgress,
                &cancel,
            )
        });
        std::thread::sleep(Duration::from_millis(20));
        cancel.cancel();
        worker.join().unwrap()
    })
    .unwrap_err();
    assert!(matches!(error, ModelError::Cancelled));
    assert!(started.elapsed() < Duration::from_secs(10));
}
