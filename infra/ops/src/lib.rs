//! The on-call operations as a library: dead-letter queues ([`dlq`]), state-machine runs
//! ([`runs`]), executions waiting on a task token ([`tokens`]), a live view of the bus
//! ([`tail`]), the scheduler's pending schedules ([`schedules`]), EventBridge event
//! patterns evaluated locally ([`pattern`]) and the queues' depths with the jobs in
//! flight ([`live`]).
//!
//! Every operation takes an [`Ops`] (the stage's topology and one SDK client per service
//! it calls) and a typed request, talks to whatever endpoint the SDK config names (the
//! local emulator or AWS), and returns serializable data. Nothing here parses arguments
//! or renders: the `fleet` CLI does both, and the ops console (`fleet ops console`, `/ops`
//! under `fleet dev`) calls the same functions.

pub mod dlq;
mod error;
pub mod live;
pub mod pattern;
pub mod runs;
pub mod schedules;
pub mod tail;
pub mod times;
pub mod tokens;

use topology::{Names, Stage, Topology};

pub use error::OpsError;
pub use times::{InvalidSince, parse_since, redact};

/// The stage's topology and one client per service the operations call.
#[derive(Debug, Clone)]
pub struct Ops {
    pub topology: Topology,
    pub names: Names,
    pub sqs: aws_sdk_sqs::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub lambda: aws_sdk_lambda::Client,
}

impl Ops {
    pub fn new(topology: Topology, sdk: &aws_config::SdkConfig) -> Ops {
        Ops {
            names: topology.names(),
            topology,
            sqs: aws_sdk_sqs::Client::new(sdk),
            sfn: aws_sdk_sfn::Client::new(sdk),
            events: aws_sdk_eventbridge::Client::new(sdk),
            lambda: aws_sdk_lambda::Client::new(sdk),
        }
    }

    pub fn stage(&self) -> &Stage {
        &self.topology.stage
    }
}
