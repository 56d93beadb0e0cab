//! `fleet events tail`: a live event, and nothing left behind on Ctrl-C.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};

use super::{deploy, fleet, text};

#[tokio::test]
async fn events_tail_prints_an_event_put_by_another_process_and_leaves_nothing_behind() {
    let emulator = emulator::test_emulator().await;
    let sdk = emulator.sdk_config();
    let stage = emulator::unique_stage();
    deploy(&stage).await;
    let mut tail = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleet"))
        .args(["--stage", &stage, "events", "tail"])
        .env_remove("FLEET_STAGE")
        .env_remove("AWS_PROFILE")
        .env("AWS_ENDPOINT_URL", emulator.endpoint())
        .env("AWS_REGION", emulator::REGION)
        .env("AWS_ACCESS_KEY_ID", emulator::ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", emulator::SECRET_ACCESS_KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("fleet events tail starts");
    let mut stdout = BufReader::new(tail.stdout.take().unwrap()).lines();
    let mut stderr = BufReader::new(tail.stderr.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            if line.contains("tailing bus") {
                return line;
            }
        }
        panic!("the tail ended before it was ready")
    })
    .await
    .expect("the tail becomes ready");
    assert!(ready.contains(&format!("fleet-{stage}-tail-")), "{ready}");

    let put = fleet(&[
        "--stage",
        &stage,
        "events",
        "put",
        "--source",
        "test.tail",
        "--detail-type",
        "Ping",
        "--detail",
        r#"{"n": 1}"#,
    ])
    .await;
    assert!(put.status.success(), "{}", text(&put.stderr));
    let event_id = text(&put.stdout).trim().to_owned();
    let line = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
        .await
        .expect("the tail prints the event")
        .unwrap()
        .expect("a line");
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["id"], event_id.as_str());
    assert_eq!(event["detail"]["n"], 1);

    let pid = tail.id().unwrap().to_string();
    let kill = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(30), tail.wait())
        .await
        .expect("the tail stops on Ctrl-C")
        .unwrap();
    assert!(status.success(), "{status}");

    let rules = aws_sdk_eventbridge::Client::new(&sdk)
        .list_rules()
        .event_bus_name(format!("fleet-{stage}"))
        .name_prefix(format!("fleet-{stage}-tail-"))
        .send()
        .await
        .unwrap();
    assert!(
        rules.rules().is_empty(),
        "rules left behind: {:?}",
        rules.rules()
    );
    let queues = aws_sdk_sqs::Client::new(&sdk)
        .list_queues()
        .queue_name_prefix(format!("fleet-{stage}-tail-"))
        .send()
        .await
        .unwrap();
    assert!(
        queues.queue_urls().is_empty(),
        "queues left behind: {:?}",
        queues.queue_urls()
    );
}
