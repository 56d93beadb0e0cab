//! The callbacks service's contracts: the event a state machine publishes to wait on an
//! external system (`CallbackAwaited`, with its task token), the webhook body a provider
//! posts to `POST /callbacks/{provider}`, the output the waiting task receives, and the
//! webhook signature format.
//!
//! # The signature
//!
//! Every webhook request carries the header
//!
//! ```text
//! Fleet-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
//! ```
//!
//! `t` is when the provider signed; more than one `v1=` may be present while a secret is
//! rotated (any one matching is enough). The receiver refuses a `t` more than
//! [`signature::TOLERANCE`] away from its clock, so a captured request cannot be replayed
//! later, and remembers delivery ids for longer than that window, so it cannot be
//! replayed sooner.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::Event;

/// The `source` of a `CallbackAwaited` published from Rust (state machines publish it
/// with their own service's source; the callbacks rule matches any source).
pub const SOURCE: &str = "fleet.callbacks";
/// The detail-type the callbacks service listens for.
pub const AWAITED: &str = "CallbackAwaited";

/// A state machine waits for an external system to report on `external_id`. Published
/// by an `events:putEvents.waitForTaskToken` task; `timeout_seconds` must equal the
/// task's `TimeoutSeconds`: the stored token expires with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallbackAwaited {
    pub task_token: String,
    /// The provider's name as it appears in the webhook path, e.g. `fake`.
    pub provider: String,
    /// The provider's id for the thing being waited on (the correlation key).
    pub external_id: String,
    pub timeout_seconds: u64,
}

impl Event for CallbackAwaited {
    fn source(&self) -> &'static str {
        SOURCE
    }
    fn detail_type(&self) -> &'static str {
        AWAITED
    }
    fn correlation_id(&self) -> Option<String> {
        Some(self.external_id.clone())
    }
}

/// What a provider posts to `POST /callbacks/{provider}`.
///
/// `status` decides what the waiting task gets:
/// - `heartbeat`: `SendTaskHeartbeat`, the task keeps waiting on the same token;
/// - `error`: `SendTaskFailure` with error [`PROVIDER_ERROR`] and `data.reason` as cause;
/// - anything else (`pending`, `sent`, `failed`, ...): `SendTaskSuccess` with a
///   [`CallbackResult`]; the state machine's Choice decides what the status means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    /// Unique per delivery; a provider's retry of one delivery reuses it.
    pub delivery_id: String,
    pub external_id: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// The error name of a `SendTaskFailure` for a delivery with status `error`.
pub const PROVIDER_ERROR: &str = "Callback.ProviderError";

/// The output a waiting task receives with `SendTaskSuccess`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallbackResult {
    pub external_id: String,
    pub status: String,
    pub delivery_id: String,
    #[serde(default)]
    pub data: Value,
}

/// The `200` answer of `POST /callbacks/{provider}`; its errors are
/// [`crate::http::ErrorBody`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WebhookAnswer {
    pub outcome: WebhookOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum WebhookOutcome {
    /// The delivery was applied to the waiting task.
    Accepted,
    /// This delivery id was applied before; nothing changed.
    Duplicate,
}

/// The webhook signature: header format, signing and constant-time verification.
pub mod signature {
    use std::time::Duration;

    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    /// The header carrying the signature.
    pub const HEADER: &str = "Fleet-Signature";
    /// How far `t=` may be from the receiver's clock, in the past or the future.
    pub const TOLERANCE: Duration = Duration::from_secs(5 * 60);

    type HmacSha256 = Hmac<Sha256>;

    /// Why a signature was refused.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum SignatureError {
        #[error("the signature header is malformed: expected `t=<unix seconds>,v1=<hex>`")]
        Malformed,
        #[error("no v1 signature matches")]
        Mismatch,
        #[error("the timestamp is {skew_seconds} s away from now, beyond the tolerance")]
        Stale { skew_seconds: i64 },
    }

    /// The header value for `body` signed at `timestamp` (unix seconds).
    pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
        format!(
            "t={timestamp},v1={}",
            hex::encode(mac(secret, timestamp, body))
        )
    }

    /// Checks `header` for `body` at `now` (unix seconds): format, then every `v1=` in
    /// constant time, then the timestamp (after the MAC, so an unauthenticated caller
    /// learns nothing about our clock). Returns the signed timestamp.
    pub fn verify(
        secret: &[u8],
        header: &str,
        body: &[u8],
        now: i64,
    ) -> Result<i64, SignatureError> {
        let mut timestamp = None;
        let mut candidates = Vec::new();
        for part in header.split(',') {
            match part.trim().split_once('=') {
                Some(("t", t)) => {
                    timestamp = Some(t.parse::<i64>().map_err(|_| SignatureError::Malformed)?);
                }
                Some(("v1", hex_mac)) => {
                    candidates.push(hex::decode(hex_mac).map_err(|_| SignatureError::Malformed)?);
                }
                // Unknown schemes (a future v2) are ignored, as the format allows.
                Some(_) => {}
                None => return Err(SignatureError::Malformed),
            }
        }
        let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
        if candidates.is_empty() {
            return Err(SignatureError::Malformed);
        }
        let matched = candidates.iter().any(|candidate| {
            let mut mac = keyed(secret);
            mac.update(format!("{timestamp}.").as_bytes());
            mac.update(body);
            // `verify_slice` compares in constant time.
            mac.verify_slice(candidate).is_ok()
        });
        if !matched {
            return Err(SignatureError::Mismatch);
        }
        let skew = now.saturating_sub(timestamp);
        let tolerance = i64::try_from(TOLERANCE.as_secs()).unwrap_or(i64::MAX);
        if skew.abs() > tolerance {
            return Err(SignatureError::Stale { skew_seconds: skew });
        }
        Ok(timestamp)
    }

    fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Vec<u8> {
        let mut mac = keyed(secret);
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }

    fn keyed(secret: &[u8]) -> HmacSha256 {
        // Invariant: HMAC takes keys of any length, so this never fails.
        #[allow(clippy::expect_used)]
        HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length")
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        const SECRET: &[u8] = b"whsec_test";

        #[test]
        fn a_signature_verifies_and_tampering_does_not() {
            let body = br#"{"deliveryId":"d1","externalId":"c1","status":"sent"}"#;
            let header = sign(SECRET, 1_700_000_000, body);
            assert_eq!(
                verify(SECRET, &header, body, 1_700_000_010),
                Ok(1_700_000_000)
            );
            assert_eq!(
                verify(SECRET, &header, b"{}", 1_700_000_010),
                Err(SignatureError::Mismatch)
            );
            assert_eq!(
                verify(b"other", &header, body, 1_700_000_010),
                Err(SignatureError::Mismatch)
            );
            // Moving the timestamp breaks the MAC: it is signed.
            let moved = header.replace("t=1700000000", "t=1700000100");
            assert_eq!(
                verify(SECRET, &moved, body, 1_700_000_100),
                Err(SignatureError::Mismatch)
            );
        }

        #[test]
        fn stale_and_future_timestamps_are_refused() {
            let body = b"{}";
            let header = sign(SECRET, 1_000, body);
            assert_eq!(
                verify(SECRET, &header, body, 1_000 + 301),
                Err(SignatureError::Stale { skew_seconds: 301 })
            );
            assert_eq!(
                verify(SECRET, &header, body, 1_000 - 301),
                Err(SignatureError::Stale { skew_seconds: -301 })
            );
            assert_eq!(verify(SECRET, &header, body, 1_300), Ok(1_000));
        }

        #[test]
        fn rotation_and_malformed_headers() {
            let body = b"{}";
            let good = sign(SECRET, 5, body);
            let v1 = good.split(",v1=").nth(1).unwrap_or_default();
            let rotated = format!("t=5,v1={},v1={v1}", "00".repeat(32));
            assert_eq!(verify(SECRET, &rotated, body, 5), Ok(5));
            for bad in ["", "t=5", "v1=00", "t=x,v1=00", "t=5,v1=zz", "garbage"] {
                assert_eq!(
                    verify(SECRET, bad, body, 5),
                    Err(SignatureError::Malformed),
                    "{bad}"
                );
            }
        }
    }
}
