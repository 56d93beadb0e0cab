//! What the host's functions did, per function: invocations and the time they ran, as
//! Lambda bills them (`fleet cost --measure` reads it).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// One function's invocations so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionUsage {
    pub invocations: u64,
    /// Σ each invocation's duration rounded up to the millisecond, as Lambda bills it.
    pub billed_ms: u64,
}

/// Every function's usage, shared by the host's bound functions.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    usage: Mutex<BTreeMap<String, FunctionUsage>>,
}

impl Meter {
    pub(crate) fn record(&self, function: &str, took: Duration) {
        let ms = u64::try_from(took.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        let entry = usage.entry(function.to_owned()).or_default();
        entry.invocations += 1;
        entry.billed_ms = entry.billed_ms.saturating_add(ms);
    }

    pub(crate) fn usage(&self) -> BTreeMap<String, FunctionUsage> {
        self.usage.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_up_to_the_millisecond_per_invocation() {
        let meter = Meter::default();
        meter.record("f", Duration::from_micros(1_001));
        meter.record("f", Duration::from_micros(10));
        meter.record("g", Duration::from_millis(5));
        let usage = meter.usage();
        assert_eq!(
            usage["f"],
            FunctionUsage {
                invocations: 2,
                billed_ms: 3
            }
        );
        assert_eq!(usage["g"].billed_ms, 5);
    }
}
