//! The worker's configuration: what the binary reads from its environment, as a struct,
//! and the parser for the operator's `exec` model definitions.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use aws_config::SdkConfig;
use serde::Deserialize;
use sqs_worker::QueueUrl;

use crate::models::{ExecCommand, RegistryConfig};

/// Everything [`crate::run`] needs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub sdk: SdkConfig,
    /// The deployment stage, for logs.
    pub stage: String,
    pub queue_url: QueueUrl,
    /// The idempotency table (`fleet-<stage>-simulation-jobs`, partition key `jobId`);
    /// `None` runs every delivery.
    pub table: Option<String>,
    /// Where results are stored, as `results/<jobId>.json`.
    pub bucket: String,
    /// The event bus for `JobStarted` and `JobProgress`.
    pub bus: String,
    /// Unique per process: the `worker` of events and task outputs, the owner of leases.
    pub worker_id: String,
    /// Models running at once; they are CPU-bound, so about one per vCPU.
    pub concurrency: usize,
    /// After SIGTERM, how long running jobs may take (Fargate's stopTimeout is at most
    /// 120 s; leave a few seconds for the final flush).
    pub drain_timeout: Duration,
    /// The SQS lease; `None` uses the queue's `VisibilityTimeout`.
    pub visibility_timeout: Option<Duration>,
    /// The long-poll wait of an idle worker's receive (1 to 20 s). A draining worker lets
    /// its receive finish, so an idle one takes up to this long to stop: 20 s costs the
    /// fewest requests, a short one suits a laptop's Ctrl-C.
    pub receive_wait: Duration,
    /// How often `SendTaskHeartbeat` is sent; well under the state's `HeartbeatSeconds`.
    /// A cancelled job's model is stopped within one interval (the heartbeat is how the
    /// worker learns of it).
    pub heartbeat_interval: Duration,
    /// At most one `JobProgress` per job this often (plus the final 1.0).
    pub progress_interval: Duration,
    pub registry: RegistryConfig,
    /// How often the runtime logs its metrics as an EMF line; `None` for never.
    pub metrics_log: Option<Duration>,
}

impl WorkerConfig {
    /// Defaults for everything but the resources.
    pub fn new(
        sdk: SdkConfig,
        queue_url: QueueUrl,
        bucket: impl Into<String>,
        bus: impl Into<String>,
    ) -> Self {
        WorkerConfig {
            sdk,
            stage: "dev".to_string(),
            queue_url,
            table: None,
            bucket: bucket.into(),
            bus: bus.into(),
            worker_id: format!(
                "simulation-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            ),
            concurrency: 1,
            drain_timeout: Duration::from_secs(100),
            visibility_timeout: None,
            receive_wait: Duration::from_secs(20),
            heartbeat_interval: Duration::from_secs(5),
            progress_interval: Duration::from_secs(1),
            registry: RegistryConfig::default(),
            metrics_log: Some(Duration::from_secs(60)),
        }
    }
}

/// A receive wait SQS does not take.
#[derive(Debug, thiserror::Error)]
#[error("{0} s is not a receive wait: use 1 to 20 (SQS long-polls at most 20 s)")]
pub struct InvalidReceiveWait(pub u64);

/// [`WorkerConfig::receive_wait`] of `seconds`, which must be 1 to 20.
pub fn receive_wait(seconds: u64) -> Result<Duration, InvalidReceiveWait> {
    match seconds {
        1..=20 => Ok(Duration::from_secs(seconds)),
        _ => Err(InvalidReceiveWait(seconds)),
    }
}

/// The `EXEC_MODELS` document is invalid.
#[derive(Debug, thiserror::Error)]
#[error("invalid exec model configuration: {path}: {message}")]
pub struct ExecModelsError {
    /// Where in the document (`.sir2.program`).
    pub path: String,
    pub message: String,
}

/// One `exec` model as the operator writes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExecModelSpec {
    program: PathBuf,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    timeout_secs: Option<u64>,
}

/// Parses `exec` model definitions:
/// `{"<model name>": {"program": "/opt/bin/x", "args": ["--json"], "timeoutSecs": 600}}`.
pub fn parse_exec_models(json: &str) -> Result<RegistryConfig, ExecModelsError> {
    let mut de = serde_json::Deserializer::from_str(json);
    let specs: BTreeMap<String, ExecModelSpec> = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| ExecModelsError {
            path: e.path().to_string(),
            message: e.into_inner().to_string(),
        })?;
    let exec = specs
        .into_iter()
        .map(|(name, spec)| {
            (
                name,
                ExecCommand {
                    program: spec.program,
                    args: spec.args,
                    timeout: spec.timeout_secs.map(Duration::from_secs),
                },
            )
        })
        .collect();
    Ok(RegistryConfig { exec })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receive_wait_outside_what_sqs_takes_is_refused_naming_the_range() {
        assert_eq!(receive_wait(1).unwrap(), Duration::from_secs(1));
        assert_eq!(receive_wait(20).unwrap(), Duration::from_secs(20));
        for bad in [0, 21] {
            let message = receive_wait(bad).unwrap_err().to_string();
            assert!(message.contains("use 1 to 20"), "{message}");
        }
    }

    #[test]
    fn exec_models_parse() {
        let config = parse_exec_models(
            r#"{"echo": {"program": "/bin/cat", "args": ["-"], "timeoutSecs": 5}, "bare": {"program": "x"}}"#,
        )
        .unwrap();
        assert_eq!(
            config.exec["echo"],
            ExecCommand {
                program: "/bin/cat".into(),
                args: vec!["-".into()],
                timeout: Some(Duration::from_secs(5)),
            }
        );
        assert_eq!(config.exec["bare"].timeout, None);
    }

    #[test]
    fn exec_model_errors_name_the_place() {
        let error =
            parse_exec_models(r#"{"echo": {"program": "/bin/cat", "timeout": 5}}"#).unwrap_err();
        assert_eq!(error.path, "echo.timeout");
        assert!(error.message.contains("unknown field `timeout`"), "{error}");
        let error = parse_exec_models(r#"{"echo": {"args": []}}"#).unwrap_err();
        assert!(error.message.contains("missing field `program`"), "{error}");
    }
}
