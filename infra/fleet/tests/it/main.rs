//! The `fleet` command as a user runs it: real processes against the emulator.

// Tests may panic on what they did not expect: that is how they fail.
#![allow(clippy::unwrap_used)]

mod chaos;
mod cli;
mod cost;
mod dev;
mod ops;
