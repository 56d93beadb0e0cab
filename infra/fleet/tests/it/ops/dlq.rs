//! `fleet dlq`: list, show, export, redrive and purge, as a user runs them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::{
    InvokeServer, attribute, deploy, fleet, fleet_json, fleet_with, job_event, lambda_failure,
    queue_url, text,
};
use emulator::testing;

/// The acceptance scenario: a poisoned worker queue and an always-failing Lambda handler.
#[tokio::test]
async fn dead_letters_are_listed_shown_and_redriven_without_losing_a_message() {
    let emulator = emulator::test_emulator().await;
    let sdk = emulator.sdk_config();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let stage = emulator::unique_stage();
    deploy(&stage).await;
    let work_url = queue_url(&sqs, &format!("fleet-{stage}-simulation")).await;
    let dlq_url = queue_url(&sqs, &format!("fleet-{stage}-simulation-dlq")).await;
    let failures_url = queue_url(&sqs, &format!("fleet-{stage}-failures")).await;

    // Two poison messages dead-lettered by the worker at once, with its reason attributes.
    let secret = "AAAAKgAAAAIAAAAAAAAAAsecret-task-token-do-not-print";
    let mut poisoned = Vec::new();
    for n in 0..2 {
        let body = json!({"taskToken": format!("{secret}-{n}"), "jobId": format!("job-{n}"), "model": "nope", "params": {}})
            .to_string();
        sqs.send_message()
            .queue_url(&dlq_url)
            .message_body(&body)
            .message_attributes("fleet.error", attribute("Model.UnknownModel"))
            .message_attributes(
                "fleet.reason",
                attribute("no model named `nope` is installed"),
            )
            .message_attributes("fleet.source-queue", attribute(&work_url))
            .message_attributes("fleet.receive-count", attribute("1"))
            .message_attributes("fleet.failed-at", attribute("2026-01-01T00:00:00Z"))
            .message_attributes("fleet.worker", attribute("worker-1"))
            .send()
            .await
            .unwrap();
        poisoned.push(body);
    }
    // One that kept failing until the queue's redrive policy (5 receives) moved it.
    let retried =
        json!({"taskToken": format!("{secret}-2"), "jobId": "job-2", "model": "sir", "params": {}})
            .to_string();
    sqs.send_message()
        .queue_url(&work_url)
        .message_body(&retried)
        .send()
        .await
        .unwrap();
    testing::wait_for(
        "the redrive policy to move the message",
        Duration::from_secs(20),
        || async {
            sqs.receive_message()
                .queue_url(&work_url)
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
            (testing::counts(&sdk, &dlq_url).await.0 == 3).then_some(())
        },
    )
    .await;
    poisoned.push(retried);
    // Two events an asynchronous function failed on every retry.
    let events = [job_event("job-10"), job_event("job-11")];
    for (n, event) in events.iter().enumerate() {
        lambda_failure(&sdk, &stage, event, &format!("req-{n}")).await;
    }
    testing::wait_for(
        "the failures to reach the failures queue",
        Duration::from_secs(20),
        || async { (testing::counts(&sdk, &failures_url).await.0 == 2).then_some(()) },
    )
    .await;

    // `dlq ls --json`: both DLQs, their kinds and depths.
    let listed = fleet_json(&["--stage", &stage, "--json", "dlq", "ls"]).await;
    let by_name: BTreeMap<String, &Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["name"].as_str().unwrap().to_owned(), d))
        .collect();
    let sim = by_name[&format!("fleet-{stage}-simulation-dlq")];
    assert_eq!(sim["kind"], "sqs-redrive");
    assert_eq!(sim["depth"], 3);
    assert_eq!(
        sim["sources"][0]["name"],
        format!("fleet-{stage}-simulation")
    );
    assert!(sim["oldest_age_seconds"].is_u64(), "{sim}");
    let failures = by_name[&format!("fleet-{stage}-failures")];
    assert_eq!(failures["kind"], "lambda-failures");
    assert_eq!(failures["depth"], 2);
    let table = fleet(&["--stage", &stage, "dlq", "ls"]).await;
    assert!(table.status.success());
    let table = text(&table.stdout);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("lambda-failures") && table.contains("sqs-redrive"),
        "{table}"
    );

    // `dlq show`: the reasons, without consuming and without printing a task token.
    let shown = fleet_json(&["--stage", &stage, "--json", "dlq", "show", "simulation-dlq"]).await;
    let shown = shown.as_array().unwrap();
    assert_eq!(shown.len(), 3);
    let worker = shown
        .iter()
        .find(|m| m["reason"]["kind"] == "worker")
        .unwrap();
    assert_eq!(worker["reason"]["error"], "Model.UnknownModel");
    assert_eq!(
        worker["reason"]["reason"],
        "no model named `nope` is installed"
    );
    assert_eq!(worker["receive_count"], 1);
    assert_eq!(worker["first_failed_at"], "2026-01-01T00:00:00Z");
    assert_eq!(worker["body"]["kind"], "simulation-task");
    assert!(
        worker["correlation_id"]
            .as_str()
            .unwrap()
            .starts_with("job-")
    );
    let moved = shown
        .iter()
        .find(|m| m["reason"]["kind"] == "max-receives")
        .unwrap();
    assert_eq!(moved["reason"]["max_receive_count"], 5);
    assert_eq!(moved["correlation_id"], "job-2");
    let human = fleet(&["--stage", &stage, "dlq", "show", "simulation-dlq"]).await;
    let human = text(&human.stdout);
    assert!(
        human.contains("Model.UnknownModel: no model named `nope` is installed"),
        "{human}"
    );
    assert!(!human.contains(secret) && !shown.iter().any(|m| m.to_string().contains(secret)));
    let lambda = fleet_json(&["--stage", &stage, "--json", "dlq", "show", "failures"]).await;
    let lambda = lambda.as_array().unwrap();
    assert_eq!(lambda.len(), 2);
    for m in lambda {
        assert_eq!(m["reason"]["kind"], "lambda");
        assert_eq!(m["reason"]["error_code"], "200");
        assert_eq!(m["reason"]["error_message"], "the model registry is down");
        assert!(
            m["reason"]["request_id"]
                .as_str()
                .unwrap()
                .starts_with("req-")
        );
        assert_eq!(m["body"]["decoded"], "JobRequested v1");
        assert!(m["correlation_id"].as_str().unwrap().starts_with("job-1"));
    }
    // Peeking left every message visible.
    assert_eq!(testing::counts(&sdk, &dlq_url).await, (3, 0));
    assert_eq!(testing::counts(&sdk, &failures_url).await, (2, 0));

    // `dlq export`: JSON lines, tokens redacted, nothing consumed.
    let exported = fleet(&["--stage", &stage, "dlq", "export", "simulation-dlq"]).await;
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    let lines: Vec<Value> = text(&exported.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(!text(&exported.stdout).contains(secret));
    assert_eq!(testing::counts(&sdk, &dlq_url).await, (3, 0));

    // The cause is fixed: one message by its id first (`--message-id`, what the ops
    // console's "Redrive this one" sends), then the rest.
    let shown = fleet(&["--stage", &stage, "--json", "dlq", "show", "simulation-dlq"]).await;
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    let id = shown[1]["message_id"].as_str().unwrap().to_owned();
    let one = fleet(&[
        "--stage",
        &stage,
        "--json",
        "dlq",
        "redrive",
        "simulation-dlq",
        "--message-id",
        &id,
    ])
    .await;
    assert!(one.status.success(), "{}", text(&one.stderr));
    let report: Value = serde_json::from_slice(&one.stdout).unwrap();
    assert_eq!(report["redriven"], 1, "{report}");
    assert_eq!(testing::counts(&sdk, &dlq_url).await, (2, 0));
    let left = fleet(&["--stage", &stage, "--json", "dlq", "show", "simulation-dlq"]).await;
    let left: Value = serde_json::from_slice(&left.stdout).unwrap();
    assert!(
        left.as_array()
            .unwrap()
            .iter()
            .all(|m| m["message_id"] != id.as_str()),
        "{left}"
    );
    let lambda_api = InvokeServer::start().await;
    let out = fleet(&["--stage", &stage, "dlq", "redrive", "simulation-dlq"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("redrove 2 message(s)"),
        "{}",
        text(&out.stdout)
    );
    // JobRequested feeds two functions (jobs-requested and notifier-events): the failure
    // does not say which one failed, so the redrive asks rather than guesses.
    let ambiguous = fleet_with(
        &[("AWS_ENDPOINT_URL_LAMBDA", &lambda_api.url)],
        &["--stage", &stage, "--json", "dlq", "redrive", "failures"],
    )
    .await;
    let said = format!("{}{}", text(&ambiguous.stdout), text(&ambiguous.stderr));
    assert!(
        said.contains("jobs-requested")
            && said.contains("notifier-events")
            && said.contains("--function"),
        "{said}"
    );
    assert_eq!(
        testing::counts(&sdk, &failures_url).await.0,
        2,
        "nothing was redriven or lost"
    );
    let out = fleet_with(
        &[("AWS_ENDPOINT_URL_LAMBDA", &lambda_api.url)],
        &[
            "--stage",
            &stage,
            "--json",
            "dlq",
            "redrive",
            "failures",
            "--function",
            "jobs-requested",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["redriven"], 2, "{report}");

    // Nothing lost: both DLQs are empty and every message arrived where it failed.
    assert_eq!(testing::counts(&sdk, &dlq_url).await, (0, 0));
    assert_eq!(testing::counts(&sdk, &failures_url).await, (0, 0));
    let mut arrived: Vec<String> =
        testing::collect_until(&sdk, &work_url, Duration::from_secs(20), |seen| {
            seen.len() >= 3
        })
        .await
        .iter()
        .map(Value::to_string)
        .collect();
    arrived.sort();
    let mut poisoned: Vec<String> = poisoned
        .iter()
        .map(|body| serde_json::from_str::<Value>(body).unwrap().to_string())
        .collect();
    poisoned.sort();
    assert_eq!(arrived, poisoned);
    let calls = lambda_api.calls();
    lambda_api.stop().await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    for call in &calls {
        assert_eq!(call.function, format!("fleet-{stage}-jobs-requested"));
        assert_eq!(call.invocation_type, "Event");
    }
    let mut payloads: Vec<String> = calls.iter().map(|c| c.payload.to_string()).collect();
    let mut originals: Vec<String> = events.iter().map(Value::to_string).collect();
    payloads.sort();
    originals.sort();
    assert_eq!(payloads, originals, "re-delivered as the original events");
}

#[tokio::test]
async fn purge_asks_for_confirmation_and_refuses_without_a_terminal() {
    let emulator = emulator::test_emulator().await;
    let sdk = emulator.sdk_config();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let stage = emulator::unique_stage();
    deploy(&stage).await;
    let url = queue_url(&sqs, &format!("fleet-{stage}-simulation-dlq")).await;
    sqs.send_message()
        .queue_url(&url)
        .message_body("poison")
        .send()
        .await
        .unwrap();

    let refused = fleet(&["--stage", &stage, "dlq", "purge", "simulation-dlq"]).await;
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("--yes"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(testing::counts(&sdk, &url).await.0, 1);

    let unknown = fleet(&["--stage", &stage, "dlq", "show", "nope"]).await;
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown.stderr).contains("simulation-dlq"),
        "names the DLQs: {}",
        text(&unknown.stderr)
    );

    let purged = fleet(&["--stage", &stage, "dlq", "purge", "simulation-dlq", "--yes"]).await;
    assert!(purged.status.success(), "{}", text(&purged.stderr));
    testing::wait_for("the purge", Duration::from_secs(10), || async {
        (testing::counts(&sdk, &url).await == (0, 0)).then_some(())
    })
    .await;
}

#[test]
fn the_help_says_when_redrive_needs_a_function() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleet"))
        .args(["dlq", "redrive", "--help"])
        .output()
        .unwrap();
    let help = text(&out.stdout);
    assert!(help.contains("--function"), "{help}");
    assert!(help.contains("matches none or several"), "{help}");
}
