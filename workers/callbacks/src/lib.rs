//! The callbacks service: a general way for any state machine to wait on an external
//! system.
//!
//! 1. The machine publishes `CallbackAwaited` (task token, provider, external id,
//!    timeout) with `arn:aws:states:::events:putEvents.waitForTaskToken`;
//!    [`handle_awaited`] stores the token under `(provider, external id)` in the
//!    service's table, expiring with the task's timeout.
//! 2. The provider posts to `POST /callbacks/{provider}` ([`app`]): the signature is
//!    checked (`contracts::callbacks::signature`, a secret per provider from a
//!    [`SecretSource`]), then the delivery id, then the external id is mapped to its token
//!    and the delivery's status becomes `SendTaskSuccess`, `SendTaskFailure` or
//!    `SendTaskHeartbeat` (see `contracts::callbacks::WebhookDelivery`).
//!
//! # Answers to the provider
//!
//! | case | status | body |
//! |---|---|---|
//! | applied | 200 | `{"outcome":"accepted"}` |
//! | delivery id already applied (a replay, or a provider retry after a lost answer) | 200 | `{"outcome":"duplicate"}`: refused, nothing is sent to Step Functions or written |
//! | the same delivery id is being applied right now | 409 | `{"error":"in progress"}` (retry later) |
//! | signature missing, malformed, wrong, or unknown provider | 401 | `{"error":"invalid signature"}` |
//! | timestamp more than 5 minutes off | 401 | `{"error":"stale timestamp"}` |
//! | body not a delivery | 400 | `{"error":"invalid body"}` |
//! | no waiting task for the external id (never registered, finished, expired, or not yet registered) | 404 | `{"error":"not found"}` |
//! | Step Functions or DynamoDB unavailable | 503 | `{"error":"unavailable"}` (retry later) |
//!
//! A duplicate gets a 2xx on purpose: providers retry until they see one, and a delivery
//! that was fully applied must stop being retried. It is still refused: it changes
//! nothing. A 404 records nothing, so a provider that calls before the machine has
//! registered its token (a race the flow allows) succeeds on its retry.

pub mod secrets;
pub mod store;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use contracts::BusEvent;
use contracts::callbacks::CallbackAwaited;
use time::OffsetDateTime;

pub use secrets::{Secret, SecretError, SecretSource};
pub use store::{Store, StoreError};
pub use webhook::app;

/// What the handlers need.
#[derive(Clone)]
pub struct Deps {
    pub store: Store,
    pub sfn: aws_sdk_sfn::Client,
    pub secrets: Arc<SecretSource>,
    pub config: Config,
}

/// Tunables.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long a delivery id is remembered after it was applied; must exceed the
    /// signature tolerance (5 minutes) plus the provider's retry horizon.
    pub delivery_retention: Duration,
    /// How long a delivery being applied holds its id before a retry may take over
    /// (a crash between claim and answer).
    pub claim_lease: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            delivery_retention: Duration::from_secs(3 * 24 * 3600),
            claim_lease: Duration::from_secs(60),
        }
    }
}

impl Deps {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        table: impl Into<String>,
        secrets: SecretSource,
    ) -> Deps {
        Deps {
            store: Store::new(aws_sdk_dynamodb::Client::new(sdk), table),
            sfn: aws_sdk_sfn::Client::new(sdk),
            secrets: Arc::new(secrets),
            config: Config::default(),
        }
    }
}

/// Why a handler failed.
#[derive(Debug, thiserror::Error)]
pub enum CallbacksError {
    /// The event is not a valid `CallbackAwaited`: retrying cannot help.
    #[error(transparent)]
    Contract(#[from] contracts::ContractError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stores the token of a `CallbackAwaited` under its provider and external id, expiring
/// with the task's timeout. A later registration for the same key replaces it: the
/// machine loops back to waiting with a fresh token.
pub async fn handle_awaited(event: BusEvent, deps: &Deps) -> Result<(), CallbacksError> {
    let envelope = contracts::detail::decode::<CallbackAwaited>(
        &event.detail_type,
        &event.detail,
        &event.received(),
        |e| Some(e.external_id.clone()),
    )?;
    let awaited = envelope.event;
    let expires = OffsetDateTime::now_utc()
        + time::Duration::seconds(i64::try_from(awaited.timeout_seconds).unwrap_or(i64::MAX / 2));
    deps.store
        .put_token(
            &awaited.provider,
            &awaited.external_id,
            &awaited.task_token,
            expires,
        )
        .await?;
    tracing::info!(
        provider = %awaited.provider,
        external_id = %awaited.external_id,
        correlation_id = %envelope.meta.correlation_id,
        "task token registered"
    );
    Ok(())
}

impl CallbacksError {
    /// The Lambda error type: whether a retry can help.
    pub fn error_type(&self) -> &'static str {
        match self {
            CallbacksError::Contract(_) => "Callbacks.InvalidEvent",
            CallbacksError::Store(_) => "Callbacks.Transient",
        }
    }
}

impl From<CallbacksError> for lambda_runtime::Diagnostic {
    fn from(error: CallbacksError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: error.error_type().to_string(),
            error_message: error.to_string(),
        }
    }
}
