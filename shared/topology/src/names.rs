//! Stages and the physical names derived from them: every crate computes names here.

use std::fmt;
use std::str::FromStr;

/// A deployment stage (`dev`, `prod`, `t1a2b3c4d`, ...): 1–16 characters of `[a-z0-9-]`,
/// starting with a letter. Every physical name carries it, so stages never collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Stage(String);

/// Why a string is not a [`Stage`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid stage {stage:?}: a stage is 1-16 characters of [a-z0-9-] starting with a letter")]
pub struct StageError {
    pub stage: String,
}

impl Stage {
    /// The longest stage; it keeps every physical name within its service's limit.
    pub const MAX_LEN: usize = 16;

    pub fn new(stage: impl Into<String>) -> Result<Self, StageError> {
        let stage = stage.into();
        let valid = (1..=Self::MAX_LEN).contains(&stage.len())
            && stage.starts_with(|c: char| c.is_ascii_lowercase())
            && stage
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if valid {
            Ok(Stage(stage))
        } else {
            Err(StageError { stage })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Stage {
    fn default() -> Self {
        Stage("dev".to_owned())
    }
}

impl FromStr for Stage {
    type Err = StageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stage::new(s)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Physical names for one stage: `fleet-<stage>-<name>`, and `fleet-<stage>` for the bus.
///
/// Logical names (`simulation`, `jobs`, ...) are what the code and the topology speak;
/// physical names are what AWS sees. Everything that needs a physical name asks here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    stage: Stage,
}

impl Names {
    pub fn new(stage: &Stage) -> Self {
        Names {
            stage: stage.clone(),
        }
    }

    pub fn stage(&self) -> &Stage {
        &self.stage
    }

    /// `fleet-<stage>`: the prefix of every name, and the event bus's own name.
    pub fn prefix(&self) -> String {
        format!("fleet-{}", self.stage)
    }

    /// The fleet's event bus.
    pub fn bus(&self) -> String {
        self.prefix()
    }

    /// The CloudFormation stack of a service (`core`, `simulation`, ...).
    pub fn stack(&self, service: &str) -> String {
        self.scoped(service)
    }

    pub fn queue(&self, name: &str) -> String {
        self.scoped(name)
    }

    /// The dead-letter queue of the queue `name`.
    pub fn dlq(&self, name: &str) -> String {
        format!("{}-dlq", self.scoped(name))
    }

    pub fn topic(&self, name: &str) -> String {
        self.scoped(name)
    }

    pub fn table(&self, name: &str) -> String {
        self.scoped(name)
    }

    /// S3 bucket names are global, lowercase and at most 63 characters; the topology's
    /// validation keeps `name` short enough for the longest stage.
    pub fn bucket(&self, name: &str) -> String {
        self.scoped(name)
    }

    pub fn state_machine(&self, name: &str) -> String {
        self.scoped(name)
    }

    /// A Lambda function; `name` is the handler's name.
    pub fn function(&self, name: &str) -> String {
        self.scoped(name)
    }

    pub fn rule(&self, name: &str) -> String {
        self.scoped(name)
    }

    /// The ECS cluster, service and task family of a Fargate service.
    pub fn fargate_service(&self, name: &str) -> String {
        self.scoped(name)
    }

    /// The HTTP API of a service.
    pub fn http_api(&self, service: &str) -> String {
        self.scoped(service)
    }

    /// Where the stage's SSM parameters under `path` live: `/fleet/<stage>/<path>`.
    pub fn parameter_path(&self, path: &str) -> String {
        format!("/fleet/{}/{}", self.stage, path.trim_matches('/'))
    }

    /// The WebSocket API of a service.
    pub fn websocket_api(&self, service: &str) -> String {
        self.scoped(&format!("{service}-ws"))
    }

    fn scoped(&self, name: &str) -> String {
        format!("fleet-{}-{}", self.stage, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_stage(input: &str, valid: bool) {
        assert_eq!(Stage::new(input).is_ok(), valid, "stage {input:?}");
    }

    #[test]
    fn stages() {
        check_stage("dev", true);
        check_stage("t1a2b3c4d", true);
        check_stage("pr-42", true);
        check_stage("abcdefghijklmnop", true);
        check_stage("", false);
        check_stage("abcdefghijklmnopq", false);
        check_stage("1dev", false);
        check_stage("-dev", false);
        check_stage("Dev", false);
        check_stage("dev_1", false);
        assert_eq!(Stage::default().as_str(), "dev");
    }

    #[test]
    fn physical_names() {
        let names = Names::new(&Stage::default());
        assert_eq!(names.bus(), "fleet-dev");
        assert_eq!(names.stack("core"), "fleet-dev-core");
        assert_eq!(names.queue("simulation"), "fleet-dev-simulation");
        assert_eq!(names.dlq("simulation"), "fleet-dev-simulation-dlq");
        assert_eq!(names.table("jobs"), "fleet-dev-jobs");
        assert_eq!(names.bucket("results"), "fleet-dev-results");
        assert_eq!(
            names.state_machine("simulation-job"),
            "fleet-dev-simulation-job"
        );
        assert_eq!(names.function("jobs-api"), "fleet-dev-jobs-api");
        assert_eq!(names.topic("failures"), "fleet-dev-failures");
        assert_eq!(names.rule("job-requested"), "fleet-dev-job-requested");
    }
}
