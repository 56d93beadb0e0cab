//! Simulation models behind one trait, looked up by name in a [`Registry`].
//!
//! A job names a model and carries its parameters as JSON; the worker looks the model up
//! with [`Registry::get`], runs it on a blocking thread, forwards [`Progress`] reports as
//! heartbeats, and stores [`ModelOutput::result`] in S3 while [`ModelOutput::summary`]
//! goes into the Step Functions output.
//!
//! Built-in models: [`sir`] (stochastic SIR/SEIR epidemics) and [`spin`] (burns CPU, fails,
//! crashes or hangs on request, for benchmarks and fault tests). Their parameters, limits
//! and checks live in `contracts::models`, the catalog the jobs API checks jobs against
//! at submit: one check, in one place. Any number of [`exec`]
//! models run an external command; their commands come from [`RegistryConfig`], never from
//! a message, so a job can only choose among commands the operator configured.

pub mod exec;
pub mod sir;
pub mod spin;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;

pub use exec::ExecModel;
pub use sir::{SirModel, SirParams};
pub use spin::{SpinMode, SpinModel, SpinParams};

/// Receives progress from a running model: a fraction in `0.0..=1.0` and an optional
/// message.
///
/// Models may call it often (several times a second), so implementations must be cheap;
/// the caller throttles anything expensive, such as sending heartbeats.
pub trait Progress: Send + Sync {
    /// Reports that the run is `fraction` done (`0.0..=1.0`), with an optional message.
    fn report(&self, fraction: f64, message: Option<&str>);
}

impl<F: Fn(f64, Option<&str>) + Send + Sync> Progress for F {
    fn report(&self, fraction: f64, message: Option<&str>) {
        self(fraction, message);
    }
}

/// A [`Progress`] that discards every report.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn report(&self, _fraction: f64, _message: Option<&str>) {}
}

/// Asks a running model to stop early; models poll it between units of work.
///
/// Clones share one flag: the worker keeps a clone and calls [`CancelFlag::cancel`] when it
/// shuts down, and the model returns [`ModelError::Cancelled`] soon after.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    /// A flag that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every model polling this flag (or a clone of it) to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`CancelFlag::cancel`] was called on this flag or a clone of it.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The outcome of a successful model run.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOutput {
    /// A small digest (a few KB at most) that goes into the Step Functions output.
    pub summary: Value,
    /// The full result, which the caller stores in S3.
    pub result: Value,
}

/// Why a model did not produce a [`ModelOutput`].
///
/// [`ModelError::error_name`] gives the stable name a Step Functions `Catch` or `Retry`
/// matches on, and [`ModelError::is_retryable`] says whether running the same job again
/// could succeed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The parameters are invalid; running again cannot help. `field` is the JSON path of
    /// the offending parameter (`params.beta`) and `reason` says how to fix it.
    #[error("invalid parameter `{field}`: {reason}")]
    InvalidParams { field: String, reason: String },
    /// No model has this name; the message lists the names that exist.
    #[error("unknown model `{name}`; known models: {}", .known.join(", "))]
    UnknownModel { name: String, known: Vec<String> },
    /// The model ran and failed: `spin` told to fail, an `exec` command that exited
    /// non-zero or printed invalid JSON (the message then ends with the tail of its stderr).
    #[error("model failed: {0}")]
    Failed(String),
    /// An `exec` command ran longer than its configured timeout and was killed.
    #[error("model timed out after {after:?} and was killed")]
    TimedOut { after: Duration },
    /// The run was stopped through its [`CancelFlag`], normally because the worker is
    /// shutting down; the job itself was not at fault.
    #[error("model run was cancelled")]
    Cancelled,
    /// The worker could not talk to an `exec` command (start it, or use its pipes).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ModelError {
    /// Every name [`ModelError::error_name`] can return, for state machine definitions
    /// and their tests.
    pub const ERROR_NAMES: &[&str] = &[
        "Model.InvalidParams",
        "Model.UnknownModel",
        "Model.Failed",
        "Model.Timeout",
        "Model.Cancelled",
        "Model.Io",
    ];

    /// The stable error name reported to Step Functions (`SendTaskFailure`'s `error`).
    pub fn error_name(&self) -> &'static str {
        match self {
            Self::InvalidParams { .. } => "Model.InvalidParams",
            Self::UnknownModel { .. } => "Model.UnknownModel",
            Self::Failed(_) => "Model.Failed",
            Self::TimedOut { .. } => "Model.Timeout",
            Self::Cancelled => "Model.Cancelled",
            Self::Io { .. } => "Model.Io",
        }
    }

    /// Whether running the same job again could succeed.
    ///
    /// Models are deterministic in their parameters, so a failure or a timeout would
    /// repeat; a cancellation (the worker shut down) or an I/O error (the machine) says
    /// nothing about the job.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::InvalidParams { .. }
            | Self::UnknownModel { .. }
            | Self::Failed(_)
            | Self::TimedOut { .. } => false,
            Self::Cancelled | Self::Io { .. } => true,
        }
    }

    /// An [`ModelError::InvalidParams`] for `field` (a path such as `params.beta`).
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidParams {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<contracts::models::ParamError> for ModelError {
    fn from(error: contracts::models::ParamError) -> Self {
        Self::InvalidParams {
            field: error.field,
            reason: error.reason,
        }
    }
}

/// A simulation model.
///
/// `run` is blocking CPU work: the caller runs it on a blocking thread
/// (`tokio::task::spawn_blocking`), where it may use a whole core for as long as it needs.
pub trait Model: Send + Sync {
    /// The name jobs use to choose this model.
    fn name(&self) -> &str;

    /// Checks `params` without running the model, so a job can be rejected before any
    /// work starts. [`Model::run`] checks them again; the default accepts anything.
    fn validate(&self, params: &Value) -> Result<(), ModelError> {
        let _ = params;
        Ok(())
    }

    /// Runs the model, reporting progress and stopping early (with
    /// [`ModelError::Cancelled`]) once `cancel` is set.
    fn run(
        &self,
        params: &Value,
        progress: &dyn Progress,
        cancel: &CancelFlag,
    ) -> Result<ModelOutput, ModelError>;

    /// Whether the caller must stop heartbeating while this run is in progress.
    ///
    /// Only `spin` with `"mode": "hang"` says yes: it simulates a worker that is stuck
    /// but still alive, so the task's heartbeat timeout is what must notice. The caller
    /// asks before starting the run; the default is `false`.
    fn suppresses_heartbeat(&self, params: &Value) -> bool {
        let _ = params;
        false
    }
}

/// How to run one `exec` model: an operator-configured command, never one from a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCommand {
    /// The program to start (looked up on `PATH` when it has no slash).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Kill the command (and its process group) when it runs longer than this;
    /// [`exec::DEFAULT_TIMEOUT`] when `None`, at most [`exec::MAX_TIMEOUT`].
    pub timeout: Option<Duration>,
}

/// What a [`Registry`] holds besides the built-in models.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryConfig {
    /// `exec` models by model name.
    pub exec: BTreeMap<String, ExecCommand>,
}

/// A [`RegistryConfig`] that cannot be turned into a [`Registry`].
#[derive(Debug, thiserror::Error)]
pub enum RegistryConfigError {
    /// An `exec` model would shadow a built-in model.
    #[error("exec model `{0}` has the name of a built-in model; choose another name")]
    NameTaken(String),
    /// An `exec` model has an empty name.
    #[error("exec model names must not be empty")]
    EmptyName,
    /// An `exec` model has an empty program path.
    #[error("exec model `{0}` has an empty program")]
    EmptyProgram(String),
    /// An `exec` model's arguments exceed [`exec::MAX_ARGS`] or [`exec::MAX_ARG_BYTES`].
    #[error("exec model `{model}`: `args` {reason}")]
    Args { model: String, reason: String },
    /// An `exec` model's timeout is zero or over [`exec::MAX_TIMEOUT`].
    #[error(
        "exec model `{model}`: `timeoutSecs` is {secs}; use 1 to {} (12 hours)",
        exec::MAX_TIMEOUT.as_secs()
    )]
    Timeout { model: String, secs: u64 },
}

/// The models a worker can run, by name: the built-ins plus the configured `exec` models.
pub struct Registry {
    models: BTreeMap<String, Box<dyn Model>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("models", &self.models.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// Builds the registry. Fails when an `exec` model would shadow a built-in model,
    /// which is a configuration mistake best caught at startup.
    pub fn new(config: RegistryConfig) -> Result<Self, RegistryConfigError> {
        let mut models: BTreeMap<String, Box<dyn Model>> = BTreeMap::new();
        models.insert(sir::NAME.to_owned(), Box::new(SirModel));
        models.insert(spin::NAME.to_owned(), Box::new(SpinModel));
        for (name, command) in config.exec {
            if name.is_empty() {
                return Err(RegistryConfigError::EmptyName);
            }
            if command.program.as_os_str().is_empty() {
                return Err(RegistryConfigError::EmptyProgram(name));
            }
            if models.contains_key(&name) {
                return Err(RegistryConfigError::NameTaken(name));
            }
            if let Err(reason) = exec::check_args(&command.args) {
                return Err(RegistryConfigError::Args {
                    model: name,
                    reason,
                });
            }
            if let Some(timeout) = command.timeout
                && (timeout.is_zero() || timeout > exec::MAX_TIMEOUT)
            {
                return Err(RegistryConfigError::Timeout {
                    model: name,
                    secs: timeout.as_secs(),
                });
            }
            models.insert(name.clone(), Box::new(ExecModel::new(name, command)));
        }
        Ok(Self { models })
    }

    /// The model called `name`, or [`ModelError::UnknownModel`] listing the known names.
    pub fn get(&self, name: &str) -> Result<&dyn Model, ModelError> {
        self.models
            .get(name)
            .map(|model| model.as_ref())
            .ok_or_else(|| ModelError::UnknownModel {
                name: name.to_owned(),
                known: self.names().map(str::to_owned).collect(),
            })
    }

    /// The names of all models, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn error_names_are_stable_and_listed() {
        let errors = [
            ModelError::invalid("params.beta", "must be > 0"),
            ModelError::UnknownModel {
                name: "x".into(),
                known: vec![],
            },
            ModelError::Failed("boom".into()),
            ModelError::TimedOut {
                after: Duration::from_secs(1),
            },
            ModelError::Cancelled,
            ModelError::Io {
                context: "starting `x`".into(),
                source: std::io::Error::other("nope"),
            },
        ];
        let names: Vec<_> = errors.iter().map(ModelError::error_name).collect();
        assert_eq!(names, ModelError::ERROR_NAMES);
        let retryable: Vec<_> = errors.iter().map(ModelError::is_retryable).collect();
        assert_eq!(retryable, [false, false, false, false, true, true]);
    }

    #[test]
    fn params_must_be_an_object() {
        let error = SirModel.validate(&json!([1, 2])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid parameter `params`: must be a JSON object, got an array"
        );
    }

    #[test]
    fn exec_models_cannot_shadow_builtins() {
        let mut config = RegistryConfig::default();
        config.exec.insert(
            "sir".into(),
            ExecCommand {
                program: "/bin/true".into(),
                args: vec![],
                timeout: None,
            },
        );
        let error = Registry::new(config).unwrap_err();
        assert!(matches!(error, RegistryConfigError::NameTaken(name) if name == "sir"));
    }

    #[test]
    fn cancel_flag_is_shared_by_clones() {
        let flag = CancelFlag::new();
        let clone = flag.clone();
        assert!(!clone.is_cancelled());
        flag.cancel();
        assert!(clone.is_cancelled());
    }
}
