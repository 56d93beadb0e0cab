//! `fleet infra synth` and `fleet infra deploy`: the one definition, to CloudFormation or
//! to any endpoint.

use std::path::Path;

use anyhow::Context as _;
use topology::{DeployReport, Stage};

/// Writes one CloudFormation template per stack into `out`; returns the files written.
pub fn synth(stage: &Stage, out: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let topology = topology::fleet(stage);
    let templates = topology::synth(&topology).context("synthesizing CloudFormation")?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    Ok(topology::write(out, &templates)?)
}

/// Creates or updates the stage's resources at the endpoint `sdk` names.
pub async fn deploy(stage: &Stage, sdk: &aws_config::SdkConfig) -> anyhow::Result<DeployReport> {
    let topology = topology::fleet(stage);
    let endpoint = sdk.endpoint_url().unwrap_or("the AWS default endpoint").to_string();
    topology::deploy(&topology, sdk)
        .await
        .with_context(|| format!("deploying stage {stage} to {endpoint}"))
}
