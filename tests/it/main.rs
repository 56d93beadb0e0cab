//! End-to-end scenarios against the local stack, and the workspace's invariants.

// Tests may panic on what they did not expect: that is how they fail.
#![allow(clippy::unwrap_used)]

mod architecture;
mod browser;
mod callbacks;
mod dashboard;
mod jobs;
mod notifier;
mod ops_console;
mod readme;
mod results;
mod schedules;
mod security;
mod support;
