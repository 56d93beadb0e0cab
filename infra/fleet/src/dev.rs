//! `fleet dev`: the whole fleet on this machine. Starts (or reuses) the emulator, deploys
//! the stage into it, runs the local host and the workers, and stops every process it
//! started when told to.

use std::path::PathBuf;

use anyhow::Context as _;
use emulator::Emulator;
use topology::{DeployReport, Stage, Topology};

/// What `fleet dev` runs.
#[derive(Debug, Clone)]
pub struct DevConfig {
    pub stage: Stage,
    /// Emulator port on 127.0.0.1 (0 = a free one).
    pub emulator_port: u16,
    /// Where the emulator's virtualenv and logs live.
    pub home: PathBuf,
}

/// A running local stack.
pub struct Stack {
    pub emulator: Emulator,
    pub topology: Topology,
    pub report: DeployReport,
    pub sdk: aws_config::SdkConfig,
}

impl Stack {
    /// Brings the stack up: emulator, then the deployment.
    pub async fn start(config: &DevConfig) -> anyhow::Result<Stack> {
        let emulator = Emulator::start_or_reuse(&emulator::Config {
            home: config.home.clone(),
            port: config.emulator_port,
        })
        .await
        .context("starting the local emulator")?;
        let sdk = emulator.sdk_config();
        let topology = topology::fleet(&config.stage);
        let report = topology::deploy(&topology, &sdk)
            .await
            .with_context(|| format!("deploying stage {} to the emulator", config.stage))?;
        Ok(Stack {
            emulator,
            topology,
            report,
            sdk,
        })
    }

    /// What to print once the stack is up.
    pub fn banner(&self) -> String {
        let started = if self.emulator.started_here() {
            "started"
        } else {
            "reused"
        };
        format!(
            "{report}\nemulator: {endpoint} ({started})\n\nPoint another shell, the aws CLI or boto3 at the local stack with:\n{exports}\n",
            report = self.report,
            endpoint = self.emulator.endpoint(),
            exports = self.emulator.exports(),
        )
    }

    /// Stops everything this stack started (the emulator only if it was started here).
    pub async fn stop(self) {
        self.emulator.stop();
    }
}
