//! Process-level faults, with the real `simulation-worker` binary: killed mid-job, and
//! stopped with SIGTERM with and without time to finish.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_sfn::types::ExecutionStatus;
use emulator::testing::wait_until;
use rustix::process::{Pid, Signal, kill_process};
use serde_json::json;

use crate::stack::{Stack, job_id};

/// A worker process whose JSON log goes to a file; killed when dropped.
struct WorkerProcess {
    child: Child,
    log: PathBuf,
}

impl WorkerProcess {
    fn spawn(stack: &Stack, env: &[(&str, &str)]) -> WorkerProcess {
        let log = std::env::temp_dir().join(format!(
            "{}.log",
            emulator::unique_name("simulation-worker")
        ));
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let endpoint = stack
            .sdk
            .endpoint_url()
            .expect("the emulator's endpoint")
            .to_string();
        let mut command = Command::new(env!("CARGO_BIN_EXE_simulation-worker"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_REGION", emulator::REGION)
            .env("AWS_ACCESS_KEY_ID", emulator::ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", emulator::SECRET_ACCESS_KEY)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("STAGE", "test")
            .env("QUEUE_URL", stack.queue.as_str())
            .env("TABLE", &stack.table)
            .env("BUCKET", &stack.bucket)
            .env("BUS", &stack.bus)
            .env("HEARTBEAT_SECS", "1")
            .env("METRICS_SECS", "0")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in env {
            command.env(k, v);
        }
        WorkerProcess {
            child: command.spawn().unwrap(),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    async fn logged(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "the worker did not log {needle:?} within {within:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_child(&self.child);
        kill_process(pid, signal).unwrap();
    }

    /// Waits for the process to exit.
    async fn exited(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the worker did not exit within {within:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

#[tokio::test]
async fn a_job_of_a_killed_worker_is_finished_by_another_and_stored_once() {
    let stack = Stack::new(2, 10).await;
    let job = job_id();
    let execution = stack.start(&job, "spin", json!({"durationMs": 4000})).await;
    let env = [("VISIBILITY_SECS", "2")];
    let mut first = WorkerProcess::spawn(&stack, &env);
    first.logged("job started", Duration::from_secs(20)).await;
    first.signal(Signal::KILL);
    first.exited(Duration::from_secs(5)).await;

    let second = WorkerProcess::spawn(&stack, &env);
    let finished = stack.finished(&execution, Duration::from_secs(30)).await;
    assert_eq!(
        finished.status,
        ExecutionStatus::Succeeded,
        "{finished:?}\n{}",
        second.log()
    );
    assert_eq!(stack.result_keys().await, [format!("results/{job}.json")]);
    assert!(second.log().contains("job started"));
    wait_until("the message is deleted", Duration::from_secs(5), || async {
        stack.counts(&stack.queue).await == (0, 0)
    })
    .await;
}

#[tokio::test]
async fn sigterm_lets_the_running_job_finish() {
    let stack = Stack::new(30, 10).await;
    let execution = stack
        .start(&job_id(), "spin", json!({"durationMs": 3000}))
        .await;
    let mut worker = WorkerProcess::spawn(&stack, &[("DRAIN_TIMEOUT_SECS", "20")]);
    worker.logged("job started", Duration::from_secs(20)).await;
    worker.signal(Signal::TERM);
    let status = worker.exited(Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}\n{}", worker.log());
    assert_eq!(
        stack.status(&execution).await,
        ExecutionStatus::Succeeded,
        "{}",
        worker.log()
    );
    assert_eq!(stack.counts(&stack.queue).await, (0, 0));
}

#[tokio::test]
async fn sigterm_past_the_drain_timeout_releases_the_job_at_once() {
    // A 30 s lease: the message is visible again within seconds only if it was released.
    let stack = Stack::new(30, 60).await;
    let execution = stack
        .start(&job_id(), "spin", json!({"durationMs": 30000}))
        .await;
    let mut worker = WorkerProcess::spawn(&stack, &[("DRAIN_TIMEOUT_SECS", "1")]);
    worker.logged("job started", Duration::from_secs(20)).await;
    let stopping = Instant::now();
    worker.signal(Signal::TERM);
    let status = worker.exited(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}\n{}", worker.log());
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "stopped in {:?}",
        stopping.elapsed()
    );
    wait_until(
        "the message is visible again",
        Duration::from_secs(3),
        || async { stack.counts(&stack.queue).await == (1, 0) },
    )
    .await;
    assert_eq!(
        stack.status(&execution).await,
        ExecutionStatus::Running,
        "the task still waits for a worker"
    );
    stack
        .sfn
        .stop_execution()
        .execution_arn(&execution)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn exec_children_do_not_see_the_workers_aws_credentials() {
    let stack = Stack::new(30, 10).await;
    // The model's result is the names of the variables it sees.
    let script = r#"printf '['; env | cut -d= -f1 | grep -E '^[A-Za-z_][A-Za-z0-9_]*$' | sed 's/.*/"&",/' | tr -d '\n'; printf '""]'"#;
    let models = json!({"envnames": {"program": "/bin/sh", "args": ["-c", script]}}).to_string();
    let worker = WorkerProcess::spawn(
        &stack,
        &[
            ("EXEC_MODELS", models.as_str()),
            ("FLEET_TEST_SECRET", "hunter2"),
        ],
    );
    let job = job_id();
    let execution = stack.start(&job, "envnames", json!({})).await;
    let finished = stack.finished(&execution, Duration::from_secs(30)).await;
    assert_eq!(
        finished.status,
        ExecutionStatus::Succeeded,
        "{finished:?}\n{}",
        worker.log()
    );
    let names: Vec<String> =
        serde_json::from_slice(&stack.result(&format!("results/{job}.json")).await).unwrap();
    for secret in [
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_ENDPOINT_URL",
        "QUEUE_URL",
        "FLEET_TEST_SECRET",
    ] {
        assert!(
            !names.iter().any(|n| n == secret),
            "the child saw {secret}: {names:?}"
        );
    }
    assert!(names.iter().any(|n| n == "PATH"), "{names:?}");
}
