//! End-to-end scenarios against the local stack, and the workspace's invariants.

mod architecture;
mod jobs;
