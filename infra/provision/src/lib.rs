//! The fleet's infrastructure, defined once as typed Rust.
//!
//! [`fleet`] returns THE [`Topology`]: services (`core`, `simulation`, ...) owning typed
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

mod deploy;
mod fleet;
mod model;
mod names;
mod synth;
mod validate;

pub use deploy::{DeployError, DeployReport, Deployed, LambdaTarget, Outcome, deploy};
pub use fleet::{FAILURES, JOBS_SOURCE, core, fleet, jobs, simulation};
pub use model::{
    Bucket, BusRef, DeadLetter, DeadLetterSource, DefinitionError, Dlq, EventBus, FargateService,
    Function, FunctionKind, Gsi, Key, KeyKind, Method, Permission, Queue, Resource, ResourceKind,
    ResourceRef, Route, Rule, Scaling, Service, Sources, StateMachine, TASK_TOKEN_ACTIONS, Table,
    Target, TokenSetting, Topic, Topology, ValueRef, default_definitions_dir,
};
pub use names::{Names, Stage, StageError};
pub use synth::{
    LAMBDA_ARCHITECTURE, LAMBDA_RUNTIME, PARAM_ARTIFACT_BUCKET, PARAM_ARTIFACT_PREFIX,
    PARAM_ASSIGN_PUBLIC_IP, PARAM_SUBNETS, PARAM_VPC, PARAM_WORKER_IMAGE, SynthError, Template,
    synth, write,
};
pub use validate::{CORE, TopologyError};
