//! `fleet infra synth|deploy|lint`.

use std::path::PathBuf;

use clap::Subcommand;

use super::Globals;
use crate::infra;

#[derive(Debug, Subcommand)]
pub enum InfraCommand {
    /// Write one CloudFormation template per stack into a folder.
    Synth {
        #[arg(long)]
        out: PathBuf,
    },
    /// Create or update the stage's resources at the endpoint the AWS environment names
    /// (AWS_ENDPOINT_URL, AWS_REGION, AWS_PROFILE). Idempotent.
    Deploy,
    /// Synthesize into a folder and check the templates with cfn-lint (installed into the
    /// project's virtualenv on first use).
    Lint {
        #[arg(long, default_value = "target/cfn")]
        out: PathBuf,
        #[arg(long, env = "FLEET_HOME")]
        home: Option<PathBuf>,
    },
}

pub async fn run(command: InfraCommand, globals: &Globals) -> anyhow::Result<()> {
    let stage = &globals.stage;
    match command {
        InfraCommand::Synth { out } => {
            for path in infra::synth(stage, &out)? {
                println!("{}", path.display());
            }
            Ok(())
        }
        InfraCommand::Lint { out, home } => {
            let home = home.unwrap_or_else(emulator::default_home);
            println!("{}", infra::lint(stage, &out, &home)?);
            Ok(())
        }
        InfraCommand::Deploy => {
            let sdk = crate::aws_from_env().await;
            let report = infra::deploy(stage, &sdk).await?;
            println!("{report}");
            Ok(())
        }
    }
}
