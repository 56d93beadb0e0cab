//! CloudFormation synthesis: one stack for `core` and one per microservice.
//!
//! References inside a stack use `Ref`/`Fn::GetAtt`; references to an earlier stack use
//! `Fn::ImportValue` of the exports every stack publishes for its shareable resources
//! (`<stack>:<LogicalId><Attr>`, e.g. `fleet-dev-core:BusArn`). Queue policies name their
//! senders by constructed ARNs instead, so a queue never depends on a later stack.
//!
//! This module walks the model and holds the entry points; each resource kind's
//! resources are written by the `impl Synth` block in the file of that kind, and
//! `values` resolves references into `Ref`, `Fn::GetAtt` and `Fn::ImportValue`.

mod apis;
mod buckets;
mod bus;
mod fargate;
mod functions;
mod iam;
mod queues;
mod rules;
mod stack;
mod state_machines;
mod tables;
mod topics;
mod values;

use std::path::{Path, PathBuf};

use serde_json::Value;

use topology::{Names, Owners, Resource, Topology, TopologyError};

use stack::Stack;
use values::Kind;

/// One CloudFormation stack's template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub stack_name: String,
    pub body: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error(transparent)]
    Invalid(#[from] TopologyError),
    #[error(transparent)]
    Definition(#[from] crate::DefinitionError),
    #[error("stack {stack}: two resources would both have the logical id {id}")]
    DuplicateLogicalId { stack: String, id: String },
    #[error("cannot write the template {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The templates for `topology`: `fleet-<stage>-core` first, then one per service.
pub fn synth(topology: &Topology) -> Result<Vec<Template>, SynthError> {
    topology.validate()?;
    let names = topology.names();
    let mut ctx = Synth {
        topology,
        owners: Owners::new(topology),
        stacks: topology
            .services
            .iter()
            .map(|s| Stack::new(names.stack(&s.name), &names, &s.name))
            .collect(),
        names,
    };
    for (at, service) in topology.services.iter().enumerate() {
        for resource in &service.resources {
            match resource {
                Resource::EventBus(_) => ctx.bus(at),
                Resource::Queue(q) => ctx.queue(at, q),
                Resource::Topic(t) => ctx.topic(at, t),
                Resource::Table(t) => ctx.table(at, t),
                Resource::Bucket(b) => ctx.bucket(at, b),
                Resource::StateMachine(m) => ctx.state_machine(at, m)?,
                Resource::Rule(r) => ctx.rule(at, r),
                Resource::Function(f) => ctx.function(at, &service.name, f),
                Resource::FargateService(f) => ctx.fargate(at, &service.name, f),
            }
        }
    }
    ctx.subscriptions();
    ctx.queue_policies();
    ctx.stacks.into_iter().map(Stack::finish).collect()
}

/// Writes each template to `<dir>/<stack>.json`, creating `dir`, and returns the paths.
pub fn write(dir: &Path, templates: &[Template]) -> Result<Vec<PathBuf>, SynthError> {
    std::fs::create_dir_all(dir).map_err(|source| SynthError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths = Vec::new();
    for template in templates {
        let path = dir.join(format!("{}.json", template.stack_name));
        let mut text = serde_json::to_string_pretty(&template.body)
            .unwrap_or_else(|e| unreachable!("a JSON value always serializes: {e}"));
        text.push('\n');
        std::fs::write(&path, text).map_err(|source| SynthError::Write {
            path: path.clone(),
            source,
        })?;
        paths.push(path);
    }
    Ok(paths)
}

/// The Lambda runtime every function uses: a custom runtime running `bootstrap`.
pub const LAMBDA_RUNTIME: &str = "provided.al2023";
pub const LAMBDA_ARCHITECTURE: &str = "arm64";
/// The template parameters that locate the build's artifacts.
pub const PARAM_ARTIFACT_BUCKET: &str = "ArtifactBucket";
pub const PARAM_ARTIFACT_PREFIX: &str = "ArtifactPrefix";
pub const PARAM_WORKER_IMAGE: &str = "WorkerImage";
pub const PARAM_VPC: &str = "VpcId";
pub const PARAM_SUBNETS: &str = "SubnetIds";
pub const PARAM_ASSIGN_PUBLIC_IP: &str = "AssignPublicIp";

const POLICY_VERSION: &str = "2012-10-17";
const LOG_RETENTION_DAYS: u32 = 30;

struct Synth<'a> {
    topology: &'a Topology,
    names: Names,
    owners: Owners,
    stacks: Vec<Stack>,
}

impl<'a> Synth<'a> {
    fn stack_name(&self, index: usize) -> &str {
        &self.stacks[index].name
    }

    /// Outputs (and exports) every attribute of a shareable resource.
    fn exported(&mut self, at: usize, kind: Kind, name: &str) {
        let id = kind.logical_id(name);
        for &attr in kind.attrs() {
            let value = kind.local(&id, attr);
            self.stacks[at].export(format!("{id}{}", attr.as_str()), value);
        }
    }
}
