//! `fleet cost`: what a month of the fleet costs on AWS, from the topology and a dated
//! price table, or from requests counted on the local stack.
//!
//! - [`prices`]: the us-east-1 list prices, each with its source and the day it was read.
//! - [`derive`]: the requests of each flow (a job, a progress event, a callback, a
//!   schedule) read off the topology's rules, state machines and permissions.
//! - [`measure`]: the same counted on the local stack, through the emulator's counting
//!   proxy, the local host's invocation meter and the executions' histories.
//! - [`model`]: the arithmetic from a [`model::Workload`] and a [`model::Profile`] to
//!   priced lines, the total and the always-on comparison.

pub mod derive;
pub mod measure;
pub mod model;
pub mod prices;

/// The bounds of `fleet cost`'s inputs (`SECURITY.md`'s limits table).
pub mod bounds {
    /// `--jobs-per-month`, `--callbacks-per-month`, `--schedules-per-month`.
    pub const MAX_PER_MONTH: u64 = 10_000_000_000;
    /// `--job-seconds`: a day (the simulation state machine gives a job an hour).
    pub const MAX_JOB_SECONDS: u64 = 86_400;
    /// `--progress-per-job`.
    pub const MAX_PROGRESS_PER_JOB: u64 = 100_000;
    /// `--subscribers`.
    pub const MAX_SUBSCRIBERS: u64 = 100_000_000;
    /// `--connected-hours`: every hour of a 31-day month.
    pub const MAX_CONNECTED_HOURS: u64 = 744;
    /// `--worker-vcpu`: Fargate's largest task.
    pub const MAX_WORKER_VCPU: u64 = 16;
    /// `--worker-memory-gb`: Fargate's largest task.
    pub const MAX_WORKER_MEMORY_GB: u64 = 120;
    /// `--peak-factor`.
    pub const MAX_PEAK_FACTOR: u64 = 1_000;
    /// `--measure`: jobs run on the local stack.
    pub const MAX_MEASURE_JOBS: usize = 1_000;
}
