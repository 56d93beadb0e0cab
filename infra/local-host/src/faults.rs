//! Injected invocation faults, for fault-injection runs (`fleet chaos`): a share of the
//! invocations crash or time out part-way, as a Lambda sandbox does when its process dies
//! or its time runs out.
//!
//! The handler really runs and is cut off at a random moment, so whatever it did before
//! (a row written, an event published) stays done and its answer is lost: the caller sees
//! the failure Lambda reports (`Runtime.ExitError` or `Sandbox.Timedout`) and retries as
//! Lambda's callers do. Off unless [`crate::Config::invocation_faults`] asks for it.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::function::FunctionError;

/// Which invocations fail, and how often.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InvocationFaults {
    /// The share of invocations, 0 to 1, whose process dies part-way.
    pub crash: f64,
    /// The share of invocations, 0 to 1, that run out of time part-way.
    pub timeout: f64,
    /// A faulty invocation is cut off after a random time up to this long (it may have
    /// finished its work by then; only its answer is lost).
    pub cut_after: Duration,
    /// Which triggers may fail: an HTTP request's caller sees a 502, an event is retried.
    pub triggers: FaultTriggers,
    pub seed: u64,
}

/// The kinds of invocation faults may hit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultTriggers {
    pub events: bool,
    pub queues: bool,
    pub http: bool,
}

impl FaultTriggers {
    pub const ALL: FaultTriggers = FaultTriggers {
        events: true,
        queues: true,
        http: true,
    };
}

impl InvocationFaults {
    /// Whether any fault can fire.
    pub fn is_active(&self) -> bool {
        self.crash > 0.0 || self.timeout > 0.0
    }
}

/// How many faults were injected, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationFaultCounts {
    pub invocations: u64,
    pub crashes: u64,
    pub timeouts: u64,
}

/// The host's injector: decisions from one seeded generator, and the counts.
#[derive(Debug)]
pub(crate) struct Injector {
    plan: InvocationFaults,
    /// Faults fire only while this is on (a run turns them off to set up and to verify).
    enabled: AtomicBool,
    rng: Mutex<ChaCha8Rng>,
    invocations: AtomicU64,
    crashes: AtomicU64,
    timeouts: AtomicU64,
}

/// What to do to one invocation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Crash(Duration),
    Timeout(Duration),
}

impl Injector {
    pub(crate) fn new(plan: InvocationFaults) -> Injector {
        let rng = ChaCha8Rng::seed_from_u64(plan.seed);
        Injector {
            plan,
            enabled: AtomicBool::new(true),
            rng: Mutex::new(rng),
            invocations: AtomicU64::new(0),
            crashes: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
        }
    }

    pub(crate) fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    pub(crate) fn counts(&self) -> InvocationFaultCounts {
        InvocationFaultCounts {
            invocations: self.invocations.load(Ordering::Relaxed),
            crashes: self.crashes.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
        }
    }

    fn decide(&self, trigger: crate::invoke::Trigger) -> Option<Fault> {
        use crate::invoke::Trigger;
        let eligible = match trigger {
            Trigger::EventBridge => self.plan.triggers.events,
            Trigger::Sqs => self.plan.triggers.queues,
            Trigger::Http => self.plan.triggers.http,
            Trigger::Invoke => false,
        };
        if !eligible || !self.plan.is_active() || !self.enabled.load(Ordering::Relaxed) {
            return None;
        }
        self.invocations.fetch_add(1, Ordering::Relaxed);
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let roll: f64 = rng.random();
        let max_ms = u64::try_from(self.plan.cut_after.as_millis()).unwrap_or(u64::MAX);
        let cut = Duration::from_millis(rng.random_range(0..=max_ms));
        if roll < self.plan.crash {
            self.crashes.fetch_add(1, Ordering::Relaxed);
            Some(Fault::Crash(cut))
        } else if roll < self.plan.crash + self.plan.timeout {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
            Some(Fault::Timeout(cut))
        } else {
            None
        }
    }

    /// Runs `invocation`, or cuts it off and fails it if a fault is drawn for it.
    pub(crate) async fn run<F>(
        &self,
        trigger: crate::invoke::Trigger,
        request_id: &str,
        invocation: F,
    ) -> Result<serde_json::Value, FunctionError>
    where
        F: Future<Output = Result<serde_json::Value, FunctionError>>,
    {
        let Some(fault) = self.decide(trigger) else {
            return invocation.await;
        };
        let cut = match fault {
            Fault::Crash(cut) | Fault::Timeout(cut) => cut,
        };
        // Whether the handler finished or not, its answer never reaches the caller.
        let _ = tokio::time::timeout(cut, invocation).await;
        tracing::info!(request_id = %request_id, fault = ?fault, "injected an invocation fault");
        Err(match fault {
            Fault::Crash(_) => FunctionError::new(
                "Runtime.ExitError",
                format!("RequestId: {request_id} Error: Runtime exited (injected fault)"),
            ),
            Fault::Timeout(_) => FunctionError::new(
                "Sandbox.Timedout",
                format!("RequestId: {request_id} Error: Task timed out (injected fault)"),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invoke::Trigger;

    fn injector(crash: f64, timeout: f64) -> Injector {
        Injector::new(InvocationFaults {
            crash,
            timeout,
            cut_after: Duration::from_millis(5),
            triggers: FaultTriggers {
                events: true,
                queues: true,
                http: false,
            },
            seed: 7,
        })
    }

    #[tokio::test]
    async fn a_crash_loses_the_answer_but_keeps_what_the_handler_did() {
        let injector = injector(1.0, 0.0);
        let done = std::sync::Arc::new(AtomicU64::new(0));
        let effect = std::sync::Arc::clone(&done);
        let result = injector
            .run(Trigger::EventBridge, "r-1", async move {
                effect.fetch_add(1, Ordering::SeqCst);
                Ok(serde_json::json!("answer"))
            })
            .await;
        let error = result.expect_err("the invocation must fail");
        assert_eq!(error.error_type, "Runtime.ExitError");
        assert_eq!(
            done.load(Ordering::SeqCst),
            1,
            "the work before the cut stays done"
        );
        assert_eq!(injector.counts().crashes, 1);
    }

    #[tokio::test]
    async fn rates_are_honoured_and_other_triggers_are_spared() {
        let injector = injector(0.1, 0.1);
        let mut failed = 0;
        for i in 0..1000 {
            let result = injector
                .run(Trigger::Sqs, &format!("r-{i}"), async {
                    Ok(serde_json::Value::Null)
                })
                .await;
            failed += usize::from(result.is_err());
        }
        let counts = injector.counts();
        assert_eq!(counts.invocations, 1000);
        assert_eq!(
            u64::try_from(failed).unwrap_or(0),
            counts.crashes + counts.timeouts
        );
        assert!((130..=270).contains(&failed), "about 20% fail: {failed}");
        assert!(counts.crashes > 0 && counts.timeouts > 0, "{counts:?}");
        let spared = injector
            .run(Trigger::Http, "h", async { Ok(serde_json::Value::Null) })
            .await;
        assert!(spared.is_ok(), "HTTP is not among the triggers");
        assert_eq!(injector.counts().invocations, 1000);
    }
}
