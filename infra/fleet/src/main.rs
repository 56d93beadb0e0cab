//! The `fleet` binary: parses arguments, sets up logging and signals, runs a subcommand.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use fleet::{UsageError, dev, events, infra, jobs_cmd, ops};
use tokio_util::sync::CancellationToken;
use topology::Stage;

// `fleet dev` and the benches allocate small buffers from many threads (one WebSocket
// connection, one request per push): glibc's malloc spends much of that time in
// arena locks and consolidation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "fleet",
    version,
    about = "An event-driven worker fleet for AWS: run it locally, deploy it, operate it."
)]
struct Cli {
    /// The stage: every resource is named `fleet-<stage>-...`.
    #[arg(long, global = true, env = "FLEET_STAGE", default_value = "dev", value_parser = parse_stage)]
    stage: Stage,
    /// JSON on stdout instead of a table (for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole fleet on this machine against the local emulator until Ctrl-C.
    Dev(DevArgs),
    /// Synthesize CloudFormation or deploy the infrastructure.
    #[command(subcommand)]
    Infra(InfraCommand),
    /// Put events on the bus, or watch them.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Dead-letter queues: list, inspect, redrive, purge, export.
    #[command(subcommand)]
    Dlq(ops::DlqCommand),
    /// State-machine executions: list, show a timeline, redrive.
    #[command(subcommand)]
    Runs(ops::RunsCommand),
    /// Executions waiting on a task token, and answering for their worker.
    #[command(subcommand)]
    Tokens(ops::TokensCommand),
    /// Submit jobs and follow them through the HTTP API.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Delayed events of the scheduler service.
    #[command(subcommand)]
    Schedules(SchedulesCommand),
    /// Tokens for the local stack.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Benchmarks that print numbers.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Run one simulation worker (what `fleet dev` starts; also usable alone).
    #[command(hide = true)]
    Worker(fleet::workers::WorkerArgs),
}

#[derive(Debug, Subcommand)]
enum SchedulesCommand {
    /// Pending schedules: key, due time, event (`--json` for scripts).
    Ls,
}

#[derive(Debug, Args)]
struct DevArgs {
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

#[derive(Debug, Subcommand)]
enum InfraCommand {
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

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Publish one event; prints its event id.
    Put {
        #[arg(long)]
        source: String,
        #[arg(long)]
        detail_type: String,
        /// A JSON object, or @file.json.
        #[arg(long)]
        detail: String,
        /// The bus (default: fleet-<stage>).
        #[arg(long)]
        bus: Option<String>,
    },
    /// Print live events of the bus, one JSON object per line, through a temporary rule
    /// and queue of its own (removed on exit and Ctrl-C), so no consumer misses any.
    Tail(ops::TailArgs),
}

#[derive(Debug, Args)]
struct ApiArgs {
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
enum JobsCommand {
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
    /// when it succeeded, 1 when it failed.
    Watch {
        job_id: String,
        /// Give up after this long.
        #[arg(long, default_value_t = 3600)]
        timeout_secs: u64,
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

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Hold many WebSocket connections on the local gateway subscribed to one channel,
    /// broadcast job events to them, and print p50/p99 delivery latency and resident
    /// memory per connection (JSON). Run it with `--release`.
    Notifier {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        #[arg(long, env = "FLEET_HOME")]
        home: Option<PathBuf>,
    },
    /// Fill a queue with no-op jobs and drain it with the worker runtime, then with a
    /// naive receive-one/delete-one loop; prints a JSON summary of both. Uses the endpoint
    /// AWS_ENDPOINT_URL names, or a private emulator when it is unset.
    Worker {
        #[arg(long, default_value_t = 1000)]
        messages: usize,
        #[arg(long, env = "FLEET_HOME")]
        home: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum AuthCommand {
    /// Print a token of the local dev issuer, valid only for the local stack.
    Token {
        #[arg(long)]
        sub: String,
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
        #[arg(long, env = "FLEET_HOME")]
        home: Option<PathBuf>,
    },
}

fn api(args: ApiArgs) -> anyhow::Result<jobs_cmd::Api> {
    let token = match args.token {
        Some(token) => token,
        None => {
            let home = args.home.unwrap_or_else(emulator::default_home);
            fleet::local::dev_issuer(&home)?
                .issue(&args.sub, std::time::Duration::from_secs(3600))?
        }
    };
    Ok(jobs_cmd::Api::new(args.api, token))
}

fn parse_stage(s: &str) -> Result<Stage, String> {
    Stage::new(s).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLEET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<UsageError>().is_some() => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let stage = cli.stage;
    let json = cli.json;
    match cli.command {
        Command::Dev(args) => {
            // Every WebSocket connection is an open file.
            fleet::bench_notifier::raise_open_files_limit();
            let config = dev::DevConfig {
                stage,
                emulator_port: args.emulator_port,
                home: args.home.unwrap_or_else(emulator::default_home),
                workers: args.workers,
                http_port: args.http_port,
                exe: std::env::current_exe().ok(),
            };
            let shutdown = shutdown_on_signals()?;
            let stack = dev::Stack::start(&config).await?;
            println!("{}", stack.banner());
            println!("fleet dev: ready; Ctrl-C stops everything it started");
            shutdown.cancelled().await;
            eprintln!("fleet dev: stopping");
            stack.stop().await;
            Ok(())
        }
        Command::Infra(InfraCommand::Synth { out }) => {
            for path in infra::synth(&stage, &out)? {
                println!("{}", path.display());
            }
            Ok(())
        }
        Command::Infra(InfraCommand::Lint { out, home }) => {
            let home = home.unwrap_or_else(emulator::default_home);
            println!("{}", infra::lint(&stage, &out, &home)?);
            Ok(())
        }
        Command::Infra(InfraCommand::Deploy) => {
            let sdk = fleet::aws_from_env().await;
            let report = infra::deploy(&stage, &sdk).await?;
            println!("{report}");
            Ok(())
        }
        Command::Events(EventsCommand::Put {
            source,
            detail_type,
            detail,
            bus,
        }) => {
            let detail = events::read_detail(&detail)?;
            let bus = bus.unwrap_or_else(|| topology::Names::new(&stage).bus());
            let sdk = fleet::aws_from_env().await;
            let id = events::put(&sdk, &bus, &source, &detail_type, &detail).await?;
            println!("{id}");
            Ok(())
        }
        Command::Events(EventsCommand::Tail(args)) => {
            ops::run_tail(&stage, &fleet::aws_from_env().await, args, json).await
        }
        Command::Auth(AuthCommand::Token {
            sub,
            ttl_secs,
            home,
        }) => {
            let home = home.unwrap_or_else(emulator::default_home);
            let token = fleet::local::dev_issuer(&home)?
                .issue(&sub, std::time::Duration::from_secs(ttl_secs))?;
            println!("{token}");
            Ok(())
        }
        Command::Jobs(JobsCommand::Submit {
            model,
            params,
            idempotency_key,
            wait,
            timeout_secs,
            api: args,
        }) => {
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
            let view = api
                .wait(&job_id, std::time::Duration::from_secs(timeout_secs))
                .await?;
            println!("{}", jobs_cmd::render(&view));
            if let Some(result) = &view.result {
                println!("{}", serde_json::to_string_pretty(&result.summary)?);
            }
            anyhow::ensure!(
                view.status == contracts::jobs::JobStatus::Succeeded,
                "job {job_id} failed"
            );
            Ok(())
        }
        Command::Jobs(JobsCommand::Status {
            job_id,
            json,
            api: args,
        }) => {
            let view = api(args)?.status(&job_id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                println!("{}", jobs_cmd::render(&view));
            }
            Ok(())
        }
        Command::Jobs(JobsCommand::Watch {
            job_id,
            timeout_secs,
            api: args,
        }) => {
            let api = api(args)?;
            let bar = indicatif::ProgressBar::new(1000).with_style(
                indicatif::ProgressStyle::with_template("{spinner} [{bar:40}] {percent:>3}% {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_message(format!("job {job_id}: waiting"));
            let (outcome, _) = fleet::watch::watch(
                &api,
                &job_id,
                std::time::Duration::from_secs(timeout_secs),
                |frame| {
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
                },
            )
            .await?;
            match outcome {
                fleet::watch::Outcome::Succeeded { summary } => {
                    bar.finish_with_message("succeeded");
                    println!("job {job_id} succeeded");
                    println!("{}", serde_json::to_string_pretty(&summary)?);
                    Ok(())
                }
                fleet::watch::Outcome::Failed { error, cause } => {
                    bar.abandon_with_message("failed");
                    anyhow::bail!("job {job_id} failed: {error}: {cause}")
                }
            }
        }
        Command::Jobs(JobsCommand::Ls {
            status,
            json,
            api: args,
        }) => {
            let status = status
                .map(|s| s.parse::<contracts::jobs::JobStatus>())
                .transpose()
                .map_err(|e| UsageError(format!("--status: {e}")))?;
            let views = api(args)?.list(status).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                for view in &views {
                    println!("{}", jobs_cmd::render(view));
                }
            }
            Ok(())
        }
        Command::Bench(BenchCommand::Notifier {
            connections,
            rounds,
            home,
        }) => {
            let report = fleet::bench_notifier::run(&fleet::bench_notifier::BenchConfig {
                connections,
                rounds,
                open_concurrency: 100,
                home: home.unwrap_or_else(emulator::default_home),
                exe: std::env::current_exe()
                    .map_err(|e| anyhow::anyhow!("locating the fleet binary: {e}"))?,
            })
            .await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            println!(
                "p50 {:.1} ms, p99 {:.1} ms (target < {:.0} ms); {:.1} KiB per idle connection (target < {:.0} KiB)",
                report.latency_p50_ms,
                report.latency_p99_ms,
                report.target_p99_ms,
                report.bytes_per_connection / 1024.0,
                report.target_bytes_per_connection / 1024.0
            );
            Ok(())
        }
        Command::Bench(BenchCommand::Worker { messages, home }) => {
            let private;
            let sdk = if std::env::var_os("AWS_ENDPOINT_URL").is_some() {
                fleet::aws_from_env().await
            } else {
                private = emulator::Emulator::start_or_reuse(&emulator::Config {
                    home: home.unwrap_or_else(emulator::default_home),
                    port: 0,
                })
                .await?;
                private.sdk_config()
            };
            let report = sqs_worker::bench::bench(&sdk, messages).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Worker(args) => {
            let shutdown = shutdown_on_signals()?;
            fleet::workers::run(args, fleet::aws_from_env().await, shutdown).await
        }
        Command::Schedules(SchedulesCommand::Ls) => {
            let pending =
                fleet::schedules_cmd::pending(&stage, &fleet::aws_from_env().await).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&fleet::schedules_cmd::to_json(&pending))?
                );
            } else {
                print!("{}", fleet::schedules_cmd::render(&pending));
            }
            Ok(())
        }
        Command::Dlq(cmd) => ops::run_dlq(&stage, &fleet::aws_from_env().await, cmd, json).await,
        Command::Runs(cmd) => ops::run_runs(&stage, &fleet::aws_from_env().await, cmd, json).await,
        Command::Tokens(cmd) => {
            ops::run_tokens(&stage, &fleet::aws_from_env().await, cmd, json).await
        }
    }
}

/// A token cancelled on Ctrl-C (SIGINT) or SIGTERM.
fn shutdown_on_signals() -> anyhow::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        cancel.cancel();
    });
    Ok(token)
}
