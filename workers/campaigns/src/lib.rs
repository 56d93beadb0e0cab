//! The campaigns service: an email campaign sent through a SaaS provider, as the
//! `campaign-delivery` state machine (`statemachines/campaign-delivery.asl.json`) runs it.
//!
//! 1. `CampaignRequested` → [`handle_requested`]: records the campaign (`SENDING`) and
//!    starts an execution named after its id.
//! 2. The machine publishes `CampaignSendRequested` with a task token
//!    (`events:putEvents.waitForTaskToken`); [`handle_send_requested`] calls the
//!    provider's HTTP API and answers the token with the provider's campaign id.
//! 3. The machine publishes `CallbackAwaited` (the callbacks service's event) with a new
//!    token and that id, and waits; the provider's signed webhook resumes it.
//! 4. A Choice loops back to 3 while the status is `pending`, fails on `failed`, and on
//!    `sent` publishes `CampaignSent`.
//! 5. `CampaignSent`/`CampaignFailed` → [`handle_outcome`]: updates the campaign and its
//!    users in the service's table.
//!
//! Why step 2 is an event and not a `lambda:invoke` task or an HTTP task: the emulator's
//! Step Functions engine cannot reach the local host's Lambda API or call HTTP APIs, while
//! `events:putEvents.waitForTaskToken` runs the same on both, and on AWS it is a normal
//! pattern (the Lambda is an ordinary asynchronous EventBridge target with retries and a
//! dead letter; the task's heartbeat and timeout bound a lost request).
//!
//! [`fake`] is a provider for local runs and tests.

pub mod fake;
pub mod service;

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sfn::error::{DisplayErrorContext, ProvideErrorMetadata};
use backon::{ExponentialBuilder, Retryable};
use contracts::BusEvent;
use contracts::campaigns::{
    CampaignAccepted, CampaignDeliveryInput, CampaignFailed, CampaignRequested,
    CampaignSendRequested, CampaignSent, ProviderCampaign, ProviderCampaignCreated,
};

/// The campaigns table: what every function of the service writes (`campaigns-outcome`
/// needs nothing else).
#[derive(Clone, Debug)]
pub struct Campaigns {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub table: String,
}

impl Campaigns {
    pub fn new(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Campaigns {
        Campaigns {
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            table: table.into(),
        }
    }
}

/// What `campaigns-requested` needs: the table, the `campaign-delivery` machine and the
/// name of the provider the campaign goes to.
#[derive(Clone, Debug)]
pub struct RequestedDeps {
    pub campaigns: Campaigns,
    pub sfn: aws_sdk_sfn::Client,
    pub state_machine_arn: String,
    /// The provider's name in the webhook path, `/callbacks/<name>`.
    pub provider: String,
}

impl RequestedDeps {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        campaigns: Campaigns,
        state_machine_arn: impl Into<String>,
        provider: impl Into<String>,
    ) -> RequestedDeps {
        RequestedDeps {
            campaigns,
            sfn: aws_sdk_sfn::Client::new(sdk),
            state_machine_arn: state_machine_arn.into(),
            provider: provider.into(),
        }
    }
}

/// What `campaigns-send` needs: the table, task answers and the provider's API.
#[derive(Clone, Debug)]
pub struct SendDeps {
    pub campaigns: Campaigns,
    pub sfn: aws_sdk_sfn::Client,
    pub http: reqwest::Client,
    /// The provider's API base URL.
    pub provider_url: String,
}

impl SendDeps {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        campaigns: Campaigns,
        provider_url: impl Into<String>,
    ) -> SendDeps {
        SendDeps {
            campaigns,
            sfn: aws_sdk_sfn::Client::new(sdk),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            provider_url: provider_url.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CampaignsError {
    #[error(transparent)]
    Contract(#[from] contracts::ContractError),
    #[error("{service} {operation}: {message}")]
    Aws {
        service: &'static str,
        operation: &'static str,
        message: String,
    },
    #[error("the provider could not be reached: {0}")]
    Provider(String),
}

impl CampaignsError {
    pub fn error_type(&self) -> &'static str {
        match self {
            CampaignsError::Contract(_) => "Campaigns.InvalidEvent",
            _ => "Campaigns.Transient",
        }
    }
}

impl From<CampaignsError> for lambda_runtime::Diagnostic {
    fn from(error: CampaignsError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: error.error_type().to_string(),
            error_message: error.to_string(),
        }
    }
}

fn aws<E: std::error::Error + 'static>(
    service: &'static str,
    operation: &'static str,
) -> impl FnOnce(E) -> CampaignsError {
    move |e| CampaignsError::Aws {
        service,
        operation,
        message: DisplayErrorContext(&e).to_string(),
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// Records the campaign and starts its delivery (one execution per campaign id).
pub async fn handle_requested(event: BusEvent, deps: &RequestedDeps) -> Result<(), CampaignsError> {
    let machine = deps.state_machine_arn.as_str();
    let envelope = contracts::detail::decode::<CampaignRequested>(
        &event.detail_type,
        &event.detail,
        &event.received(),
        |e| Some(e.campaign_id.clone()),
    )?;
    let campaign = envelope.event;
    campaign.validate()?;
    let recorded = deps
        .campaigns
        .dynamodb
        .put_item()
        .table_name(&deps.campaigns.table)
        .item("pk", s(format!("campaign#{}", campaign.campaign_id)))
        .item("status", s("SENDING"))
        .item("subject", s(&campaign.subject))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await;
    match recorded {
        Ok(_) => {}
        // A redelivered request: the campaign is recorded already.
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
        Err(e) => return Err(aws("DynamoDB", "PutItem")(e)),
    }
    let input = CampaignDeliveryInput {
        campaign_id: campaign.campaign_id.clone(),
        subject: campaign.subject.clone(),
        audience: campaign.audience.clone(),
        provider: deps.provider.clone(),
    };
    let input = serde_json::to_string(&input).map_err(|e| CampaignsError::Aws {
        service: "Step Functions",
        operation: "StartExecution",
        message: format!("encoding its input: {e}"),
    })?;
    let started = deps
        .sfn
        .start_execution()
        .state_machine_arn(machine)
        .name(&campaign.campaign_id)
        .input(input)
        .send()
        .await;
    match started {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_execution_already_exists()) =>
        {
            tracing::info!(campaign_id = %campaign.campaign_id, "campaign already started");
        }
        Err(e) => return Err(aws("Step Functions", "StartExecution")(e)),
    }
    tracing::info!(campaign_id = %campaign.campaign_id, "campaign delivery started");
    Ok(())
}

/// Hands the campaign to the provider and answers the task token with its id. A provider
/// that refuses the campaign (4xx) fails the task (`Provider.Rejected`); one that cannot
/// be reached is retried here, then by the asynchronous invocation. The same event again
/// is harmless: the provider keeps one campaign per `reference`, and a task already
/// answered is left as it is.
pub async fn handle_send_requested(event: BusEvent, deps: &SendDeps) -> Result<(), CampaignsError> {
    let envelope = contracts::detail::decode::<CampaignSendRequested>(
        &event.detail_type,
        &event.detail,
        &event.received(),
        |e| Some(e.campaign_id.clone()),
    )?;
    let request = envelope.event;
    let body = ProviderCampaign {
        subject: request.subject.clone(),
        recipients: request.audience.clone(),
        reference: request.campaign_id.clone(),
    };
    let url = format!("{}/campaigns", deps.provider_url.trim_end_matches('/'));
    let call = || async {
        let response = deps
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|e| Outcome::Retry(e.to_string()))?;
        let status = response.status();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(Outcome::Retry(format!("the provider answered {status}")));
        }
        if !status.is_success() {
            return Err(Outcome::Rejected(format!("the provider answered {status}")));
        }
        response
            .json::<ProviderCampaignCreated>()
            .await
            .map_err(|e| Outcome::Rejected(format!("the provider's answer is not a campaign: {e}")))
    };
    let created = call
        .retry(ExponentialBuilder::default().with_max_times(3))
        .when(|e| matches!(e, Outcome::Retry(_)))
        .await;
    match created {
        Ok(created) => {
            deps.campaigns
                .dynamodb
                .update_item()
                .table_name(&deps.campaigns.table)
                .key("pk", s(format!("campaign#{}", request.campaign_id)))
                .update_expression("SET providerCampaignId = :id")
                .expression_attribute_values(":id", s(&created.id))
                .send()
                .await
                .map_err(aws("DynamoDB", "UpdateItem"))?;
            let output = serde_json::to_string(&CampaignAccepted {
                provider_campaign_id: created.id.clone(),
            })
            .unwrap_or_else(|_| "{}".to_string());
            let answer = deps
                .sfn
                .send_task_success()
                .task_token(&request.task_token)
                .output(output)
                .send()
                .await;
            settled(answer, "SendTaskSuccess", &request.campaign_id)?;
            tracing::info!(campaign_id = %request.campaign_id, provider_campaign_id = %created.id, "provider accepted the campaign");
            Ok(())
        }
        Err(Outcome::Rejected(cause)) => {
            tracing::warn!(campaign_id = %request.campaign_id, cause = %cause, "provider refused the campaign");
            let answer = deps
                .sfn
                .send_task_failure()
                .task_token(&request.task_token)
                .error("Provider.Rejected")
                .cause(cause)
                .send()
                .await;
            settled(answer, "SendTaskFailure", &request.campaign_id)
        }
        Err(Outcome::Retry(message)) => Err(CampaignsError::Provider(message)),
    }
}

enum Outcome {
    Retry(String),
    Rejected(String),
}

/// Checks the answer to the task. A task that is no longer open (`TaskTimedOut`,
/// `TaskDoesNotExist`) is no failure: the same event delivered again (EventBridge and
/// asynchronous invocation deliver at least once) finds it settled by the first, and a
/// task that timed out has moved the flow on already. Failing would only retry the
/// invocation and send it to the dead letter.
fn settled<T, E>(
    answer: Result<T, E>,
    operation: &'static str,
    campaign_id: &str,
) -> Result<(), CampaignsError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match answer {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.code(), Some("TaskTimedOut" | "TaskDoesNotExist")) => {
            tracing::info!(campaign_id, operation, error = %DisplayErrorContext(&e), "the task was already settled or timed out; nothing to answer");
            Ok(())
        }
        Err(e) => Err(aws("Step Functions", operation)(e)),
    }
}

/// Applies `CampaignSent` (the campaign and each of its users) or `CampaignFailed`.
pub async fn handle_outcome(event: BusEvent, deps: &Campaigns) -> Result<(), CampaignsError> {
    match event.detail_type.as_str() {
        contracts::campaigns::SENT => {
            let sent = contracts::detail::decode::<CampaignSent>(
                &event.detail_type,
                &event.detail,
                &event.received(),
                |e| Some(e.campaign_id.clone()),
            )?
            .event;
            // "Update users": each recipient's last campaign. Idempotent, so a
            // redelivered event changes nothing more.
            for user in &sent.audience {
                deps.dynamodb
                    .update_item()
                    .table_name(&deps.table)
                    .key("pk", s(format!("user#{user}")))
                    .update_expression("SET lastCampaignId = :c")
                    .expression_attribute_values(":c", s(&sent.campaign_id))
                    .send()
                    .await
                    .map_err(aws("DynamoDB", "UpdateItem"))?;
            }
            set_status(deps, &sent.campaign_id, "SENT").await?;
            tracing::info!(campaign_id = %sent.campaign_id, users = sent.audience.len(), "campaign sent, users updated");
            Ok(())
        }
        contracts::campaigns::FAILED => {
            let failed = contracts::detail::decode::<CampaignFailed>(
                &event.detail_type,
                &event.detail,
                &event.received(),
                |e| Some(e.campaign_id.clone()),
            )?
            .event;
            set_status(deps, &failed.campaign_id, "FAILED").await?;
            tracing::warn!(campaign_id = %failed.campaign_id, error = %failed.error, "campaign failed");
            Ok(())
        }
        other => {
            tracing::warn!(detail_type = %other, "not a campaign outcome; ignored");
            Ok(())
        }
    }
}

async fn set_status(
    deps: &Campaigns,
    campaign_id: &str,
    status: &str,
) -> Result<(), CampaignsError> {
    deps.dynamodb
        .update_item()
        .table_name(&deps.table)
        .key("pk", s(format!("campaign#{campaign_id}")))
        .update_expression("SET #status = :s")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":s", s(status))
        .send()
        .await
        .map_err(aws("DynamoDB", "UpdateItem"))?;
    Ok(())
}

/// A campaign's status and the provider's id, as the table holds them.
pub async fn campaign(
    deps: &Campaigns,
    campaign_id: &str,
) -> Result<Option<(String, Option<String>)>, CampaignsError> {
    let out = deps
        .dynamodb
        .get_item()
        .table_name(&deps.table)
        .key("pk", s(format!("campaign#{campaign_id}")))
        .consistent_read(true)
        .send()
        .await
        .map_err(aws("DynamoDB", "GetItem"))?;
    Ok(out.item.map(|item| {
        let get = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        (get("status").unwrap_or_default(), get("providerCampaignId"))
    }))
}

/// The last campaign a user received.
pub async fn last_campaign_of(
    deps: &Campaigns,
    user: &str,
) -> Result<Option<String>, CampaignsError> {
    let out = deps
        .dynamodb
        .get_item()
        .table_name(&deps.table)
        .key("pk", s(format!("user#{user}")))
        .consistent_read(true)
        .send()
        .await
        .map_err(aws("DynamoDB", "GetItem"))?;
    Ok(out.item.and_then(|item| {
        item.get("lastCampaignId")
            .and_then(|v| v.as_s().ok())
            .cloned()
    }))
}
