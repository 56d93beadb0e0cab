//! Integration tests of the simulation worker: the models through the public registry,
//! and the worker against the emulator (in process, and as the real binary).

// Test helpers panic on a failed setup call: that is the test failing.
#![allow(clippy::unwrap_used)]

mod exec;
mod jobs;
mod process;
mod props;
mod registry;
mod sir;
mod spin;
mod stack;

use std::sync::Mutex;

use serde_json::Value;
use simulation::models::{
    CancelFlag, ModelError, ModelOutput, NoProgress, Registry, RegistryConfig,
};

/// Runs model `name` from a registry with no exec models.
fn run(name: &str, params: Value) -> Result<ModelOutput, ModelError> {
    run_with(RegistryConfig::default(), name, params)
}

fn run_with(config: RegistryConfig, name: &str, params: Value) -> Result<ModelOutput, ModelError> {
    let registry = Registry::new(config).expect("test config is valid");
    registry
        .get(name)?
        .run(&params, &NoProgress, &CancelFlag::new())
}

/// Records every progress report.
#[derive(Default)]
struct Recorder(Mutex<Vec<(f64, Option<String>)>>);

impl simulation::models::Progress for Recorder {
    fn report(&self, fraction: f64, message: Option<&str>) {
        self.0
            .lock()
            .expect("no reporter panicked while holding the lock")
            .push((fraction, message.map(str::to_owned)));
    }
}

impl Recorder {
    fn fractions(&self) -> Vec<f64> {
        self.0
            .lock()
            .expect("no reporter panicked while holding the lock")
            .iter()
            .map(|(f, _)| *f)
            .collect()
    }
}

/// Asserts that running `model` with `params` is rejected naming `field`, with a reason
/// containing `reason`.
#[track_caller]
fn check_invalid(model: &str, params: Value, field: &str, reason: &str) {
    match run(model, params.clone()) {
        Err(ModelError::InvalidParams {
            field: got_field,
            reason: got_reason,
        }) => {
            assert_eq!(got_field, field, "params {params}: reason {got_reason}");
            assert!(
                got_reason.contains(reason),
                "params {params}: expected reason containing {reason:?}, got {got_reason:?}"
            );
        }
        other => panic!("params {params}: expected InvalidParams for {field}, got {other:?}"),
    }
}
