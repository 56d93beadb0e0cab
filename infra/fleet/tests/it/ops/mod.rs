//! The on-call tools against the emulator: `fleet dlq`, `fleet runs`, `fleet tokens` and
//! `fleet events tail`, run as a user runs them (the library's own scenarios, for what the
//! stage's own topology cannot show, are `fleet-ops`'s tests).

// The helpers below are test code too: like the tests, they panic on any failure
// (`allow-unwrap-in-tests` only covers `#[test]` functions themselves).
#![allow(clippy::unwrap_used)]

mod dlq;
mod runs;
mod tail;

/// The seeding helpers `fleet-ops`'s own scenarios use (events, failures published as
/// Lambda does, a stand-in Invoke API), written once there.
#[allow(dead_code)]
#[path = "../../../../ops/tests/it/support.rs"]
mod seed;

use seed::{InvokeServer, job_event, lambda_failure, queue_url};

use std::process::{Output, Stdio};

use aws_sdk_sqs::types::MessageAttributeValue;
use serde_json::Value;

/// Runs the `fleet` binary against the emulator with `env` added.
async fn fleet_with(env: &[(&str, &str)], args: &[&str]) -> Output {
    let emulator = emulator::test_emulator().await;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleet"));
    command
        .args(args)
        .env_remove("FLEET_STAGE")
        .env_remove("AWS_PROFILE")
        .env("AWS_ENDPOINT_URL", emulator.endpoint())
        .env("AWS_REGION", emulator::REGION)
        .env("AWS_ACCESS_KEY_ID", emulator::ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", emulator::SECRET_ACCESS_KEY)
        .stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().await.expect("the fleet binary runs")
}

async fn fleet(args: &[&str]) -> Output {
    fleet_with(&[], args).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the binary, expects success and parses its JSON output.
async fn fleet_json(args: &[&str]) -> Value {
    let out = fleet(args).await;
    assert!(
        out.status.success(),
        "fleet {args:?}: {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "fleet {args:?} printed no JSON ({e}): {}",
            text(&out.stdout)
        )
    })
}

async fn deploy(stage: &str) {
    let out = fleet(&["--stage", stage, "infra", "deploy"]).await;
    assert!(out.status.success(), "deploy: {}", text(&out.stderr));
}

fn attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .unwrap()
}
