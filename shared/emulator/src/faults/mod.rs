//! A fault-injecting HTTP proxy in front of the emulator: every AWS client of the local
//! stack that is given [`FaultProxy::endpoint`] instead of moto's sees throttling, 5xx
//! answers, dropped connections, latency and SQS visibility races, as AWS can produce
//! them, decided by a seeded generator so a run is reproducible for a given order of calls.
//!
//! The errors have the wire shape of each protocol (awsJson, awsQuery, S3's REST-XML,
//! REST-JSON), so the SDK parses them into the codes its standard retry classifies:
//! `ThrottlingException`, `Throttling` and `SlowDown` as throttling, 500 and 503 as
//! transient, a connection closed without an answer as an I/O dispatch failure.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod protocol;
mod proxy;

pub use proxy::FaultProxy;

/// What the proxy does to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answers with the protocol's throttling error (`ThrottlingException`, `Throttling`,
    /// S3's `SlowDown`) without forwarding.
    Throttle,
    /// Answers 500 `InternalFailure` or 503 `ServiceUnavailable` without forwarding.
    ServerError,
    /// Closes the connection without an answer, either before forwarding (the request
    /// never arrived) or after (it took effect but its answer was lost).
    Drop,
    /// Waits a random time from [`FaultPlan::latency_ms`] before forwarding.
    Latency,
    /// After an SQS `ReceiveMessage`, makes each returned message visible again at once,
    /// so another consumer receives it while the first still holds it.
    DuplicateReceive,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] = [
        FaultKind::Throttle,
        FaultKind::ServerError,
        FaultKind::Drop,
        FaultKind::Latency,
        FaultKind::DuplicateReceive,
    ];
}

/// A rate for one kind of fault, for every call or only some service's or operation's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// The service as in the SigV4 credential scope (`sqs`, `dynamodb`, `states`,
    /// `events`, `sns`, `s3`, `ssm`); `None` matches every service.
    #[serde(default)]
    pub service: Option<String>,
    /// The operation (`ReceiveMessage`, `PutItem`); `None` matches every operation.
    #[serde(default)]
    pub operation: Option<String>,
    pub kind: FaultKind,
    /// The probability, from 0 to 1, that a matching call gets the fault.
    pub rate: f64,
}

impl FaultRule {
    /// `kind` at `rate` for every call; narrow it with [`service`](Self::service) and
    /// [`operation`](Self::operation).
    pub fn new(kind: FaultKind, rate: f64) -> FaultRule {
        FaultRule {
            service: None,
            operation: None,
            kind,
            rate,
        }
    }

    pub fn service(mut self, service: &str) -> FaultRule {
        self.service = Some(service.to_string());
        self
    }

    pub fn operation(mut self, operation: &str) -> FaultRule {
        self.operation = Some(operation.to_string());
        self
    }

    fn matches(&self, service: &str, operation: &str) -> bool {
        self.service.as_deref().is_none_or(|s| s == service)
            && self.operation.as_deref().is_none_or(|o| o == operation)
    }
}

/// Which faults the proxy injects and how often. The default injects nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultPlan {
    /// The seed of the generator behind every decision.
    pub seed: u64,
    /// For each kind, the first rule of that kind matching a call's service and
    /// operation decides its rate; no matching rule means a rate of 0.
    pub rules: Vec<FaultRule>,
    /// The extra delay of a [`FaultKind::Latency`] fault, in milliseconds: `(min, max)`,
    /// both included.
    pub latency_ms: (u64, u64),
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan {
            seed: 0,
            rules: Vec::new(),
            latency_ms: (50, 500),
        }
    }
}

impl FaultPlan {
    /// Each of `kinds` at `rate` for every service and operation.
    pub fn uniform(seed: u64, rate: f64, kinds: &[FaultKind]) -> FaultPlan {
        FaultPlan {
            seed,
            rules: kinds.iter().map(|&k| FaultRule::new(k, rate)).collect(),
            ..FaultPlan::default()
        }
    }

    /// The rate of `kind` for a call, clamped to 0..=1 (a NaN is 0).
    pub fn rate(&self, kind: FaultKind, service: &str, operation: &str) -> f64 {
        self.rules
            .iter()
            .find(|r| r.kind == kind && r.matches(service, operation))
            .map_or(0.0, |r| {
                if r.rate.is_nan() {
                    0.0
                } else {
                    r.rate.clamp(0.0, 1.0)
                }
            })
    }
}

/// What the proxy has seen and done since it started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultReport {
    /// Every call that reached the proxy, injected into or not.
    pub calls: u64,
    /// Per `service:Operation` (e.g. `sqs:ReceiveMessage`).
    pub operations: BTreeMap<String, OperationReport>,
}

/// The calls to one operation and the faults injected into them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OperationReport {
    pub calls: u64,
    /// How many of each kind; a duplicate receive counts once per message.
    pub injected: BTreeMap<FaultKind, u64>,
    /// The sizes of the calls the emulator answered, in the units AWS bills by.
    #[serde(default)]
    pub sizes: Sizes,
    /// The calls the emulator answered per SQS queue (the last segment of `QueueUrl`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub queues: BTreeMap<String, Sizes>,
}

/// What answered calls weighed: sums over the calls, each rounded up on its own as AWS
/// rounds each request (`fleet cost --measure` reads these).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sizes {
    pub calls: u64,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// Σ ⌈request / 64 KiB⌉, at least 1 a call: SQS's, SNS's and EventBridge's unit.
    pub request_64k: u64,
    /// Σ ⌈request / 1 KiB⌉, at least 1 a call: DynamoDB's write unit.
    pub request_1k: u64,
    /// Σ ⌈response / 4 KiB⌉, at least 1 a call: DynamoDB's read unit.
    pub response_4k: u64,
    /// SQS receives answered without a message (idle long polls).
    pub empty_receives: u64,
}

impl Sizes {
    fn add(&mut self, request: usize, response: usize, empty_receive: bool) {
        let up = |n: usize, unit: usize| n.div_ceil(unit).max(1) as u64;
        self.calls += 1;
        self.request_bytes += request as u64;
        self.response_bytes += response as u64;
        self.request_64k += up(request, 64 * 1024);
        self.request_1k += up(request, 1024);
        self.response_4k += up(response, 4 * 1024);
        self.empty_receives += u64::from(empty_receive);
    }
}

impl FaultReport {
    /// The faults of `kind` injected into every operation.
    pub fn injected(&self, kind: FaultKind) -> u64 {
        self.operations
            .values()
            .filter_map(|o| o.injected.get(&kind))
            .sum()
    }

    /// Every fault injected.
    pub fn total_injected(&self) -> u64 {
        FaultKind::ALL.iter().map(|&k| self.injected(k)).sum()
    }

    /// The report of one `service:Operation`.
    pub fn operation(&self, key: &str) -> Option<&OperationReport> {
        self.operations.get(key)
    }

    fn record_call(&mut self, key: &str) {
        self.calls += 1;
        self.operations.entry(key.to_string()).or_default().calls += 1;
    }

    fn record_sizes(
        &mut self,
        key: &str,
        queue: Option<&str>,
        request: usize,
        response: usize,
        empty_receive: bool,
    ) {
        let operation = self.operations.entry(key.to_string()).or_default();
        operation.sizes.add(request, response, empty_receive);
        if let Some(queue) = queue {
            operation.queues.entry(queue.to_string()).or_default().add(
                request,
                response,
                empty_receive,
            );
        }
    }

    fn record_fault(&mut self, key: &str, kind: FaultKind) {
        *self
            .operations
            .entry(key.to_string())
            .or_default()
            .injected
            .entry(kind)
            .or_default() += 1;
    }
}

/// What happens to one call, decided before it is forwarded.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Decision {
    latency: Option<Duration>,
    failure: Option<Failure>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Failure {
    Throttle,
    /// `unavailable`: 503 `ServiceUnavailable`, else 500 `InternalFailure`.
    ServerError {
        unavailable: bool,
    },
    Drop {
        after_forwarding: bool,
    },
}

impl Failure {
    fn kind(self) -> FaultKind {
        match self {
            Failure::Throttle => FaultKind::Throttle,
            Failure::ServerError { .. } => FaultKind::ServerError,
            Failure::Drop { .. } => FaultKind::Drop,
        }
    }
}

/// Rolls the dice for one call. At most one failure fires: throttling, then a server
/// error, then a drop, each with its own rate; latency may come on top of any.
fn decide(plan: &FaultPlan, rng: &mut impl rand::Rng, service: &str, operation: &str) -> Decision {
    let mut roll = |kind: FaultKind| {
        let rate = plan.rate(kind, service, operation);
        rate > 0.0 && rng.random::<f64>() < rate
    };
    let latency = roll(FaultKind::Latency);
    let failure = if roll(FaultKind::Throttle) {
        Some(Failure::Throttle)
    } else if roll(FaultKind::ServerError) {
        Some(Failure::ServerError {
            unavailable: rng.random(),
        })
    } else if roll(FaultKind::Drop) {
        Some(Failure::Drop {
            after_forwarding: rng.random(),
        })
    } else {
        None
    };
    let latency = latency.then(|| {
        let (a, b) = plan.latency_ms;
        Duration::from_millis(rng.random_range(a.min(b)..=a.max(b)))
    });
    Decision { latency, failure }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn the_first_rule_of_a_kind_that_matches_decides_its_rate() {
        let plan = FaultPlan {
            rules: vec![
                FaultRule::new(FaultKind::Throttle, 0.5)
                    .service("sqs")
                    .operation("ReceiveMessage"),
                FaultRule::new(FaultKind::Throttle, 0.1).service("sqs"),
                FaultRule::new(FaultKind::Drop, 2.0),
            ],
            ..FaultPlan::default()
        };
        assert_eq!(plan.rate(FaultKind::Throttle, "sqs", "ReceiveMessage"), 0.5);
        assert_eq!(plan.rate(FaultKind::Throttle, "sqs", "SendMessage"), 0.1);
        assert_eq!(plan.rate(FaultKind::Throttle, "dynamodb", "PutItem"), 0.0);
        assert_eq!(plan.rate(FaultKind::Drop, "dynamodb", "PutItem"), 1.0);
    }

    #[test]
    fn the_same_seed_makes_the_same_decisions() {
        let plan = FaultPlan::uniform(7, 0.3, &FaultKind::ALL);
        let run = || {
            let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
            (0..200)
                .map(|_| decide(&plan, &mut rng, "sqs", "SendMessage"))
                .collect::<Vec<_>>()
        };
        let decisions = run();
        assert_eq!(decisions, run());
        assert!(decisions.iter().any(|d| d.failure.is_some()));
        assert!(decisions.iter().any(|d| *d == Decision::default()));
    }

    #[test]
    fn a_plan_reads_back_from_json() {
        let json = r#"{"seed": 3, "rules": [{"service": "sqs", "kind": "duplicate_receive", "rate": 0.2}]}"#;
        let plan: FaultPlan = serde_json::from_str(json).expect("the plan parses");
        assert_eq!(plan.rules[0].kind, FaultKind::DuplicateReceive);
        assert_eq!(plan.latency_ms, FaultPlan::default().latency_ms);
    }
}
