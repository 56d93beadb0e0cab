//! `fleet dev`: the whole fleet on this machine. Starts (or reuses) the emulator, deploys
//! the stage into it, runs the local host and the workers, and stops every process it
//! started when told to.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use emulator::Emulator;
use local_host::RunningHost;
use provision::{DeployReport, Stage, Topology};

use crate::local;
use crate::workers::{WorkerArgs, WorkerProcesses};

/// What `fleet dev` runs.
#[derive(Debug, Clone)]
pub struct DevConfig {
    pub stage: Stage,
    /// Emulator port on 127.0.0.1 (0 = a free one).
    pub emulator_port: u16,
    /// Where the emulator's virtualenv and logs live.
    pub home: PathBuf,
    /// Simulation worker processes to run.
    pub workers: usize,
    /// The local host's HTTP port on 127.0.0.1 (0 = a free one).
    pub http_port: u16,
    /// The executable whose `worker` subcommand runs a worker (normally this `fleet`).
    pub exe: Option<PathBuf>,
    /// Faults to inject (`fleet chaos`); none by default.
    pub faults: Faults,
}

/// The faults a stack injects, all off by default.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// AWS API faults: a proxy in front of the emulator, through which every client of the
    /// stack (functions, the local host, the workers) goes. It starts disabled, so
    /// deployment sees none; [`Stack::set_faults`] turns it on.
    pub aws: Option<emulator::faults::FaultPlan>,
    /// Invocations of the local host's functions that crash or time out part-way.
    pub invocations: local_host::InvocationFaults,
}

/// A running local stack.
pub struct Stack {
    pub emulator: Emulator,
    pub topology: Topology,
    pub report: DeployReport,
    pub sdk: aws_config::SdkConfig,
    /// Shared, so a fault-injection run can kill and restart them.
    pub workers: std::sync::Arc<std::sync::Mutex<WorkerProcesses>>,
    pub host: RunningHost,
    /// Where the local host's HTTP API listens.
    pub http_addr: SocketAddr,
    pub issuer: std::sync::Arc<auth::DevIssuer>,
    /// The fake email provider the campaigns service calls; it reports back through
    /// the callbacks webhook.
    pub provider: campaigns::fake::FakeProvider,
    /// The fault proxy every client goes through, when faults were asked for.
    pub proxy: Option<emulator::faults::FaultProxy>,
}

/// The fake email provider's name, as in `POST /callbacks/fake`.
pub const FAKE_PROVIDER: &str = "fake";

impl Stack {
    /// Brings the stack up: emulator, then the deployment.
    pub async fn start(config: &DevConfig) -> anyhow::Result<Stack> {
        let emulator = Emulator::start_or_reuse(&emulator::Config {
            home: config.home.clone(),
            port: config.emulator_port,
        })
        .await
        .context("starting the local emulator")?;
        let topology = provision::fleet(&config.stage);
        let report = provision::deploy(&topology, &emulator.sdk_config())
            .await
            .with_context(|| format!("deploying stage {} to the emulator", config.stage))?;
        let proxy = match &config.faults.aws {
            None => None,
            Some(plan) => {
                let proxy = emulator::faults::FaultProxy::start(emulator.endpoint(), plan.clone())
                    .await
                    .context("starting the fault proxy")?;
                proxy.set_enabled(false);
                Some(proxy)
            }
        };
        // Every client of the stack reaches AWS through the proxy when there is one.
        let (sdk, endpoint) = match &proxy {
            Some(proxy) => (proxy.sdk_config(), proxy.endpoint()),
            None => (emulator.sdk_config(), emulator.endpoint().to_owned()),
        };
        let issuer = std::sync::Arc::new(local::dev_issuer(&config.home)?);
        // The notifier pushes through the local host's `@connections` API, so its address
        // is needed before the host starts: pick a free port now when asked for any.
        let http_port = match config.http_port {
            0 => free_port().context("finding a free port for the local host")?,
            port => port,
        };
        // The fake email provider, with a webhook secret fresh for this run.
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let provider = campaigns::fake::FakeProvider::start(campaigns::fake::FakeConfig::new(
            FAKE_PROVIDER,
            secret.as_bytes(),
        ))
        .await
        .context("starting the fake email provider")?;
        let settings = local::LocalSettings {
            host_url: format!("http://127.0.0.1:{http_port}"),
            provider: local::Provider {
                name: FAKE_PROVIDER.to_string(),
                url: provider.url(),
                secret: secret.into_bytes(),
            },
        };
        local::store_provider_secret(&sdk, &topology, &settings.provider).await?;
        let in_process = local_host::InProcessClient::new();
        let functions =
            local::functions(&sdk, &topology, &report, &issuer, &settings, &in_process)?;
        let host_config = local_host::Config {
            http_addr: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, http_port))),
            invocation_faults: config.faults.invocations.clone(),
            ..local_host::Config::default()
        };
        let host = local_host::Host::new(host_config, functions)
            .with_extra(local::issuer_routes(&issuer))
            .with_extra(local::dashboard_routes(issuer.clone()))
            .with_extra(local_console(&topology, &sdk, &issuer, &settings.host_url)?)
            .serve_in_process(in_process)
            .start(&topology, &report, &sdk)
            .await
            .with_context(|| format!("starting the local host on 127.0.0.1:{http_port}"))?;
        host.set_invocation_faults(false);
        let http_addr = host.http_addr().context("the local host serves no HTTP")?;
        provider.set_webhook(format!("http://{http_addr}/callbacks/{FAKE_PROVIDER}"));
        let workers = match (&config.exe, config.workers) {
            (Some(exe), n) if n > 0 => {
                let args = worker_args(&topology, &report)?;
                WorkerProcesses::spawn(n, exe.clone(), &args, &endpoint)?
            }
            _ => WorkerProcesses::default(),
        };
        Ok(Stack {
            emulator,
            topology,
            report,
            sdk,
            workers: std::sync::Arc::new(std::sync::Mutex::new(workers)),
            host,
            http_addr,
            issuer,
            provider,
            proxy,
        })
    }

    /// A stack for one run of a harness (`fleet chaos`, `fleet cost --measure`): its own
    /// stage `<prefix><6 random hex digits>`, free ports, `workers` worker processes of
    /// `exe`, and `faults`.
    pub async fn start_run(
        prefix: &str,
        home: &std::path::Path,
        exe: &std::path::Path,
        workers: usize,
        faults: Faults,
    ) -> anyhow::Result<Stack> {
        raise_open_files_limit();
        let stage = Stage::new(format!(
            "{prefix}{}",
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        ))
        .with_context(|| format!("a {prefix} stage name"))?;
        eprintln!("{prefix}: starting the stack (stage {stage})");
        Stack::start(&DevConfig {
            stage,
            emulator_port: 0,
            home: home.to_path_buf(),
            workers,
            http_port: 0,
            exe: Some(exe.to_path_buf()),
            faults,
        })
        .await
    }

    /// Turns the configured faults (AWS API and invocation faults) on or off.
    pub fn set_faults(&self, on: bool) {
        if let Some(proxy) = &self.proxy {
            proxy.set_enabled(on);
        }
        self.host.set_invocation_faults(on);
    }

    /// What to print once the stack is up.
    pub fn banner(&self) -> String {
        // The Lambda API is the local host's, so `fleet dlq redrive` reaches functions.
        let exports = self.emulator.exports()
            + &format!(" AWS_ENDPOINT_URL_LAMBDA=http://{}", self.http_addr);
        let started = if self.emulator.started_here() {
            "started"
        } else {
            "reused"
        };
        let pids = self.workers.lock().map(|w| w.pids()).unwrap_or_default();
        format!(
            "{report}\nemulator: {endpoint} ({started})\nsimulation workers: {workers} (pids {pids:?})\nHTTP API: http://{http}  (token: `fleet auth token --sub NAME`)\ndashboard: http://{http}/\nops console: http://{http}/ops  (locally it offers a dev token in the fleet-ops group)\nWebSocket: ws://{http}/ws?token=TOKEN  (SSE: http://{http}/sse?channel=..&token=..)\nfake email provider: {provider} (webhooks to http://{http}/callbacks/{FAKE_PROVIDER})\n\nPoint another shell, the aws CLI or boto3 at the local stack with:\n{exports}\n",
            report = self.report,
            endpoint = self.emulator.endpoint(),
            workers = pids.len(),
            http = self.http_addr,
            pids = pids,
            provider = self.provider.url(),
            exports = exports,
        )
    }

    /// Stops everything this stack started (the emulator only if it was started here).
    pub async fn stop(self) {
        // Workers first: they drain against the emulator before it goes.
        let workers = self
            .workers
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default();
        workers.stop(Duration::from_secs(35)).await;
        self.provider.stop().await;
        if let Some(proxy) = self.proxy {
            proxy.stop().await;
        }
        if let Err(e) = self.host.shutdown().await {
            tracing::warn!(error = %e, "the local host stopped with an error");
        }
        self.emulator.stop();
    }
}

/// The ops console on the local stack, with `/dev/ops-token` for its page. Its Lambda
/// calls (redriving `failures`) go to the local host, which runs the functions, as the
/// CLI's do through `AWS_ENDPOINT_URL_LAMBDA`.
fn local_console(
    topology: &Topology,
    sdk: &aws_config::SdkConfig,
    issuer: &std::sync::Arc<auth::DevIssuer>,
    host_url: &str,
) -> anyhow::Result<axum::Router> {
    let mut ops = fleet_ops::Ops::new(topology.clone(), sdk);
    ops.lambda = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::config::Builder::from(sdk)
            .endpoint_url(host_url)
            .build(),
    );
    let verifier = auth::Verifier::new(issuer.verifier_config().context("the dev issuer's JWKS")?);
    Ok(crate::console::routes(ops, std::sync::Arc::new(verifier))
        .merge(crate::console::dev_token_routes(issuer.clone())))
}

/// The idle workers' long-poll wait in `fleet dev`: what an idle worker takes to stop
/// after Ctrl-C (SQS's 20 s, the default on AWS, made it take 20 s), for one cheap local
/// request per worker every 2 s.
const DEV_RECEIVE_WAIT_SECS: u64 = 2;

/// Where the stage's simulation workers read, write and publish.
pub fn worker_args(topology: &Topology, report: &DeployReport) -> anyhow::Result<WorkerArgs> {
    let names = topology.names();
    let queue_url = report
        .queue_url("simulation")
        .context("the deployment has no simulation queue")?
        .to_string();
    Ok(WorkerArgs {
        queue_url,
        bucket: names.bucket("results"),
        bus: names.bus(),
        table: Some(names.table("simulation-jobs")),
        worker_id: None,
        concurrency: 1,
        drain_timeout_secs: 30,
        receive_wait_secs: DEV_RECEIVE_WAIT_SECS,
        exit_with_parent: true,
    })
}

/// A port nothing listens on right now (the OS picks it).
pub(crate) fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Raises this process's open-files limit to its hard limit (each WebSocket connection is
/// a file).
pub fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let Some(max) = limit.maximum {
        let raised = rustix::process::Rlimit {
            current: Some(max),
            maximum: Some(max),
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "could not raise the open-files limit");
        }
    }
}
