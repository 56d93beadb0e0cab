//! `fleet dev` brings the stack up, prints how to reach it, and leaves nothing behind.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every descendant of `pid`, from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                out.push(child);
                stack.push(child);
            }
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2).is_none_or(|state| state != "Z"))
        .unwrap_or(false)
}

#[tokio::test]
async fn fleet_dev_prints_the_exports_and_ctrl_c_leaves_no_process_behind() {
    let stage = emulator::unique_stage();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleet"))
        .args([
            "--stage",
            &stage,
            "dev",
            "--emulator-port",
            "0",
            "--http-port",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A process group of its own, which Ctrl-C in a terminal signals as a whole.
        .process_group(0)
        .spawn()
        .expect("fleet dev starts");
    // Its logs, passed through and kept.
    let stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            lines.push(line);
        }
        lines
    });
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut printed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !printed.iter().any(|l: &String| l.contains("ready")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => printed.push(line),
            Err(_) => panic!("fleet dev did not become ready: {printed:#?}"),
        }
    }
    let exports = printed
        .iter()
        .find(|l| l.starts_with("export AWS_ENDPOINT_URL="))
        .unwrap_or_else(|| panic!("no export line in {printed:#?}"));
    let endpoint = exports
        .split_whitespace()
        .find_map(|w| w.strip_prefix("AWS_ENDPOINT_URL="))
        .unwrap()
        .to_string();

    // The exported endpoint serves the stage: bus, queues with redrive, topic, tables.
    let sdk = emulator::sdk_config_for(&endpoint);
    let buses = aws_sdk_eventbridge::Client::new(&sdk)
        .list_event_buses()
        .send()
        .await
        .unwrap();
    assert!(
        buses
            .event_buses()
            .iter()
            .any(|b| b.name() == Some(&format!("fleet-{stage}")))
    );
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let urls = sqs
        .list_queues()
        .queue_name_prefix(format!("fleet-{stage}-"))
        .send()
        .await
        .unwrap();
    let urls: Vec<String> = urls.queue_urls().to_vec();
    assert!(urls.iter().any(|u| u.ends_with("-failures")), "{urls:?}");
    for url in urls
        .iter()
        // `-local-<function>` queues are the local host's stand-in for Lambda's internal
        // asynchronous-invocation queue: the host applies Lambda's retries and dead-letter
        // topic to them itself, so they carry no redrive policy (and do not exist on AWS).
        .filter(|u| !u.ends_with("-dlq") && !u.ends_with("-failures") && !u.contains("-local-"))
    {
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .unwrap();
        let policy = attrs
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy))
            .unwrap_or_else(|| panic!("{url} has no redrive policy"));
        assert!(policy.contains("-dlq"), "{url}: {policy}");
    }
    let topics = aws_sdk_sns::Client::new(&sdk)
        .list_topics()
        .send()
        .await
        .unwrap();
    let failures = topics
        .topics()
        .iter()
        .filter_map(|t| t.topic_arn())
        .find(|a| a.ends_with(&format!("fleet-{stage}-failures")))
        .expect("the failures topic")
        .to_string();
    let subs = aws_sdk_sns::Client::new(&sdk)
        .list_subscriptions_by_topic()
        .topic_arn(&failures)
        .send()
        .await
        .unwrap();
    assert!(
        subs.subscriptions()
            .iter()
            .any(|s| s.protocol() == Some("sqs"))
    );
    let tables = aws_sdk_dynamodb::Client::new(&sdk)
        .list_tables()
        .send()
        .await
        .unwrap();
    assert!(
        tables
            .table_names()
            .iter()
            .any(|t| t.starts_with(&format!("fleet-{stage}-")))
    );

    // A user submits a simulation through the CLI and waits for its summary; it runs on
    // one of the worker processes `fleet dev` started.
    let api = printed
        .iter()
        .find_map(|l| l.strip_prefix("HTTP API: "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no HTTP API line in {printed:#?}"))
        .to_string();
    let submit = Command::new(env!("CARGO_BIN_EXE_fleet"))
        .args(["jobs", "submit", "--model", "sir", "--wait", "--timeout-secs", "120", "--api", &api])
        .args(["--params", r#"{"population": 5000, "initialInfected": 5, "beta": 0.3, "gamma": 0.1, "days": 120, "runs": 20, "seed": 1}"#])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&submit.stdout);
    assert!(
        submit.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&submit.stderr)
    );
    assert!(
        out.contains("SUCCEEDED") && out.contains("peakDay") && out.contains("finalSizeMedian"),
        "{out}"
    );

    // Ctrl-C (SIGINT to the whole group): every process it started goes away.
    let started = descendants(child.id());
    assert!(!started.is_empty(), "fleet dev started the emulator");
    let kill = Command::new("kill")
        .args(["-INT", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    assert!(kill.success());
    let asked = Instant::now();
    let deadline = asked + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "fleet dev exits cleanly: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "fleet dev did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Idle workers let their receive finish before they stop: `fleet dev` polls with a
    // 2 s wait, so Ctrl-C does not wait out SQS's 20 s (it took 18 to 21 s before).
    let stopping = asked.elapsed();
    assert!(
        stopping < Duration::from_secs(12),
        "fleet dev took {stopping:?} to stop after Ctrl-C"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while started.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<u32> = started.into_iter().filter(|&p| alive(p)).collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");
    reader.join().unwrap();
    // The emulator outlasts the shutdown: nothing that stops calls it after it is gone.
    let unreachable: Vec<String> = logs
        .join()
        .unwrap()
        .into_iter()
        .filter(|l| l.contains("dispatch failure"))
        .collect();
    assert!(
        unreachable.is_empty(),
        "calls to a stopped emulator: {unreachable:#?}"
    );
}
