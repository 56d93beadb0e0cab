//! The `fleet` command as a user runs it: real processes against the emulator.

mod cli;
mod dev;
mod ops;
