//! `fleet infra synth` and `fleet infra deploy`: the one definition, to CloudFormation or
//! to any endpoint.

use std::path::Path;

use anyhow::Context as _;
use provision::{DeployReport, Stage};

/// Writes one CloudFormation template per stack into `out`; returns the files written.
pub fn synth(stage: &Stage, out: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let topology = provision::fleet(stage);
    let templates = provision::synth(&topology).context("synthesizing CloudFormation")?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    Ok(provision::write(out, &templates)?)
}

/// Creates or updates the stage's resources at the endpoint `sdk` names.
pub async fn deploy(stage: &Stage, sdk: &aws_config::SdkConfig) -> anyhow::Result<DeployReport> {
    let topology = provision::fleet(stage);
    let endpoint = sdk
        .endpoint_url()
        .unwrap_or("the AWS default endpoint")
        .to_string();
    provision::deploy(&topology, sdk)
        .await
        .with_context(|| format!("deploying stage {stage} to {endpoint}"))
}

/// Synthesizes into `out` and runs cfn-lint (installed in the project's virtualenv) over
/// the templates. Returns cfn-lint's report; errors make it an `Err`.
pub fn lint(stage: &Stage, out: &Path, home: &Path) -> anyhow::Result<String> {
    let files = synth(stage, out)?;
    let venv = emulator::ensure_venv(home).context("installing cfn-lint")?;
    let output = std::process::Command::new(venv.bin("cfn-lint"))
        .args(&files)
        .output()
        .context("running cfn-lint")?;
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    // cfn-lint's exit code is a bit mask: 2 = errors, 4 = warnings, 8 = informational.
    match output.status.code() {
        Some(code) if code & 2 == 0 => Ok(format!(
            "cfn-lint: {} templates, no errors{}\n{report}",
            files.len(),
            if code & 4 != 0 {
                " (warnings below)"
            } else {
                ""
            }
        )),
        _ => anyhow::bail!(
            "cfn-lint found errors in the synthesized templates:\n{report}{}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}
