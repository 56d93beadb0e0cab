//! The benchmark runs end to end on a small scale.

use crate::queues;

#[tokio::test]
async fn the_runtime_makes_far_fewer_requests_than_a_naive_loop() {
    // Only to start the emulator.
    let _ = queues(30, 3).await;
    let sdk = emulator::test_emulator().await.sdk_config();
    let report = sqs_worker::bench(&sdk, 200).await.unwrap();
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::to_value(&report).unwrap()).unwrap()
    );
    assert_eq!(report.runtime.messages, 200);
    assert!(report.runtime.sqs_requests_per_message <= 0.3, "{report:?}");
    assert!(report.naive.sqs_requests_per_message >= 2.0, "{report:?}");
}
