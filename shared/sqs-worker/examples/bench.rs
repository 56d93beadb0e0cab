//! Runs [`sqs_worker::bench`] against the local emulator and prints the report as JSON:
//! `cargo run -p sqs-worker --example bench -- 1000`. Uses `FLEET_TEST_ENDPOINT` when set,
//! else starts a private emulator.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let messages = match std::env::args().nth(1).map(|n| n.parse::<usize>()) {
        None => 1000,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("error: the message count must be a whole number: {e}");
            return ExitCode::FAILURE;
        }
    };
    let sdk = emulator::test_emulator().await.sdk_config();
    match sqs_worker::bench(&sdk, messages).await {
        Ok(report) => match serde_json::to_string_pretty(&report) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
