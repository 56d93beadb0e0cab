//! The local AWS emulator: installs pinned `moto[server]` into a project-local virtualenv,
//! starts it on loopback (or reuses one already listening), and hands out SDK configs.
//!
//! moto speaks the real AWS wire protocols, so every crate talks to it through the
//! official SDK exactly as it would talk to AWS; only the endpoint differs.

use std::fs::{self, File};
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use tokio::sync::OnceCell;

pub mod faults;
pub mod testing;

/// The requirements installed into the virtualenv, pinned.
pub const REQUIREMENTS: &str = include_str!("../requirements.txt");
/// moto's default account id: the account every ARN in the emulator carries.
pub const ACCOUNT_ID: &str = "123456789012";
/// The region the local stack uses.
pub const REGION: &str = "us-east-1";
/// Fake credentials for the emulator; moto accepts any.
pub const ACCESS_KEY_ID: &str = "fleet-local";
pub const SECRET_ACCESS_KEY: &str = "fleet-local";

const LAUNCHER: &str = include_str!("launcher.py");

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error(
        "python3 was not found on PATH; the local emulator (moto) needs Python 3.9 or newer: install python3 (with its venv module) and try again"
    )]
    PythonMissing,
    #[error(
        "could not create the virtualenv at {path}: {detail}; install python3's venv module (Debian: apt-get install python3-venv)"
    )]
    Venv { path: PathBuf, detail: String },
    #[error("pip could not install the emulator's requirements into {path}: {detail}")]
    Pip { path: PathBuf, detail: String },
    #[error(
        "port {port} on 127.0.0.1 is in use by something that is not moto; pick another with --emulator-port"
    )]
    PortTaken { port: u16 },
    #[error("the emulator did not become ready within {seconds} s; see its log at {log}")]
    NotReady { seconds: u64, log: PathBuf },
    #[error("the emulator exited while starting (status {status}); see its log at {log}")]
    Exited { status: String, log: PathBuf },
    #[error("could not configure the emulator: {0}")]
    Configure(String),
    #[error("could not listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("I/O error at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where the emulator lives and listens.
#[derive(Debug, Clone)]
pub struct Config {
    /// Folder for the virtualenv and logs (`.fleet` at the workspace root by default).
    pub home: PathBuf,
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            home: default_home(),
            port: 4566,
        }
    }
}

/// `.fleet` at the root of the workspace this crate was built from.
pub fn default_home() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.fleet")
}

/// The project-local virtualenv.
#[derive(Debug, Clone)]
pub struct Venv {
    root: PathBuf,
}

impl Venv {
    pub fn bin(&self, name: &str) -> PathBuf {
        self.root.join("bin").join(name)
    }
    pub fn python(&self) -> PathBuf {
        self.bin("python")
    }
}

/// Creates `<home>/venv` and installs [`REQUIREMENTS`] unless an install of exactly these
/// requirements is already there. Safe to call from many processes at once: they
/// serialize on a lock file and all but the first find the work done.
pub fn ensure_venv(home: &Path) -> Result<Venv, EmulatorError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EmulatorError::Io { path, source }
    };
    fs::create_dir_all(home).map_err(io(home))?;
    let root = home.join("venv");
    let stamp = root.join(".fleet-requirements");
    let lock_path = home.join("venv.lock");
    let lock = File::create(&lock_path).map_err(io(&lock_path))?;
    lock.lock().map_err(io(&lock_path))?;

    if fs::read_to_string(&stamp).ok().as_deref() == Some(REQUIREMENTS) {
        return Ok(Venv { root });
    }
    let python = which_python().ok_or(EmulatorError::PythonMissing)?;
    eprintln!(
        "fleet: installing the local emulator (pinned moto[server]) into {} — first run only",
        root.display()
    );
    let out = Command::new(&python)
        .args(["-m", "venv", "--clear"])
        .arg(&root)
        .output()
        .map_err(io(&python))?;
    if !out.status.success() {
        return Err(EmulatorError::Venv {
            path: root,
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let venv = Venv { root };
    let req_path = home.join("requirements.txt");
    fs::write(&req_path, REQUIREMENTS).map_err(io(&req_path))?;
    let out = Command::new(venv.python())
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&req_path)
        .output()
        .map_err(io(&venv.python()))?;
    if !out.status.success() {
        return Err(EmulatorError::Pip {
            path: venv.root.clone(),
            detail: tail(&String::from_utf8_lossy(&out.stderr), 2000),
        });
    }
    fs::write(&stamp, REQUIREMENTS).map_err(io(&stamp))?;
    Ok(venv)
}

fn which_python() -> Option<PathBuf> {
    ["python3", "python"].iter().find_map(|name| {
        let ok = Command::new(name)
            .args(["-c", "import sys; assert sys.version_info >= (3, 9)"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| PathBuf::from(name))
    })
}

fn tail(text: &str, max: usize) -> String {
    let text = text.trim();
    let start = text.len().saturating_sub(max);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_string()
}

/// A running emulator: either a moto process this value owns (stopped on drop, and by
/// its own watchdog if this process dies) or one that was already listening.
#[derive(Debug)]
pub struct Emulator {
    endpoint: String,
    port: u16,
    child: Mutex<Option<Child>>,
    log: Option<PathBuf>,
}

impl Emulator {
    /// Reuses a moto already listening on `config.port`, or installs and starts one.
    pub async fn start_or_reuse(config: &Config) -> Result<Emulator, EmulatorError> {
        let http = http_client();
        if config.port != 0 {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, config.port));
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                let endpoint = format!("http://127.0.0.1:{}", config.port);
                if !is_moto(&http, &endpoint).await {
                    return Err(EmulatorError::PortTaken { port: config.port });
                }
                let emulator = Emulator {
                    endpoint,
                    port: config.port,
                    child: Mutex::new(None),
                    log: None,
                };
                emulator.configure(&http).await?;
                return Ok(emulator);
            }
        }
        let home = config.home.clone();
        let venv = tokio::task::spawn_blocking(move || ensure_venv(&home))
            .await
            .map_err(|e| EmulatorError::Configure(format!("installer task failed: {e}")))??;
        let port = match config.port {
            0 => free_port().map_err(|source| EmulatorError::Io {
                path: PathBuf::from("127.0.0.1:0"),
                source,
            })?,
            port => port,
        };
        let emulator = spawn(&venv, &config.home, port)?;
        emulator.wait_ready(&http).await?;
        emulator.configure(&http).await?;
        Ok(emulator)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether this value started (and so owns) the moto process.
    pub fn started_here(&self) -> bool {
        self.child.lock().is_ok_and(|c| c.is_some())
    }

    /// An SDK config pointing at the emulator with fake credentials.
    pub fn sdk_config(&self) -> SdkConfig {
        sdk_config_for(&self.endpoint)
    }

    /// The `export` lines that point another shell, the `aws` CLI or boto3 here.
    pub fn exports(&self) -> String {
        format!(
            "export AWS_ENDPOINT_URL={} AWS_REGION={REGION} AWS_DEFAULT_REGION={REGION} AWS_ACCESS_KEY_ID={ACCESS_KEY_ID} AWS_SECRET_ACCESS_KEY={SECRET_ACCESS_KEY}",
            self.endpoint
        )
    }

    /// Stops the moto process if this value owns it.
    pub fn stop(&self) {
        if let Ok(mut guard) = self.child.lock()
            && let Some(mut child) = guard.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn wait_ready(&self, http: &reqwest::Client) -> Result<(), EmulatorError> {
        let limit = Duration::from_secs(120);
        let deadline = Instant::now() + limit;
        let log = self.log.clone().unwrap_or_default();
        loop {
            if is_moto(http, &self.endpoint).await {
                return Ok(());
            }
            if let Ok(mut guard) = self.child.lock()
                && let Some(child) = guard.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                guard.take();
                return Err(EmulatorError::Exited {
                    status: status.to_string(),
                    log,
                });
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(EmulatorError::NotReady {
                    seconds: limit.as_secs(),
                    log,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Switches on Step Functions execution: moto then runs ASL definitions, including
    /// the SQS, DynamoDB and EventBridge service integrations and task tokens.
    async fn configure(&self, http: &reqwest::Client) -> Result<(), EmulatorError> {
        let body = serde_json::json!({"stepfunctions": {"execute_state_machine": true}});
        let response = http
            .post(format!("{}/moto-api/config", self.endpoint))
            .json(&body)
            .send()
            .await
            .map_err(|e| EmulatorError::Configure(e.to_string()))?;
        if !response.status().is_success() {
            return Err(EmulatorError::Configure(format!(
                "POST /moto-api/config answered {}",
                response.status()
            )));
        }
        Ok(())
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(venv: &Venv, home: &Path, port: u16) -> Result<Emulator, EmulatorError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EmulatorError::Io { path, source }
    };
    let launcher = home.join("moto-launcher.py");
    // Written to a unique name then renamed, so concurrent starters never read a half file.
    let tmp = home.join(format!(
        "moto-launcher.{}.py",
        uuid::Uuid::new_v4().simple()
    ));
    fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(LAUNCHER.as_bytes()))
        .map_err(io(&tmp))?;
    fs::rename(&tmp, &launcher).map_err(io(&launcher))?;
    let log = home.join(format!("moto-{port}.log"));
    let log_file = File::create(&log).map_err(io(&log))?;
    let log_err = log_file.try_clone().map_err(io(&log))?;
    let child = Command::new(venv.python())
        .arg(&launcher)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        // A group of its own: Ctrl-C in a terminal signals the whole foreground group,
        // and the emulator must outlast its owner's shutdown (workers draining, the host's
        // last calls), which stops it last. The launcher's watchdog still ends it if the
        // owner dies first.
        .process_group(0)
        .spawn()
        .map_err(io(&venv.python()))?;
    Ok(Emulator {
        endpoint: format!("http://127.0.0.1:{port}"),
        port,
        child: Mutex::new(Some(child)),
        log: Some(log),
    })
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .unwrap_or_default()
}

async fn is_moto(http: &reqwest::Client, endpoint: &str) -> bool {
    let Ok(response) = http.get(format!("{endpoint}/moto-api/config")).send().await else {
        return false;
    };
    response.status().is_success()
        && response
            .json::<serde_json::Value>()
            .await
            // moto's config endpoint answers with its feature switches, e.g. `{"batch": ...}`.
            .is_ok_and(|v| v.get("batch").is_some() || v.get("stepfunctions").is_some())
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// An SDK config for an emulator endpoint, with fake credentials and the local region.
pub fn sdk_config_for(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                ACCESS_KEY_ID,
                SECRET_ACCESS_KEY,
                None,
                None,
                "fleet-emulator",
            )),
        )
        .build()
}

static TEST_EMULATOR: OnceCell<Emulator> = OnceCell::const_new();

/// The emulator shared by every test in this process: `FLEET_TEST_ENDPOINT` if set (a
/// moto someone else runs), else a moto started on a free port that dies with the process.
pub async fn test_emulator() -> &'static Emulator {
    TEST_EMULATOR
        .get_or_init(|| async {
            let endpoint = std::env::var("FLEET_TEST_ENDPOINT").ok();
            let result = match endpoint.as_deref().and_then(port_of) {
                Some(port) => {
                    Emulator::start_or_reuse(&Config {
                        home: default_home(),
                        port,
                    })
                    .await
                }
                None => {
                    Emulator::start_or_reuse(&Config {
                        home: default_home(),
                        port: 0,
                    })
                    .await
                }
            };
            match result {
                Ok(emulator) => emulator,
                // Tests cannot run without it; the message says what to fix.
                Err(e) => panic!("the test emulator could not start: {e}"),
            }
        })
        .await
}

fn port_of(endpoint: &str) -> Option<u16> {
    endpoint
        .rsplit(':')
        .next()?
        .trim_end_matches('/')
        .parse()
        .ok()
}

/// A stage name no other test uses, so tests can share one emulator in parallel.
pub fn unique_stage() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// A resource name no other test uses, prefixed for readability.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}
