//! `fleet events put`, `fleet infra synth` and `fleet infra deploy`.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::json;

fn fleet(endpoint: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fleet"));
    command.args(args).env_remove("FLEET_STAGE");
    if let Some(endpoint) = endpoint {
        command
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_REGION", emulator::REGION)
            .env("AWS_ACCESS_KEY_ID", emulator::ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", emulator::SECRET_ACCESS_KEY)
            .env_remove("AWS_PROFILE");
    }
    command.output().expect("the fleet binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn events_put_refuses_a_detail_that_is_not_a_json_object() {
    for detail in ["[1,2]", "\"text\"", "42", "{not json"] {
        let out = fleet(
            None,
            &[
                "events",
                "put",
                "--source",
                "s",
                "--detail-type",
                "t",
                "--detail",
                detail,
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "detail {detail}: {}",
            text(&out.stderr)
        );
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("detail"),
            "the error names the field: {stderr}"
        );
        assert!(
            stderr.contains("JSON object") || stderr.contains("valid JSON"),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn an_event_put_with_the_cli_reaches_the_queue_of_a_matching_rule() {
    let emulator = emulator::test_emulator().await;
    let stage = emulator::unique_stage();
    let deployed = fleet(
        Some(emulator.endpoint()),
        &["--stage", &stage, "infra", "deploy"],
    );
    assert!(deployed.status.success(), "{}", text(&deployed.stderr));

    // A rule on the stage's bus, targeting a queue: what a consuming service would add.
    let sdk = emulator.sdk_config();
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let bus = format!("fleet-{stage}");
    let queue = emulator::unique_name("orders");
    let queue_url = sqs
        .create_queue()
        .queue_name(&queue)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    events
        .put_rule()
        .name("orders")
        .event_bus_name(&bus)
        .event_pattern(
            json!({"source": ["acme.orders"], "detail-type": ["OrderPlaced"]}).to_string(),
        )
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("orders")
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("q")
                .arn(format!(
                    "arn:aws:sqs:{}:{}:{queue}",
                    emulator::REGION,
                    emulator::ACCOUNT_ID
                ))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let detail_file = std::env::temp_dir().join(format!("{queue}.json"));
    std::fs::write(&detail_file, r#"{"orderId": "o-1", "total": 42}"#).unwrap();
    let at_file = format!("@{}", detail_file.display());
    let put = fleet(
        Some(emulator.endpoint()),
        &[
            "--stage",
            &stage,
            "events",
            "put",
            "--source",
            "acme.orders",
            "--detail-type",
            "OrderPlaced",
            "--detail",
            &at_file,
        ],
    );
    assert!(put.status.success(), "{}", text(&put.stderr));
    let event_id = text(&put.stdout).trim().to_string();
    assert!(!event_id.is_empty(), "prints the event id");
    // Not matching the rule: must not arrive.
    let other = fleet(
        Some(emulator.endpoint()),
        &[
            "--stage",
            &stage,
            "events",
            "put",
            "--source",
            "acme.other",
            "--detail-type",
            "OrderPlaced",
            "--detail",
            "{}",
        ],
    );
    assert!(other.status.success(), "{}", text(&other.stderr));

    let deadline = Instant::now() + Duration::from_secs(15);
    let mut bodies = Vec::new();
    while bodies.is_empty() && Instant::now() < deadline {
        let out = sqs
            .receive_message()
            .queue_url(&queue_url)
            .wait_time_seconds(1)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        bodies.extend(
            out.messages()
                .iter()
                .filter_map(|m| m.body().map(str::to_string)),
        );
    }
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let event: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(event["id"], event_id.as_str());
    assert_eq!(event["detail"]["orderId"], "o-1");
}

#[tokio::test]
async fn infra_deploy_twice_succeeds_and_the_second_changes_nothing() {
    let emulator = emulator::test_emulator().await;
    let stage = emulator::unique_stage();
    let first = fleet(
        Some(emulator.endpoint()),
        &["--stage", &stage, "infra", "deploy"],
    );
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(
        text(&first.stdout).contains(&format!("fleet-{stage}")),
        "{}",
        text(&first.stdout)
    );
    let second = fleet(
        Some(emulator.endpoint()),
        &["--stage", &stage, "infra", "deploy"],
    );
    assert!(second.status.success(), "{}", text(&second.stderr));
    let report = text(&second.stdout);
    assert!(
        !report.contains("Created") && !report.contains("created"),
        "{report}"
    );
}

#[tokio::test]
async fn synthesized_templates_pass_cfn_lint() {
    let home = emulator::default_home();
    let venv = tokio::task::spawn_blocking(move || emulator::ensure_venv(&home))
        .await
        .unwrap()
        .expect("the project's virtualenv installs");
    let out_dir = std::env::temp_dir().join(emulator::unique_name("synth"));
    let synth = fleet(
        None,
        &["infra", "synth", "--out", out_dir.to_str().unwrap()],
    );
    assert!(synth.status.success(), "{}", text(&synth.stderr));
    let files: Vec<String> = text(&synth.stdout).lines().map(str::to_string).collect();
    assert!(
        files.len() >= 2,
        "a core stack plus one per service: {files:?}"
    );
    let lint = Command::new(venv.bin("cfn-lint"))
        .args(&files)
        .output()
        .expect("cfn-lint runs");
    // cfn-lint exits 2 for errors, 4 for warnings, 8 for informational findings.
    let code = lint.status.code().unwrap_or(-1);
    assert!(
        code & 2 == 0 && code >= 0,
        "cfn-lint found errors:\n{}",
        text(&lint.stdout)
    );
}
