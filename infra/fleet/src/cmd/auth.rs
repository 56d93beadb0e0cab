//! `fleet auth token`: tokens of the local dev issuer.

use std::path::PathBuf;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Print a token of the local dev issuer, valid only for the local stack.
    Token {
        #[arg(long)]
        sub: String,
        /// A user-pool group the token carries in `cognito:groups` (repeatable), e.g.
        /// `fleet-ops` for the ops console.
        #[arg(long = "group")]
        groups: Vec<String>,
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
        #[arg(long, env = "FLEET_HOME")]
        home: Option<PathBuf>,
    },
}

pub fn run(command: AuthCommand) -> anyhow::Result<()> {
    match command {
        AuthCommand::Token {
            sub,
            groups,
            ttl_secs,
            home,
        } => {
            let home = home.unwrap_or_else(emulator::default_home);
            let token = crate::local::dev_issuer(&home)?.issue_with_groups(
                &sub,
                &groups,
                std::time::Duration::from_secs(ttl_secs),
            )?;
            println!("{token}");
            Ok(())
        }
    }
}
