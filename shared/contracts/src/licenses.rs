//! The licenses service's events (source `fleet.licenses`) and the subscription event it
//! reacts to.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::envelope::Event;

pub const SOURCE: &str = "fleet.licenses";
/// The source of subscription events (the billing side, upstream of this fleet).
pub const SUBSCRIPTIONS_SOURCE: &str = "fleet.subscriptions";
pub const SUBSCRIPTION_CANCELLED: &str = "SubscriptionCancelled";
pub const DEACTIVATION_DUE: &str = "LicenseDeactivationDue";

/// A subscription was cancelled: its license stays valid until `period_end`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionCancelled {
    pub subscription_id: String,
    /// 1 to 60 characters of `A-Z a-z 0-9 - _` (it becomes part of a schedule key).
    pub license_id: String,
    #[serde(with = "crate::timestamp::bounded")]
    #[schemars(with = "String")]
    pub period_end: OffsetDateTime,
}

impl Event for SubscriptionCancelled {
    fn source(&self) -> &'static str {
        SUBSCRIPTIONS_SOURCE
    }
    fn detail_type(&self) -> &'static str {
        SUBSCRIPTION_CANCELLED
    }
    fn correlation_id(&self) -> Option<String> {
        Some(self.license_id.clone())
    }
}

/// Emitted by the scheduler at `due`: the license's paid period is over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LicenseDeactivationDue {
    pub license_id: String,
    pub subscription_id: String,
    #[serde(with = "crate::timestamp::bounded")]
    #[schemars(with = "String")]
    pub due: OffsetDateTime,
}

impl Event for LicenseDeactivationDue {
    fn source(&self) -> &'static str {
        SOURCE
    }
    fn detail_type(&self) -> &'static str {
        DEACTIVATION_DUE
    }
    fn correlation_id(&self) -> Option<String> {
        Some(self.license_id.clone())
    }
}
