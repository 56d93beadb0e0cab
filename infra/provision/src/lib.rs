//! The fleet's infrastructure, defined once as typed Rust, made real.
//!
//! The vocabulary is `shared/topology` (re-exported here). [`fleet`] returns THE [`Topology`]: services (`core`, `simulation`, ...) owning typed
//! resources. From it, [`synth`] produces one CloudFormation template per service for AWS,
//! and [`deploy`] creates the same resources through the AWS SDK at any endpoint (locally,
//! the moto emulator), idempotently.
//!
//! What the SDK deployment creates: the event bus, queues (with dead-letter queues and
//! redrive policies), topics with their queue subscriptions and queue policies, tables
//! (with TTL), buckets, state machines, and rules with their queue and state machine
//! targets. ECS (Fargate), IAM, Application Auto Scaling, CloudWatch alarms, Lambda and
//! API Gateway exist only in the CloudFormation templates: locally the project's host
//! process stands in for them, and rule targets that are Lambda functions are listed in
//! [`DeployReport::lambda_targets`] for it instead of being created.
//!
//! Physical names always come from [`Names`]: `fleet-<stage>-<name>`.

mod definition;
mod deploy;
mod environment;
mod fleet;
mod synth;

// The vocabulary (`shared/topology`), so one import serves those who deploy.
pub use topology::*;

pub use definition::{DefinitionError, definition};

pub use deploy::{DeployError, DeployReport, Deployed, LambdaTarget, Outcome, deploy};
pub use environment::{EnvironmentError, environment};
pub use fleet::{fleet, functions};
pub use synth::{
    LAMBDA_ARCHITECTURE, LAMBDA_RUNTIME, PARAM_ARTIFACT_BUCKET, PARAM_ARTIFACT_PREFIX,
    PARAM_ASSIGN_PUBLIC_IP, PARAM_SUBNETS, PARAM_VPC, PARAM_WORKER_IMAGE, SynthError, Template,
    synth, write,
};
