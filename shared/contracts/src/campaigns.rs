//! The campaigns service's events (source `fleet.campaigns`), the campaign-delivery state
//! machine's I/O, and the email provider's HTTP API as the campaigns service calls it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::envelope::Event;
use crate::error::ContractError;

pub const SOURCE: &str = "fleet.campaigns";
pub const REQUESTED: &str = "CampaignRequested";
/// Published by the campaign-delivery machine with a task token: "ask the provider".
pub const SEND_REQUESTED: &str = "CampaignSendRequested";
pub const SENT: &str = "CampaignSent";
pub const FAILED: &str = "CampaignFailed";

/// Someone wants a campaign sent. `campaign_id` names the execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignRequested {
    /// 1 to 80 characters of `A-Z a-z 0-9 - _`.
    pub campaign_id: String,
    pub subject: String,
    /// The users the campaign goes to.
    pub audience: Vec<String>,
}

impl CampaignRequested {
    pub fn validate(&self) -> Result<(), ContractError> {
        crate::detail::execution_name("campaign request", "campaignId", &self.campaign_id)
    }
}

/// The input of a `campaign-delivery` execution (named after the campaign id), started by
/// the campaigns service for each `CampaignRequested`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignDeliveryInput {
    pub campaign_id: String,
    pub subject: String,
    pub audience: Vec<String>,
    /// The email provider the machine's steps use.
    pub provider: String,
}

/// The machine asks the campaigns service to hand the campaign to the provider and to
/// answer the task token with a [`CampaignAccepted`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignSendRequested {
    pub task_token: String,
    pub campaign_id: String,
    pub subject: String,
    pub audience: Vec<String>,
}

/// The task output of the "send" step: the provider's id for the campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignAccepted {
    pub provider_campaign_id: String,
}

/// The provider sent the campaign (published by the machine).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignSent {
    pub campaign_id: String,
    pub provider_campaign_id: String,
    pub audience: Vec<String>,
}

/// The provider gave up on the campaign, or the machine did (published by the machine).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignFailed {
    pub campaign_id: String,
    pub error: String,
}

macro_rules! campaign_event {
    ($ty:ident, $detail_type:expr) => {
        impl Event for $ty {
            fn source(&self) -> &'static str {
                SOURCE
            }
            fn detail_type(&self) -> &'static str {
                $detail_type
            }
            fn correlation_id(&self) -> Option<String> {
                Some(self.campaign_id.clone())
            }
        }
    };
}
campaign_event!(CampaignRequested, REQUESTED);
campaign_event!(CampaignSendRequested, SEND_REQUESTED);
campaign_event!(CampaignSent, SENT);
campaign_event!(CampaignFailed, FAILED);

/// The email provider's HTTP API: `POST /campaigns` takes a [`ProviderCampaign`] and
/// answers `201` with a [`ProviderCampaignCreated`] (or `200` with the same id when it
/// already has a campaign with that `reference`); status changes come back through the
/// signed webhook (`callbacks::WebhookDelivery`, statuses `pending`, `sent`, `failed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderCampaign {
    pub subject: String,
    pub recipients: Vec<String>,
    /// Our campaign id. The provider creates one campaign per reference: a request that
    /// is sent again (its event delivered twice) must not email the audience twice.
    pub reference: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderCampaignCreated {
    pub id: String,
}
