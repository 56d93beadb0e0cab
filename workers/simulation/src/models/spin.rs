//! `spin`: burns CPU for a while, then succeeds, fails, crashes or hangs as asked.
//!
//! Used by benchmarks (`durationMs: 0` is a no-op job) and by fault tests. Every mode
//! first works for `durationMs`, then does what its name says:
//!
//! | `mode` | after `durationMs` |
//! | --- | --- |
//! | `ok` (default) | returns `{"spunMs": n, ...}` |
//! | `fail` | returns [`ModelError::Failed`]`("spin told to fail")` |
//! | `crash` | ends the whole process with exit code [`CRASH_EXIT_CODE`], mid-job |
//! | `hang` | returns normally, but it *sleeps* instead of spinning and reports no progress |
//!
//! `hang` simulates a worker that is alive but stuck. For that to be visible to Step
//! Functions the worker must not heartbeat during the run, so [`Model::suppresses_heartbeat`]
//! says `true` for it; the worker asks before starting the run. With a heartbeat timeout
//! shorter than `durationMs`, the task times out while the model still "hangs".

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::models::{CancelFlag, Model, ModelError, ModelOutput, Progress};

/// The name jobs use for this model.
pub const NAME: &str = contracts::models::SPIN;
pub use contracts::models::{MAX_DURATION_MS, SpinMode, SpinParams};
/// The exit code of the process after `"mode": "crash"`.
pub const CRASH_EXIT_CODE: i32 = 101;

/// How often a hanging run wakes up to check for cancellation.
const HANG_POLL: Duration = Duration::from_millis(50);
/// Busy-loop iterations between two looks at the clock (roughly a microsecond of work).
const ITERATIONS_PER_CHECK: u64 = 1024;

/// The `spin` model.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpinModel;

impl Model for SpinModel {
    fn name(&self) -> &str {
        NAME
    }

    fn validate(&self, params: &Value) -> Result<(), ModelError> {
        SpinParams::from_json(params)?;
        Ok(())
    }

    fn run(
        &self,
        params: &Value,
        progress: &dyn Progress,
        cancel: &CancelFlag,
    ) -> Result<ModelOutput, ModelError> {
        let params = SpinParams::from_json(params)?;
        let duration = Duration::from_millis(params.duration_ms);
        if params.mode == SpinMode::Hang {
            hang(duration, cancel)?;
            let hung_ms = params.duration_ms;
            return Ok(ModelOutput {
                summary: json!({ "mode": "hang", "hungMs": hung_ms }),
                result: json!({ "mode": "hang", "hungMs": hung_ms }),
            });
        }
        let iterations = spin(duration, progress, cancel)?;
        match params.mode {
            SpinMode::Fail => Err(ModelError::Failed("spin told to fail".to_owned())),
            SpinMode::Crash => std::process::exit(CRASH_EXIT_CODE),
            SpinMode::Ok | SpinMode::Hang => {
                let spun_ms = params.duration_ms;
                Ok(ModelOutput {
                    summary: json!({ "mode": "ok", "spunMs": spun_ms }),
                    result: json!({ "mode": "ok", "spunMs": spun_ms, "iterations": iterations }),
                })
            }
        }
    }

    fn suppresses_heartbeat(&self, params: &Value) -> bool {
        SpinParams::from_json(params).is_ok_and(|params| params.mode == SpinMode::Hang)
    }
}

/// Busy-loops for `duration`, reporting progress about every percent; returns the number
/// of iterations done.
fn spin(
    duration: Duration,
    progress: &dyn Progress,
    cancel: &CancelFlag,
) -> Result<u64, ModelError> {
    let start = Instant::now();
    let mut state: u64 = 0;
    let mut iterations: u64 = 0;
    let mut reported = 0.0;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= duration {
            break;
        }
        if cancel.is_cancelled() {
            return Err(ModelError::Cancelled);
        }
        for _ in 0..ITERATIONS_PER_CHECK {
            // A linear congruential step behind `black_box`, so the optimiser keeps the work.
            state = std::hint::black_box(
                state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407),
            );
        }
        iterations += ITERATIONS_PER_CHECK;
        let fraction = elapsed.as_secs_f64() / duration.as_secs_f64();
        if fraction - reported >= 0.01 {
            progress.report(fraction, None);
            reported = fraction;
        }
    }
    progress.report(1.0, None);
    Ok(iterations)
}

/// Sleeps for `duration` without reporting progress, waking up to check `cancel`.
fn hang(duration: Duration, cancel: &CancelFlag) -> Result<(), ModelError> {
    let deadline = Instant::now() + duration;
    loop {
        if cancel.is_cancelled() {
            return Err(ModelError::Cancelled);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(HANG_POLL));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_mode_parses_without_running() {
        for (mode, expected) in [
            ("ok", SpinMode::Ok),
            ("fail", SpinMode::Fail),
            ("crash", SpinMode::Crash),
            ("hang", SpinMode::Hang),
        ] {
            let params = SpinParams::from_json(&json!({ "durationMs": 5, "mode": mode })).unwrap();
            assert_eq!(
                params,
                SpinParams {
                    duration_ms: 5,
                    mode: expected
                }
            );
        }
    }

    #[test]
    fn only_hang_suppresses_heartbeats() {
        assert!(SpinModel.suppresses_heartbeat(&json!({ "mode": "hang" })));
        assert!(!SpinModel.suppresses_heartbeat(&json!({ "mode": "crash" })));
        assert!(!SpinModel.suppresses_heartbeat(&json!({})));
    }
}
