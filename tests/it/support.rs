//! The local stack as `fleet dev` runs it, in-process, on the shared test emulator.

use std::time::{Duration, Instant};

use fleet::dev::{DevConfig, Stack};
use fleet::jobs_cmd::Api;
use tokio_util::sync::CancellationToken;
use topology::Stage;

/// The stack with two in-process workers, on the shared test emulator.
pub struct Local {
    pub stack: Stack,
    pub api_base: String,
    shutdown: CancellationToken,
    workers: tokio::task::JoinSet<anyhow::Result<()>>,
}

/// The stack without workers, on the shared test emulator, under a stage of its own.
pub async fn stack() -> Stack {
    let emulator = emulator::test_emulator().await;
    Stack::start(&DevConfig {
        stage: Stage::new(emulator::unique_stage()).unwrap(),
        emulator_port: emulator.port(),
        home: emulator::default_home(),
        workers: 0,
        http_port: 0,
        exe: None,
    })
    .await
    .expect("the local stack starts")
}

/// Polls `check` until it returns `Some`, or panics at the deadline.
pub async fn until<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A queue receiving every event on the stage's bus that matches `pattern`; returns its URL.
pub async fn capture(stack: &Stack, pattern: serde_json::Value) -> String {
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let events = aws_sdk_eventbridge::Client::new(&stack.sdk);
    let bus = stack.topology.names().bus();
    let name = emulator::unique_name("capture");
    let url = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    events
        .put_rule()
        .name(&name)
        .event_bus_name(&bus)
        .event_pattern(pattern.to_string())
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule(&name)
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("capture")
                .arn(format!(
                    "arn:aws:sqs:{}:{}:{name}",
                    emulator::REGION,
                    emulator::ACCOUNT_ID
                ))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    url
}

impl Local {
    pub async fn start() -> Local {
        let stack = stack().await;
        let shutdown = CancellationToken::new();
        let mut workers = tokio::task::JoinSet::new();
        for i in 0..2 {
            let mut args = fleet::dev::worker_args(&stack.topology, &stack.report).unwrap();
            args.worker_id = Some(format!("e2e-{i}"));
            args.exit_with_parent = false;
            workers.spawn(fleet::workers::run(
                args,
                stack.sdk.clone(),
                shutdown.clone(),
            ));
        }
        let api_base = format!("http://{}", stack.http_addr);
        Local {
            stack,
            api_base,
            shutdown,
            workers,
        }
    }

    pub fn api(&self, sub: &str) -> Api {
        Api::new(&self.api_base, self.token(sub))
    }

    pub fn bus(&self) -> String {
        self.stack.topology.names().bus()
    }

    /// A token for `sub`.
    pub fn token(&self, sub: &str) -> String {
        self.stack
            .issuer
            .issue(sub, Duration::from_secs(600))
            .unwrap()
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while let Some(done) = self.workers.join_next().await {
            done.unwrap().unwrap();
        }
        self.stack.stop().await;
    }
}
