//! `fleet runs` and `fleet tokens`: a simulation job's execution, failed and completed
//! through the CLI.

use std::time::Duration;

use serde_json::{Value, json};

use super::{deploy, fleet, fleet_json, queue_url, text};
use emulator::testing;

/// The stage's simulation-job state machine, created from its definition unless the
/// stage's deployment already did.
async fn simulation_job(sdk: &aws_config::SdkConfig, stage: &str) -> String {
    let sfn = aws_sdk_sfn::Client::new(sdk);
    let name = format!("fleet-{stage}-simulation-job");
    let machines = sfn.list_state_machines().send().await.unwrap();
    if let Some(m) = machines.state_machines().iter().find(|m| m.name() == name) {
        return m.state_machine_arn().to_owned();
    }
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let queue = queue_url(&sqs, &format!("fleet-{stage}-simulation")).await;
    let definition = std::fs::read_to_string(
        provision::default_definitions_dir().join("simulation-job.asl.json"),
    )
    .unwrap()
    .replace("${SimulationQueueUrl}", &queue)
    .replace("${EventBusName}", &format!("fleet-{stage}"));
    sfn.create_state_machine()
        .name(&name)
        .definition(definition)
        .role_arn(format!(
            "arn:aws:iam::{}:role/fleet-test",
            emulator::ACCOUNT_ID
        ))
        .send()
        .await
        .unwrap()
        .state_machine_arn()
        .to_owned()
}

/// Starts a job and takes its task from the simulation queue, as a worker would.
async fn start_job(sdk: &aws_config::SdkConfig, stage: &str, machine: &str) -> (String, String) {
    let sfn = aws_sdk_sfn::Client::new(sdk);
    let job = emulator::unique_name("job");
    sfn.start_execution()
        .state_machine_arn(machine)
        .name(&job)
        .input(json!({"jobId": job, "model": "sir", "params": {"beta": 0.3}}).to_string())
        .send()
        .await
        .unwrap();
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let url = queue_url(&sqs, &format!("fleet-{stage}-simulation")).await;
    let token = testing::wait_for(
        "the job's task on the simulation queue",
        Duration::from_secs(20),
        || async {
            let out = sqs
                .receive_message()
                .queue_url(&url)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            out.messages().iter().find_map(|m| {
                let body: Value = serde_json::from_str(m.body()?).ok()?;
                (body["jobId"] == job.as_str())
                    .then(|| body["taskToken"].as_str().map(str::to_owned))?
            })
        },
    )
    .await;
    (job, token)
}

async fn wait_status(sdk: &aws_config::SdkConfig, machine: &str, job: &str, status: &str) {
    let sfn = aws_sdk_sfn::Client::new(sdk);
    let arn = format!(
        "{}:{job}",
        machine.replacen(":stateMachine:", ":execution:", 1)
    );
    testing::wait_for(
        &format!("execution {job} to be {status}"),
        Duration::from_secs(30),
        || async {
            let out = sfn
                .describe_execution()
                .execution_arn(&arn)
                .send()
                .await
                .unwrap();
            (out.status().as_str() == status).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_failed_simulation_run_is_listed_and_its_timeline_names_the_failing_state() {
    let emulator = emulator::test_emulator().await;
    let sdk = emulator.sdk_config();
    let stage = emulator::unique_stage();
    deploy(&stage).await;
    let machine = simulation_job(&sdk, &stage).await;
    let (job, token) = start_job(&sdk, &stage, &machine).await;

    // The worker gives up on the job, through the CLI.
    let out = fleet(&[
        "--stage",
        &stage,
        "tokens",
        "fail",
        &token,
        "--error",
        "Model.Failed",
        "--cause",
        "diverged",
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_status(&sdk, &machine, &job, "FAILED").await;

    let failed = fleet_json(&[
        "--stage", &stage, "--json", "runs", "ls", "--status", "failed", "--since", "1h",
    ])
    .await;
    let names: Vec<&str> = failed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, [job.as_str()]);
    assert_eq!(
        failed[0]["machine"],
        format!("fleet-{stage}-simulation-job")
    );
    let succeeded = fleet_json(&[
        "--stage",
        &stage,
        "--json",
        "runs",
        "ls",
        "--status",
        "SUCCEEDED",
    ])
    .await;
    assert_eq!(succeeded, json!([]));
    let table = text(
        &fleet(&[
            "--stage",
            &stage,
            "runs",
            "ls",
            "--machine",
            "simulation-job",
        ])
        .await
        .stdout,
    );
    assert!(table.contains(&job) && table.contains("FAILED"), "{table}");

    let shown = fleet_json(&["--stage", &stage, "--json", "runs", "show", &job]).await;
    assert_eq!(shown["status"], "FAILED");
    assert_eq!(shown["error"], "Model.Failed");
    assert_eq!(shown["failed_state"], "Failed");
    assert_eq!(shown["first_error"]["state"], "Run");
    assert_eq!(shown["first_error"]["error"], "Model.Failed");
    let steps = shown["steps"].as_array().unwrap();
    let run = steps.iter().find(|s| s["state"] == "Run").unwrap();
    assert_eq!(run["outcome"], "caught");
    assert_eq!(run["resource"], "sqs:sendMessage.waitForTaskToken");
    assert!(run["token_wait"]["until"].is_string(), "{run}");
    assert!(!shown.to_string().contains(&token), "the token is redacted");
    let last = steps.last().unwrap();
    assert_eq!(
        (last["state"].as_str(), last["outcome"].as_str()),
        (Some("Failed"), Some("failed"))
    );

    let human = text(
        &fleet(&["--stage", &stage, "runs", "show", &job])
            .await
            .stdout,
    );
    assert!(human.contains("failed in  state Failed"), "{human}");
    assert!(
        human.contains("first error in state Run: Model.Failed"),
        "{human}"
    );
    assert!(
        human.contains("waited") && human.contains("on task token"),
        "{human}"
    );

    // RedriveExecution: on AWS it redrives; moto lacks it, and the message says so.
    let arn = shown["arn"].as_str().unwrap();
    let redrive = fleet(&["--stage", &stage, "runs", "redrive", arn]).await;
    if !redrive.status.success() {
        assert_eq!(redrive.status.code(), Some(1));
        let stderr = text(&redrive.stderr);
        assert!(
            stderr.contains("does not implement RedriveExecution"),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn tokens_ls_lists_a_job_waiting_on_its_worker_and_tokens_succeed_completes_it() {
    let emulator = emulator::test_emulator().await;
    let sdk = emulator.sdk_config();
    let stage = emulator::unique_stage();
    deploy(&stage).await;
    let machine = simulation_job(&sdk, &stage).await;
    let (job, token) = start_job(&sdk, &stage, &machine).await;

    let waiting = fleet_json(&["--stage", &stage, "--json", "tokens", "ls"]).await;
    let waiting = waiting.as_array().unwrap();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    let w = &waiting[0];
    assert_eq!(w["execution"], job.as_str());
    assert_eq!(w["state"], "Run");
    assert_eq!(w["token"], token.as_str());
    assert_eq!(w["heartbeat_seconds"], 60);
    assert_eq!(w["timeout_seconds"], 3600);
    assert!(w["timeout_left_seconds"].as_i64().unwrap() > 3500, "{w}");
    assert!(w["waited_seconds"].as_f64().unwrap() >= 0.0);
    let table = text(&fleet(&["--stage", &stage, "tokens", "ls"]).await.stdout);
    assert!(table.contains(&token) && table.contains("Run"), "{table}");

    let beat = fleet(&["--stage", &stage, "tokens", "heartbeat", &token]).await;
    assert!(beat.status.success(), "{}", text(&beat.stderr));
    let bad_output = fleet(&[
        "--stage", &stage, "tokens", "succeed", &token, "--output", "{nope",
    ])
    .await;
    assert_eq!(bad_output.status.code(), Some(2));

    let output = json!({
        "summary": {"peak": 0.4},
        "result": {"bucket": "results", "key": format!("{job}.json"), "bytes": 42},
        "worker": "on-call"
    });
    let done = fleet(&[
        "--stage",
        &stage,
        "tokens",
        "succeed",
        &token,
        "--output",
        &output.to_string(),
    ])
    .await;
    assert!(done.status.success(), "{}", text(&done.stderr));
    wait_status(&sdk, &machine, &job, "SUCCEEDED").await;
    let waiting = fleet_json(&["--stage", &stage, "--json", "tokens", "ls"]).await;
    assert_eq!(waiting, json!([]));

    let again = fleet(&["--stage", &stage, "tokens", "succeed", &token]).await;
    assert_eq!(again.status.code(), Some(1), "a used token is refused");
    let refusal = text(&again.stderr);
    assert!(
        refusal.contains("TaskTimedOut")
            && refusal.contains("no longer open")
            && refusal.contains("tokens ls"),
        "{refusal}"
    );
}
