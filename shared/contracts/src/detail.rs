//! Decoding the detail of the events of the callbacks, campaigns, scheduler and licenses
//! services: one generic path (schema version first, then the payload's fields) instead
//! of one hand-written `decode` per event type.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::envelope::{self, Envelope, Received};
use crate::error::{ContractError, from_value};

/// Decodes `T` from an EventBridge detail; `received` stands in for a missing `meta`.
pub fn decode<T: DeserializeOwned>(
    detail_type: &str,
    detail: &Value,
    received: &Received<'_>,
    correlation_id: impl FnOnce(&T) -> Option<String>,
) -> Result<Envelope<T>, ContractError> {
    let what = format!("`{detail_type}` detail");
    let (meta, payload) = envelope::split_detail(&what, detail)?;
    let event: T = from_value(&what, &payload)?;
    let meta = meta.unwrap_or_else(|| envelope::derived_meta(received, correlation_id(&event)));
    Ok(Envelope { meta, event })
}

/// Checks that `value` can name a Step Functions execution: 1 to 80 characters of
/// `A-Z a-z 0-9 - _`.
pub(crate) fn execution_name(what: &str, field: &str, value: &str) -> Result<(), ContractError> {
    let valid = !value.is_empty()
        && value.len() <= 80
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(ContractError::invalid(
            what,
            field,
            format!("`{value}` must be 1 to 80 characters of A-Z, a-z, 0-9, `-` and `_`"),
        ))
    }
}
