//! `fleet chaos` catches what it claims to: with a protection switched off, a run with
//! only the matching fault reports the violation and exits non-zero. (`.ci/run` runs the
//! short configuration with every fault kind on and the protections in place, which must
//! report none.)

use std::process::Command;

use serde_json::Value;

/// Runs `fleet chaos` with `args`; returns whether it passed and its report.
fn chaos(args: &[&str]) -> (bool, Value) {
    let home = emulator::default_home();
    let output = Command::new(env!("CARGO_BIN_EXE_fleet"))
        .arg("chaos")
        .args([
            "--baseline-jobs",
            "0",
            "--kill-every",
            "0",
            "--term-every",
            "0",
        ])
        .args(args)
        .arg("--home")
        .arg(&home)
        .env("RUST_LOG", "warn")
        .output()
        .expect("fleet chaos runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("fleet chaos printed no report ({e}); stderr:\n{stderr}"));
    (output.status.success(), report)
}

#[tokio::test]
async fn without_idempotency_keys_a_retried_submission_becomes_a_second_job_and_the_run_fails() {
    // No injected fault at all: the plan's `http-retried` jobs are sent twice, as a client
    // that timed out would, and without a key the API makes a second job each time.
    let (passed, report) = chaos(&[
        "--jobs",
        "12",
        "--rate",
        "0",
        "--seed",
        "5",
        "--without-idempotency-keys",
    ]);
    let retried = report["faults"]["via"]["http-retried"]
        .as_u64()
        .unwrap_or(0);
    assert!(retried > 0, "the plan sends some jobs twice: {report}");
    assert_eq!(
        report["counts"]["duplicateJob"].as_u64(),
        Some(retried),
        "one duplicate per job sent twice: {report}"
    );
    assert!(!passed, "a violation fails the run");
    let violation = report["violations"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["kind"] == "duplicateJob"))
        .expect("the duplicate is listed");
    assert!(
        violation["jobId"].is_string(),
        "with its job id: {violation}"
    );
}

#[tokio::test]
async fn subscribers_resuming_without_since_miss_frames_and_the_run_fails() {
    // Only subscriber drops; one user, so its channel is busy while a subscriber is away.
    let (passed, report) = chaos(&[
        "--jobs",
        "20",
        "--users",
        "1",
        "--rate",
        "0",
        "--subscriber-drop-rate",
        "0.5",
        "--submit-over",
        "8",
        "--seed",
        "6",
        "--resume-without-since",
    ]);
    assert!(
        report["injected"]["subscriberDrops"].as_u64().unwrap_or(0) > 0,
        "subscribers dropped: {report}"
    );
    let gaps = report["counts"]["gap"].as_u64().unwrap_or(0)
        + report["counts"]["missingFrame"].as_u64().unwrap_or(0);
    assert!(gaps > 0, "a resume without `since` loses frames: {report}");
    assert_eq!(report["counts"]["lost"], 0, "{report}");
    assert!(!passed);
}
