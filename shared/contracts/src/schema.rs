//! JSON Schemas of every contract, generated from the Rust types and committed under
//! `shared/contracts/schemas/` (a test fails when they are stale).

use schemars::JsonSchema;
use serde_json::Value;

use crate::callbacks::{CallbackAwaited, CallbackResult, WebhookDelivery};
use crate::campaigns::{
    CampaignAccepted, CampaignFailed, CampaignRequested, CampaignSendRequested, CampaignSent,
    ProviderCampaign, ProviderCampaignCreated,
};
use crate::envelope::Meta;
use crate::frames::{ClientMessage, Frame};
use crate::jobs::{JobFailed, JobProgress, JobRequested, JobStarted, JobSucceeded, JobView};
use crate::licenses::{LicenseDeactivationDue, SubscriptionCancelled};
use crate::schedules::{ScheduleCancelled, ScheduleInput, ScheduleRequested};
use crate::tasks::{SimulationTask, TaskOutput};

/// `(file stem, schema)` for every contract.
pub fn all() -> Vec<(&'static str, Value)> {
    vec![
        ("Meta", schema::<Meta>()),
        ("JobRequested", schema::<JobRequested>()),
        ("JobStarted", schema::<JobStarted>()),
        ("JobProgress", schema::<JobProgress>()),
        ("JobSucceeded", schema::<JobSucceeded>()),
        ("JobFailed", schema::<JobFailed>()),
        ("JobView", schema::<JobView>()),
        ("SimulationTask", schema::<SimulationTask>()),
        ("TaskOutput", schema::<TaskOutput>()),
        ("Frame", schema::<Frame>()),
        ("ClientMessage", schema::<ClientMessage>()),
        ("CallbackAwaited", schema::<CallbackAwaited>()),
        ("WebhookDelivery", schema::<WebhookDelivery>()),
        ("CallbackResult", schema::<CallbackResult>()),
        ("CampaignRequested", schema::<CampaignRequested>()),
        ("CampaignSendRequested", schema::<CampaignSendRequested>()),
        ("CampaignAccepted", schema::<CampaignAccepted>()),
        ("CampaignSent", schema::<CampaignSent>()),
        ("CampaignFailed", schema::<CampaignFailed>()),
        ("ProviderCampaign", schema::<ProviderCampaign>()),
        (
            "ProviderCampaignCreated",
            schema::<ProviderCampaignCreated>(),
        ),
        ("ScheduleRequested", schema::<ScheduleRequested>()),
        ("ScheduleCancelled", schema::<ScheduleCancelled>()),
        ("ScheduleInput", schema::<ScheduleInput>()),
        ("SubscriptionCancelled", schema::<SubscriptionCancelled>()),
        ("LicenseDeactivationDue", schema::<LicenseDeactivationDue>()),
    ]
}

fn schema<T: JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null)
}
