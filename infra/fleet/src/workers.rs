//! The simulation workers `fleet dev` runs: separate processes of this same binary
//! (`fleet worker`), so one can be killed like a Fargate task, each watching its parent
//! so none outlives `fleet dev`, whatever way it ends.

use std::os::fd::AsFd as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use sqs_worker::QueueUrl;
use tokio_util::sync::CancellationToken;

/// `fleet worker`: one simulation worker against the queue it is given.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    #[arg(long)]
    pub queue_url: String,
    #[arg(long)]
    pub bucket: String,
    #[arg(long)]
    pub bus: String,
    /// The idempotency table.
    #[arg(long)]
    pub table: Option<String>,
    #[arg(long)]
    pub worker_id: Option<String>,
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// After SIGTERM, how long running jobs may finish.
    #[arg(long, default_value_t = 30)]
    pub drain_timeout_secs: u64,
    /// The long-poll wait of an idle receive, 1 to 20 s: an idle worker takes up to
    /// this long to stop.
    #[arg(long, default_value_t = 20)]
    pub receive_wait_secs: u64,
    /// Stop when the process that started this one is gone.
    #[arg(long)]
    pub exit_with_parent: bool,
}

/// Runs one worker until `shutdown` (or the parent's death, if asked).
pub async fn run(
    args: WorkerArgs,
    sdk: aws_config::SdkConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let queue_url = QueueUrl::parse(&args.queue_url).context("--queue-url")?;
    let mut config = simulation::WorkerConfig::new(sdk, queue_url, args.bucket, args.bus);
    config.table = args.table;
    if let Some(id) = args.worker_id {
        config.worker_id = id;
    }
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    config.concurrency = args.concurrency;
    config.drain_timeout = Duration::from_secs(args.drain_timeout_secs);
    config.receive_wait =
        simulation::receive_wait(args.receive_wait_secs).context("--receive-wait-secs")?;
    if args.exit_with_parent {
        let parent = std::os::unix::process::parent_id();
        let cancel = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(300));
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if std::os::unix::process::parent_id() != parent {
                    tracing::warn!("the parent process is gone; draining");
                    cancel.cancel();
                    return;
                }
            }
        });
    }
    simulation::run(config, shutdown).await?;
    Ok(())
}

/// Worker processes started by `fleet dev`.
#[derive(Debug, Default)]
pub struct WorkerProcesses {
    children: Vec<Child>,
    /// How to start one again (`None` when nothing was spawned).
    launch: Option<Launch>,
}

#[derive(Debug, Clone)]
struct Launch {
    exe: PathBuf,
    args: WorkerArgs,
    endpoint: String,
}

impl Launch {
    /// Starts worker number `i` (its id is `worker-<i>`).
    fn spawn(&self, i: usize) -> anyhow::Result<Child> {
        let args = &self.args;
        let mut command = Command::new(&self.exe);
        command
            .arg("worker")
            .args([
                "--queue-url",
                &args.queue_url,
                "--bucket",
                &args.bucket,
                "--bus",
                &args.bus,
            ])
            .args(["--worker-id", &format!("worker-{i}")])
            .args(["--drain-timeout-secs", &args.drain_timeout_secs.to_string()])
            .args(["--receive-wait-secs", &args.receive_wait_secs.to_string()])
            .arg("--exit-with-parent")
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_REGION", emulator::REGION)
            .env("AWS_ACCESS_KEY_ID", emulator::ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", emulator::SECRET_ACCESS_KEY)
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null());
        // A worker's metrics and logs go to stderr, so this process's stdout stays its own
        // (the JSON report of `fleet chaos`, the banner of `fleet dev`).
        if let Ok(stderr) = std::io::stderr().as_fd().try_clone_to_owned() {
            command.stdout(Stdio::from(stderr));
        }
        if let Some(table) = &args.table {
            command.args(["--table", table]);
        }
        command
            .spawn()
            .with_context(|| format!("starting worker {i} ({})", self.exe.display()))
    }
}

impl WorkerProcesses {
    /// Starts `count` workers (this executable's `worker` subcommand) with `args`, pointed
    /// at `endpoint` with the emulator's credentials.
    pub fn spawn(
        count: usize,
        exe: PathBuf,
        args: &WorkerArgs,
        endpoint: &str,
    ) -> anyhow::Result<Self> {
        let launch = Launch {
            exe,
            args: args.clone(),
            endpoint: endpoint.to_owned(),
        };
        let children = (1..=count)
            .map(|i| launch.spawn(i))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(WorkerProcesses {
            children,
            launch: Some(launch),
        })
    }

    /// Sends `signal` to worker `index` (0-based), if it is running; returns its pid.
    pub fn signal(&mut self, index: usize, signal: rustix::process::Signal) -> Option<u32> {
        let child = self.children.get_mut(index)?;
        if !matches!(child.try_wait(), Ok(None)) {
            return None;
        }
        let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).ok()?)?;
        rustix::process::kill_process(pid, signal).ok()?;
        Some(child.id())
    }

    /// How many workers there are (running or not).
    pub fn len(&self) -> usize {
        self.children.len()
    }

    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// Starts again every worker whose process has ended, as ECS replaces a stopped task;
    /// returns how many were started.
    pub fn restart_exited(&mut self) -> anyhow::Result<usize> {
        let Some(launch) = &self.launch else {
            return Ok(0);
        };
        let mut restarted = 0;
        for (i, child) in self.children.iter_mut().enumerate() {
            if matches!(child.try_wait(), Ok(Some(_))) {
                *child = launch.spawn(i + 1)?;
                restarted += 1;
            }
        }
        Ok(restarted)
    }

    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// SIGTERM to each (a graceful drain), then waits; kills what is still running after
    /// `grace`.
    pub async fn stop(mut self, grace: Duration) {
        for child in &self.children {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let deadline = tokio::time::Instant::now() + grace;
        for child in &mut self.children {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if tokio::time::Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
    }
}
