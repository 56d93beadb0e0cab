//! JSON Schemas of every contract, generated from the Rust types and committed under
//! `shared/contracts/schemas/` (a test fails when they are stale).

use schemars::JsonSchema;
use serde_json::Value;

use crate::callbacks::{CallbackAwaited, CallbackResult, WebhookAnswer, WebhookDelivery};
use crate::campaigns::{
    CampaignAccepted, CampaignDeliveryInput, CampaignFailed, CampaignRequested,
    CampaignSendRequested, CampaignSent, ProviderCampaign, ProviderCampaignCreated,
};
use crate::envelope::Meta;
use crate::frames::{ClientMessage, Discontinuity, ErrorData, Frame, Subscribed};
use crate::http::ErrorBody;
use crate::jobs::{
    JobAccepted, JobCancelled, JobFailed, JobPage, JobProgress, JobRequested, JobStarted,
    JobSucceeded, JobView,
};
use crate::licenses::{LicenseDeactivationDue, SubscriptionCancelled};
use crate::models::Catalog;
use crate::schedules::{ScheduleCancelled, ScheduleInput, ScheduleRequested};
use crate::tasks::{SimulationJobInput, SimulationTask, TaskOutput};

/// `(file stem, schema)` for every contract.
pub fn all() -> Vec<(&'static str, Value)> {
    vec![
        ("Meta", schema::<Meta>()),
        ("JobRequested", schema::<JobRequested>()),
        ("JobStarted", schema::<JobStarted>()),
        ("JobProgress", schema::<JobProgress>()),
        ("JobSucceeded", schema::<JobSucceeded>()),
        ("JobFailed", schema::<JobFailed>()),
        ("JobCancelled", schema::<JobCancelled>()),
        ("JobView", schema::<JobView>()),
        ("JobAccepted", schema::<JobAccepted>()),
        ("JobPage", schema::<JobPage>()),
        ("ErrorBody", schema::<ErrorBody>()),
        ("Catalog", schema::<Catalog>()),
        ("SimulationJobInput", schema::<SimulationJobInput>()),
        ("SimulationTask", schema::<SimulationTask>()),
        ("TaskOutput", schema::<TaskOutput>()),
        ("Frame", schema::<Frame>()),
        ("ClientMessage", schema::<ClientMessage>()),
        ("Subscribed", schema::<Subscribed>()),
        ("Discontinuity", schema::<Discontinuity>()),
        ("ErrorData", schema::<ErrorData>()),
        ("CallbackAwaited", schema::<CallbackAwaited>()),
        ("WebhookDelivery", schema::<WebhookDelivery>()),
        ("CallbackResult", schema::<CallbackResult>()),
        ("WebhookAnswer", schema::<WebhookAnswer>()),
        ("CampaignRequested", schema::<CampaignRequested>()),
        ("CampaignDeliveryInput", schema::<CampaignDeliveryInput>()),
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
