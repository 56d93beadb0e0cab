//! `fleet dev`: the whole fleet on this machine until Ctrl-C.

use std::path::PathBuf;

use clap::Args;

use super::{Globals, shutdown_on_signals};
use crate::dev::{DevConfig, Stack};

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Port of the emulator on 127.0.0.1; an emulator already listening there is reused.
    #[arg(long, default_value_t = 4566)]
    emulator_port: u16,
    /// Folder for the emulator's virtualenv and logs.
    #[arg(long, env = "FLEET_HOME")]
    home: Option<PathBuf>,
    /// Simulation worker processes.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Port of the local HTTP API (and later WebSocket gateway) on 127.0.0.1.
    #[arg(long, default_value_t = 8080)]
    http_port: u16,
}

pub async fn run(args: DevArgs, globals: &Globals) -> anyhow::Result<()> {
    // Every WebSocket connection is an open file.
    crate::dev::raise_open_files_limit();
    let config = DevConfig {
        stage: globals.stage.clone(),
        emulator_port: args.emulator_port,
        home: args.home.unwrap_or_else(emulator::default_home),
        workers: args.workers,
        http_port: args.http_port,
        exe: std::env::current_exe().ok(),
        faults: Default::default(),
    };
    let shutdown = shutdown_on_signals()?;
    let stack = Stack::start(&config).await?;
    println!("{}", stack.banner());
    println!("fleet dev: ready; Ctrl-C stops everything it started");
    shutdown.cancelled().await;
    eprintln!("fleet dev: stopping");
    stack.stop().await;
    Ok(())
}
