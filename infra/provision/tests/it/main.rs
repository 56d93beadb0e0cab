//! The topology crate's integration tests: synthesized templates (snapshots, IAM rules,
//! cfn-lint), validation, and deployment against the emulator.

mod deploy;
mod samples;
mod synth;
mod validate;
