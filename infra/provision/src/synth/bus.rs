//! The fleet's event bus.

use serde_json::json;

use super::Synth;
use super::values::Kind;

impl Synth<'_> {
    pub(super) fn bus(&mut self, at: usize) {
        self.exported(at, Kind::Bus, "");
        self.stacks[at].resource(
            Kind::Bus.logical_id(""),
            "AWS::Events::EventBus",
            json!({ "Name": self.names.bus() }),
        );
    }
}
