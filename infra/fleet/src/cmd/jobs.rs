//! `fleet jobs submit|status|watch|ls|result`: jobs through the HTTP API and the
//! notifier's WebSocket.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use contracts::jobs::{JobStatus, JobView};

use crate::api::Api;
use crate::watch::{Outcome, watch};
use crate::{UsageError, events};

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The jobs HTTP API.
    #[arg(long, env = "FLEET_API", default_value = "http://127.0.0.1:8080")]
    api: String,
    /// A bearer token; locally, one for `--sub` is issued when absent.
    #[arg(long, env = "FLEET_TOKEN")]
    token: Option<String>,
    /// The user a local token is issued for.
    #[arg(long, default_value = "dev-user")]
    sub: String,
    #[arg(long, env = "FLEET_HOME")]
    home: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Submit a job; prints its id (or, with --wait, its outcome).
    Submit {
        #[arg(long)]
        model: String,
        /// The model's parameters: a JSON object, or @file.json.
        #[arg(long, default_value = "{}")]
        params: String,
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Wait for the outcome and print the result summary.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// A job's status, progress and result.
    Status {
        job_id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Stream a job's progress from the notifier's WebSocket until it ends; exits 0
    /// when it succeeded, 1 when it failed or was cancelled.
    Watch {
        job_id: String,
        /// Give up after this long.
        #[arg(long, default_value_t = 3600)]
        timeout_secs: u64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Cancel a job that has not ended: its execution stops, and its worker stops the
    /// model within a heartbeat. Cancelling a cancelled job again changes nothing.
    Cancel {
        job_id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Download a finished job's result (JSON) to a file, or to stdout.
    Result {
        job_id: String,
        /// Where to write it; stdout when absent or `-`.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Refuse a result larger than this many bytes.
        #[arg(long, default_value_t = MAX_RESULT_BYTES)]
        max_bytes: u64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Your jobs, newest first.
    Ls {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// The largest result `fleet jobs result` downloads unless told otherwise: 256 MiB, four
/// times the most an `exec` model may print.
pub const MAX_RESULT_BYTES: u64 = 256 << 20;

pub async fn run(command: JobsCommand) -> anyhow::Result<()> {
    match command {
        JobsCommand::Submit {
            model,
            params,
            idempotency_key,
            wait,
            timeout_secs,
            api: args,
        } => {
            let params = events::read_detail(&params)
                .map_err(|e| UsageError(e.to_string().replace("--detail", "--params")))?;
            if !params.is_object() {
                return Err(UsageError(
                    "--params: must be a JSON object, e.g. --params '{\"durationMs\": 1000}'"
                        .into(),
                )
                .into());
            }
            let api = api(args)?;
            let job_id = api
                .submit(&model, &params, idempotency_key.as_deref())
                .await?;
            if !wait {
                println!("{job_id}");
                return Ok(());
            }
            eprintln!("submitted {job_id}; waiting");
            let view = api.wait(&job_id, Duration::from_secs(timeout_secs)).await?;
            println!("{}", render(&view));
            if let Some(result) = &view.result {
                println!("{}", serde_json::to_string_pretty(&result.summary)?);
            }
            anyhow::ensure!(
                view.status == JobStatus::Succeeded,
                "job {job_id} ended {}",
                view.status.as_str()
            );
            Ok(())
        }
        JobsCommand::Status {
            job_id,
            json,
            api: args,
        } => {
            let view = api(args)?.status(&job_id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                println!("{}", render(&view));
            }
            Ok(())
        }
        JobsCommand::Watch {
            job_id,
            timeout_secs,
            api: args,
        } => watch_job(api(args)?, &job_id, Duration::from_secs(timeout_secs)).await,
        JobsCommand::Cancel {
            job_id,
            json,
            api: args,
        } => {
            let view = api(args)?.cancel(&job_id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                println!("{}", render(&view));
            }
            Ok(())
        }
        JobsCommand::Result {
            job_id,
            output,
            max_bytes,
            api: args,
        } => {
            let bytes = api(args)?.result(&job_id, max_bytes).await?;
            match output {
                Some(path) if path.as_os_str() != "-" => {
                    std::fs::write(&path, &bytes)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("wrote {} bytes to {}", bytes.len(), path.display());
                }
                _ => {
                    use std::io::Write as _;
                    let mut stdout = std::io::stdout().lock();
                    stdout.write_all(&bytes).context("writing to stdout")?;
                    stdout.flush().context("writing to stdout")?;
                }
            }
            Ok(())
        }
        JobsCommand::Ls {
            status,
            json,
            api: args,
        } => {
            let status = status
                .map(|s| s.parse::<JobStatus>())
                .transpose()
                .map_err(|e| UsageError(format!("--status: {e}")))?;
            let views = api(args)?.list(status).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                for view in &views {
                    println!("{}", render(view));
                }
            }
            Ok(())
        }
    }
}

/// `fleet jobs watch`: a progress bar on a terminal, one line per frame elsewhere.
async fn watch_job(api: Api, job_id: &str, timeout: Duration) -> anyhow::Result<()> {
    let bar = indicatif::ProgressBar::new(1000).with_style(
        indicatif::ProgressStyle::with_template("{spinner} [{bar:40}] {percent:>3}% {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(format!("job {job_id}: waiting"));
    let (outcome, _) = watch(&api, job_id, timeout, |frame| {
        let data = &frame.data;
        match frame.kind.as_str() {
            "JobStarted" => bar.set_message(format!(
                "running on {}",
                data["worker"].as_str().unwrap_or("a worker")
            )),
            "JobProgress" => {
                let fraction = data["progress"].as_f64().unwrap_or_default();
                bar.set_position((fraction * 1000.0) as u64);
                if let Some(message) = data["message"].as_str() {
                    bar.set_message(message.to_owned());
                }
            }
            "discontinuity" => bar.set_message("some progress was missed"),
            _ => {}
        }
        if !bar.is_hidden() {
            return;
        }
        // No terminal: one line per frame instead of a bar.
        eprintln!("{} #{} {}", frame.kind, frame.offset, frame.data);
    })
    .await?;
    match outcome {
        Outcome::Succeeded { summary } => {
            bar.finish_with_message("succeeded");
            println!("job {job_id} succeeded");
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
        Outcome::Failed { error, cause } => {
            bar.abandon_with_message("failed");
            anyhow::bail!("job {job_id} failed: {error}: {cause}")
        }
        Outcome::Cancelled { by } => {
            bar.abandon_with_message("cancelled");
            anyhow::bail!("job {job_id} was cancelled by {by}")
        }
    }
}

/// The API client, with a local token for `--sub` when none is given.
fn api(args: ApiArgs) -> anyhow::Result<Api> {
    let token = match args.token {
        Some(token) => token,
        None => {
            let home = args.home.unwrap_or_else(emulator::default_home);
            crate::local::dev_issuer(&home)?.issue(&args.sub, Duration::from_secs(3600))?
        }
    };
    Ok(Api::new(args.api, token))
}

/// One line per job, for humans.
pub fn render(view: &JobView) -> String {
    let mut line = format!(
        "{}  {:<9}  {:<6}  {:>3.0}%",
        view.job_id,
        view.status.as_str(),
        view.model,
        view.progress * 100.0
    );
    if let Some(result) = &view.result {
        line.push_str(&format!("  {}  {}", result.summary, result.location.uri()));
    }
    if let Some(error) = &view.error {
        line.push_str(&format!("  {}: {}", error.error, error.cause));
    }
    line
}
