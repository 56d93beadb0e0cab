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

    /// The longest `Fleet-Signature` header accepted: a timestamp and
    /// [`MAX_CANDIDATES`] signatures with room to spare.
    pub const MAX_HEADER_LEN: usize = 512;
    /// The most `v1=` signatures one header may carry (two during a secret rotation).
    pub const MAX_CANDIDATES: usize = 5;
    /// Every `v1=` signature is a hex HMAC-SHA256: exactly this many characters.
    pub const CANDIDATE_HEX_LEN: usize = 64;

    /// Why a signature was refused.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum SignatureError {
        #[error(
            "the signature header is malformed: expected `t=<unix seconds>,v1=<64 hex>` with at most {MAX_CANDIDATES} `v1=` and at most {MAX_HEADER_LEN} characters"
        )]
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

    /// A parsed `Fleet-Signature`: the signed timestamp and its 32-byte candidates.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Header {
        pub timestamp: i64,
        pub candidates: Vec<[u8; 32]>,
    }

    impl Header {
        /// Parses `header` without any cryptography: its length, one `t=`, one to
        /// [`MAX_CANDIDATES`] `v1=` of exactly [`CANDIDATE_HEX_LEN`] hex characters.
        /// Unknown schemes (a future `v2=`) are ignored, as the format allows, but count
        /// against the length.
        pub fn parse(header: &str) -> Result<Header, SignatureError> {
            if header.len() > MAX_HEADER_LEN {
                return Err(SignatureError::Malformed);
            }
            let mut timestamp = None;
            let mut candidates = Vec::new();
            for part in header.split(',') {
                match part.trim().split_once('=') {
                    Some(("t", t)) if timestamp.is_none() => {
                        let t = t.parse::<i64>().map_err(|_| SignatureError::Malformed)?;
                        timestamp = Some(t);
                    }
                    Some(("v1", hex_mac)) => {
                        if candidates.len() == MAX_CANDIDATES || hex_mac.len() != CANDIDATE_HEX_LEN
                        {
                            return Err(SignatureError::Malformed);
                        }
                        let mut candidate = [0u8; 32];
                        hex::decode_to_slice(hex_mac, &mut candidate)
                            .map_err(|_| SignatureError::Malformed)?;
                        candidates.push(candidate);
                    }
                    Some((scheme, _)) if scheme != "t" => {}
                    _ => return Err(SignatureError::Malformed),
                }
            }
            let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
            if candidates.is_empty() {
                return Err(SignatureError::Malformed);
            }
            Ok(Header {
                timestamp,
                candidates,
            })
        }

        /// The header as [`sign`] writes it.
        pub fn render(&self) -> String {
            let mut out = format!("t={}", self.timestamp);
            for candidate in &self.candidates {
                out.push_str(",v1=");
                out.push_str(&hex::encode(candidate));
            }
            out
        }
    }

    /// Checks `header` for `body` at `now` (unix seconds): format, then the MAC, computed
    /// **once** and compared with every candidate in constant time, then the timestamp
    /// (after the MAC, so an unauthenticated caller learns nothing about our clock).
    /// Returns the signed timestamp.
    pub fn verify(
        secret: &[u8],
        header: &str,
        body: &[u8],
        now: i64,
    ) -> Result<i64, SignatureError> {
        let header = Header::parse(header)?;
        let expected = mac(secret, header.timestamp, body);
        // Every candidate is compared, matched or not: the time taken says nothing.
        let matched = header.candidates.iter().fold(false, |any, candidate| {
            any | constant_time_eq(&expected, candidate)
        });
        if !matched {
            return Err(SignatureError::Mismatch);
        }
        let skew = now.saturating_sub(header.timestamp);
        let tolerance = i64::try_from(TOLERANCE.as_secs()).unwrap_or(i64::MAX);
        if skew.saturating_abs() > tolerance {
            return Err(SignatureError::Stale { skew_seconds: skew });
        }
        Ok(header.timestamp)
    }

    /// How many MACs this thread has computed: what a test counts to show that a request
    /// costs one, whatever its header carries.
    pub fn mac_computations() -> u64 {
        MAC_COMPUTATIONS.with(std::cell::Cell::get)
    }

    thread_local! {
        static MAC_COMPUTATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    /// Compares two MACs without an early exit on the first differing byte.
    fn constant_time_eq(a: &[u8], b: &[u8; 32]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
        std::hint::black_box(diff) == 0
    }

    fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Vec<u8> {
        MAC_COMPUTATIONS.with(|count| count.set(count.get().saturating_add(1)));
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

        #[test]
        fn thousands_of_candidates_cost_no_mac_at_all() {
            let body = vec![b'x'; 1 << 20];
            let many = format!("t=5{}", ",v1=".repeat(5_000));
            let before = mac_computations();
            assert_eq!(
                verify(SECRET, &many, &body, 5),
                Err(SignatureError::Malformed)
            );
            let full = format!("t=5{}", format!(",v1={}", "ab".repeat(32)).repeat(6));
            assert!(full.len() <= MAX_HEADER_LEN);
            assert_eq!(
                verify(SECRET, &full, &body, 5),
                Err(SignatureError::Malformed)
            );
            assert_eq!(mac_computations(), before, "malformed headers cost no MAC");
        }

        #[test]
        fn the_mac_is_computed_once_whatever_the_candidates() {
            let body = b"{}";
            let five = format!("t=5{}", format!(",v1={}", "ab".repeat(32)).repeat(5));
            let before = mac_computations();
            assert_eq!(
                verify(SECRET, &five, body, 5),
                Err(SignatureError::Mismatch)
            );
            assert_eq!(mac_computations() - before, 1);
        }

        #[test]
        fn candidates_must_be_64_hex_characters() {
            let body = b"{}";
            for bad in [
                "t=5,v1=",
                "t=5,v1=00",
                &format!("t=5,v1={}", "0".repeat(66)),
            ] {
                assert_eq!(
                    verify(SECRET, bad, body, 5),
                    Err(SignatureError::Malformed),
                    "{bad}"
                );
            }
            let duplicate_t = format!("t=5,t=6,v1={}", "00".repeat(32));
            assert_eq!(
                verify(SECRET, &duplicate_t, body, 5),
                Err(SignatureError::Malformed)
            );
        }

        proptest::proptest! {
            #[test]
            fn no_header_panics(header in ".{0,600}", body in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
                let _ = verify(SECRET, &header, &body, 5);
            }

            #[test]
            fn parsed_headers_round_trip(
                timestamp in proptest::num::i64::ANY,
                candidates in proptest::collection::vec(proptest::array::uniform32(proptest::num::u8::ANY), 1..=MAX_CANDIDATES),
            ) {
                let header = Header { timestamp, candidates };
                proptest::prop_assert_eq!(Header::parse(&header.render()), Ok(header));
            }

            #[test]
            fn a_signed_body_verifies(timestamp in 0i64..4_000_000_000, body in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
                let header = sign(SECRET, timestamp, &body);
                proptest::prop_assert_eq!(verify(SECRET, &header, &body, timestamp), Ok(timestamp));
            }
        }
    }
}
