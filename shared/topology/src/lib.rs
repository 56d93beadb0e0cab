//! The fleet's infrastructure vocabulary, as pure data: no I/O, no AWS SDK.
//!
//! A [`Topology`] is `core` plus one [`Service`] per microservice, each owning typed
//! resources (queues, tables, functions, state machines, rules, ...) named by logical
//! names. Each service declares its own part (`workers/<svc>/src/service.rs`); the
//! `provision` crate (`infra/provision`) assembles the fleet, synthesizes CloudFormation
//! from it and deploys it over the SDK.
//!
//! Physical names always come from [`Names`]: `fleet-<stage>-<name>`.

mod core;
pub mod env;
mod model;
mod names;
mod validate;

pub use crate::core::{FAILURES, core};
pub use model::{
    Bucket, BucketCors, BusRef, DeadLetter, DeadLetterSource, Dlq, EventBus, FargateService,
    Function, FunctionKind, Gsi, Key, KeyKind, Method, Permission, Queue, Resource, ResourceKind,
    ResourceRef, Route, Rule, Scaling, Service, Sources, StateMachine, TASK_TOKEN_ACTIONS, Table,
    Target, TokenSetting, Topic, Topology, ValueRef, default_definitions_dir,
};
pub use names::{Names, Stage, StageError};
pub use validate::{CORE, Owners, RefKind, TopologyError, camel};
