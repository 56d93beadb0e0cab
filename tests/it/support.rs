//! The local stack as `fleet dev` runs it, in-process, on the shared test emulator.

use std::time::Duration;

use fleet::api::Api;
use fleet::dev::{DevConfig, Stack};
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
        faults: Default::default(),
    })
    .await
    .expect("the local stack starts")
}

pub use emulator::testing::wait_for as until;

/// A queue receiving every event on the stage's bus that matches `pattern`; returns its URL.
pub async fn capture(stack: &Stack, pattern: serde_json::Value) -> String {
    let bus = stack.topology.names().bus();
    emulator::testing::capture(&stack.sdk, &bus, &pattern)
        .await
        .url
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
