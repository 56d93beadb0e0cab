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
//! The checks run cheapest first: the provider against [`Config::providers`] (no secret
//! is looked up for a name not listed), the `Fleet-Signature` header's shape (no MAC for
//! a malformed one), the body's size (read no further than the provider's limit), then
//! the MAC, computed once, then the body's fields.
//!
//! | case | status | body |
//! |---|---|---|
//! | applied | 200 | `{"outcome":"accepted"}` |
//! | delivery id already applied (a replay, or a provider retry after a lost answer), or bound to a wait that has ended | 200 | `{"outcome":"duplicate"}`: refused, nothing is sent to Step Functions or written |
//! | the same delivery id is being applied right now | 409 | `{"error":"in progress"}` (retry later) |
//! | unknown provider; signature missing, malformed (see `contracts::callbacks::signature::Header::parse`) or wrong | 401 | `{"error":"invalid signature"}` |
//! | timestamp more than 5 minutes off | 401 | `{"error":"stale timestamp"}` |
//! | body over the provider's [`ProviderConfig::max_body_bytes`] | 413 | `{"error":"body too large: at most N bytes"}` |
//! | body not a delivery, or a field out of its bounds ([`MAX_DELIVERY_ID_LEN`], ...) | 400 | `{"error":"invalid body: ..."}` naming the field |
//! | no waiting task for the external id (never registered, finished, expired, or not yet registered) | 404 | `{"error":"not found"}` |
//! | Step Functions or DynamoDB unavailable, or the provider's secret missing or empty | 503 | `{"error":"unavailable"}` (retry later) |
//!
//! A duplicate gets a 2xx on purpose: providers retry until they see one, and a delivery
//! that was fully applied must stop being retried. It is still refused: it changes
//! nothing. A 404 records nothing, so a provider that calls before the machine has
//! registered its token (a race the flow allows) succeeds on its retry.
//!
//! # A delivery is bound to one wait
//!
//! Claiming a delivery id records the token it is being applied to. From then on a retry
//! of that delivery (after a crash, a timeout or a failed write between Step Functions'
//! answer and the delivery record) is sent to that same token, never to whatever token
//! waits on the external id by then: the machine may have moved on to its next wait, and
//! the delivery was not for it. If the bound token has ended, the delivery is recorded as
//! applied and answered as a duplicate. Only a first attempt that Step Functions refused
//! outright (the token was already gone) gives its claim back, so the retry can find the
//! next wait: nothing was applied.
//!
//! # Limits
//!
//! Every bound on the input is a constant: [`DEFAULT_MAX_BODY_BYTES`],
//! [`MAX_DELIVERY_ID_LEN`], [`MAX_EXTERNAL_ID_LEN`], [`MAX_STATUS_LEN`],
//! [`MAX_TASK_TOKEN_LEN`], [`MAX_TIMEOUT_SECONDS`], [`MAX_FAILURE_CAUSE_CHARS`],
//! [`MAX_TASK_OUTPUT_BYTES`], [`secrets::MAX_PROVIDER_LEN`], and the signature header's
//! (`contracts::callbacks::signature::{MAX_HEADER_LEN, MAX_CANDIDATES, CANDIDATE_HEX_LEN}`).

pub mod secrets;
pub mod service;
pub mod store;
mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use contracts::BusEvent;
use contracts::callbacks::CallbackAwaited;
use time::OffsetDateTime;

pub use secrets::{Secret, SecretError, SecretSource};
pub use store::{Store, StoreError};
pub use webhook::app;

/// The body limit of a provider that sets none: a delivery is a few ids and a status
/// with some `data`; 256 KiB is also Step Functions' limit on a task's output.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
/// The largest body limit a provider may be configured with: Lambda's own payload limit.
pub const MAX_CONFIGURABLE_BODY_BYTES: usize = 6 * 1024 * 1024;
/// The longest `deliveryId` of a webhook body.
pub const MAX_DELIVERY_ID_LEN: usize = 256;
/// The longest `externalId`, of a webhook body and of `CallbackAwaited`.
pub const MAX_EXTERNAL_ID_LEN: usize = 256;
/// The longest `status` of a webhook body.
pub const MAX_STATUS_LEN: usize = 64;
/// The longest `taskToken` of `CallbackAwaited` (Step Functions' own limit).
pub const MAX_TASK_TOKEN_LEN: usize = 2048;
/// The longest `timeoutSeconds` of `CallbackAwaited`: a year, Step Functions' longest
/// execution.
pub const MAX_TIMEOUT_SECONDS: u64 = 365 * 24 * 3600;
/// The longest cause sent with `SendTaskFailure` (Step Functions' limit); a longer
/// `data.reason` is cut to it.
pub const MAX_FAILURE_CAUSE_CHARS: usize = 32_768;
/// The largest output sent with `SendTaskSuccess` (Step Functions' limit); a delivery
/// whose result would be larger is answered 413.
pub const MAX_TASK_OUTPUT_BYTES: usize = 256 * 1024;

/// What `callbacks-webhook` needs (`callbacks-awaited` needs only the [`Store`]).
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
    /// The providers webhooks are accepted from, with their limits. A provider not
    /// listed is refused before its secret is looked up.
    pub providers: BTreeMap<String, ProviderConfig>,
}

/// One provider's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderConfig {
    /// The largest webhook body accepted, in bytes; a larger one is answered 413 before
    /// its signature is checked.
    pub max_body_bytes: usize,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            delivery_retention: Duration::from_secs(3 * 24 * 3600),
            claim_lease: Duration::from_secs(60),
            providers: BTreeMap::new(),
        }
    }
}

impl Config {
    /// Accepts webhooks from `provider`, with `settings`.
    pub fn with_provider(mut self, provider: impl Into<String>, settings: ProviderConfig) -> Self {
        self.providers.insert(provider.into(), settings);
        self
    }
}

/// Parses a providers list as the `callbacks-webhook` binary's `CALLBACK_PROVIDERS`
/// carries it: comma-separated `name` or `name=<max body bytes>`, e.g.
/// `acme,bigco=1048576`. The error names the entry and the fix.
pub fn parse_providers(list: &str) -> Result<BTreeMap<String, ProviderConfig>, String> {
    let mut providers = BTreeMap::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, settings) = match entry.split_once('=') {
            None => (entry, ProviderConfig::default()),
            Some((name, bytes)) => {
                let max_body_bytes = bytes
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_CONFIGURABLE_BODY_BYTES).contains(n))
                    .ok_or_else(|| {
                        format!(
                            "provider entry `{entry}`: the body limit must be a number of bytes from 1 to {MAX_CONFIGURABLE_BODY_BYTES}"
                        )
                    })?;
                (name.trim(), ProviderConfig { max_body_bytes })
            }
        };
        if !secrets::valid_provider(name) {
            return Err(format!(
                "provider entry `{entry}`: a provider name is 1 to {} characters of a-z, 0-9, `-` and `_`",
                secrets::MAX_PROVIDER_LEN
            ));
        }
        providers.insert(name.to_string(), settings);
    }
    Ok(providers)
}

impl Deps {
    /// The handlers' dependencies with the default [`Config`]; the providers accepted are
    /// those a memory source lists (files and SSM list none: set them with
    /// [`Deps::with_config`]).
    pub fn new(
        sdk: &aws_config::SdkConfig,
        table: impl Into<String>,
        secrets: SecretSource,
    ) -> Deps {
        let mut config = Config::default();
        for provider in secrets.listed_providers().unwrap_or_default() {
            config = config.with_provider(provider, ProviderConfig::default());
        }
        Deps {
            store: Store::new(aws_sdk_dynamodb::Client::new(sdk), table),
            sfn: aws_sdk_sfn::Client::new(sdk),
            secrets: Arc::new(secrets),
            config,
        }
    }

    pub fn with_config(mut self, config: Config) -> Deps {
        self.config = config;
        self
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
pub async fn handle_awaited(event: BusEvent, store: &Store) -> Result<(), CallbacksError> {
    let envelope = contracts::detail::decode::<CallbackAwaited>(
        &event.detail_type,
        &event.detail,
        &event.received(),
        |e| Some(e.external_id.clone()),
    )?;
    let awaited = envelope.event;
    let expires = validate_awaited(&awaited, OffsetDateTime::now_utc())?;
    store
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

/// Checks a `CallbackAwaited`'s fields against their bounds; returns when its token
/// expires, `timeoutSeconds` after `now`, computed without overflow.
fn validate_awaited(
    awaited: &CallbackAwaited,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, contracts::ContractError> {
    let invalid = |field: &str, message: String| contracts::ContractError::Invalid {
        what: format!("`{}` detail", contracts::callbacks::AWAITED),
        field: field.to_string(),
        message,
    };
    if !secrets::valid_provider(&awaited.provider) {
        return Err(invalid(
            "provider",
            format!(
                "must be 1 to {} characters of a-z, 0-9, `-` and `_`",
                secrets::MAX_PROVIDER_LEN
            ),
        ));
    }
    if !bounded_id(&awaited.external_id, MAX_EXTERNAL_ID_LEN) {
        return Err(invalid(
            "externalId",
            format!("must be 1 to {MAX_EXTERNAL_ID_LEN} bytes without control characters"),
        ));
    }
    if !bounded_id(&awaited.task_token, MAX_TASK_TOKEN_LEN) {
        return Err(invalid(
            "taskToken",
            format!("must be 1 to {MAX_TASK_TOKEN_LEN} bytes without control characters"),
        ));
    }
    let out_of_range = || {
        invalid(
            "timeoutSeconds",
            format!(
                "{} is out of range: send 1 to {MAX_TIMEOUT_SECONDS} (a year), the task's `TimeoutSeconds`",
                awaited.timeout_seconds
            ),
        )
    };
    if !(1..=MAX_TIMEOUT_SECONDS).contains(&awaited.timeout_seconds) {
        return Err(out_of_range());
    }
    let seconds = i64::try_from(awaited.timeout_seconds).map_err(|_| out_of_range())?;
    now.checked_add(time::Duration::seconds(seconds))
        .ok_or_else(out_of_range)
}

/// 1 to `max` bytes, none a control character: ids end up in keys and logs.
pub(crate) fn bounded_id(id: &str, max: usize) -> bool {
    !id.is_empty() && id.len() <= max && !id.chars().any(char::is_control)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn awaited(timeout_seconds: u64) -> CallbackAwaited {
        CallbackAwaited {
            task_token: "token".into(),
            provider: "acme".into(),
            external_id: "x-1".into(),
            timeout_seconds,
        }
    }

    fn refused_field(awaited: &CallbackAwaited, now: OffsetDateTime) -> (String, String) {
        match validate_awaited(awaited, now) {
            Err(e) => (e.field().to_string(), e.to_string()),
            Ok(at) => panic!("expected a refusal, got an expiry at {at}"),
        }
    }

    /// Dependencies whose clients are never called: every case here is refused first.
    fn unused_deps() -> Deps {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        Deps::new(&sdk, "unused", SecretSource::memory(BTreeMap::new()))
    }

    #[tokio::test]
    async fn callback_awaited_with_timeout_seconds_u64_max_is_refused_as_invalid() {
        let event = BusEvent::from_json(
            r#"{"id":"e-1","detail-type":"CallbackAwaited","source":"fleet.tests","detail":{"taskToken":"t","provider":"acme","externalId":"x","timeoutSeconds":18446744073709551615}}"#,
        )
        .expect("a bus event");
        let error = handle_awaited(event, &unused_deps().store)
            .await
            .expect_err("the event is refused");
        assert_eq!(error.error_type(), "Callbacks.InvalidEvent", "not retried");
        let CallbacksError::Contract(contract) = &error else {
            panic!("expected a contract error, got {error:?}");
        };
        assert_eq!(contract.field(), "timeoutSeconds");
    }

    #[test]
    fn providers_lists_parse_with_their_limits() {
        let providers = parse_providers(" acme, bigco=1048576 ,").unwrap_or_default();
        assert_eq!(
            providers,
            BTreeMap::from([
                ("acme".to_string(), ProviderConfig::default()),
                (
                    "bigco".to_string(),
                    ProviderConfig {
                        max_body_bytes: 1 << 20
                    }
                ),
            ])
        );
        for bad in ["Acme", "acme=0", "acme=lots", "acme=99999999999", "../x"] {
            let error = parse_providers(bad).expect_err(bad);
            assert!(error.contains(bad), "{error}");
        }
    }

    #[test]
    fn timeout_seconds_of_u64_max_is_a_contract_error_not_a_panic() {
        let (field, message) = refused_field(&awaited(u64::MAX), OffsetDateTime::now_utc());
        assert_eq!(field, "timeoutSeconds");
        assert!(message.contains("send 1 to 31536000"), "{message}");
    }

    #[test]
    fn a_timeout_past_the_calendar_is_a_contract_error_not_a_panic() {
        // Within i64, but far beyond year 9999, and beyond `time::Duration`'s range in
        // days: `OffsetDateTime + Duration` would panic.
        for seconds in [i64::MAX as u64, 400_000_000_000, MAX_TIMEOUT_SECONDS + 1, 0] {
            let (field, _) = refused_field(&awaited(seconds), OffsetDateTime::now_utc());
            assert_eq!(field, "timeoutSeconds", "{seconds}");
        }
        // A valid timeout near the end of the calendar overflows the addition itself.
        let late = time::macros::datetime!(9999-12-31 23:00 UTC);
        let (field, message) = refused_field(&awaited(MAX_TIMEOUT_SECONDS), late);
        assert_eq!(field, "timeoutSeconds");
        assert!(message.contains("out of range"), "{message}");
    }

    #[test]
    fn a_valid_timeout_expires_that_many_seconds_later() {
        let now = time::macros::datetime!(2030-01-01 0:00 UTC);
        assert_eq!(
            validate_awaited(&awaited(300), now).ok(),
            Some(now + time::Duration::minutes(5))
        );
    }

    #[test]
    fn awaited_ids_out_of_bounds_are_contract_errors() {
        let now = OffsetDateTime::now_utc();
        let mut long_id = awaited(60);
        long_id.external_id = "x".repeat(MAX_EXTERNAL_ID_LEN + 1);
        assert_eq!(refused_field(&long_id, now).0, "externalId");
        let mut control = awaited(60);
        control.external_id = "a\nb".into();
        assert_eq!(refused_field(&control, now).0, "externalId");
        let mut long_token = awaited(60);
        long_token.task_token = "t".repeat(MAX_TASK_TOKEN_LEN + 1);
        assert_eq!(refused_field(&long_token, now).0, "taskToken");
        let mut provider = awaited(60);
        provider.provider = "Not/A/Provider".into();
        assert_eq!(refused_field(&provider, now).0, "provider");
    }
}
