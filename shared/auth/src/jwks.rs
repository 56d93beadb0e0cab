//! The issuer's public keys: a static set, or one fetched from a URL and cached by key id.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use serde_json::Value;

use crate::verify::AuthError;

/// Keys fetched from a URL are refreshed after this long, so rotated-out keys expire.
const MAX_AGE: Duration = Duration::from_secs(3600);
/// An unknown key id triggers a refetch at most this often: tokens with made-up key ids
/// must not turn the verifier into a load generator against the issuer.
const MIN_REFETCH: Duration = Duration::from_secs(30);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A JSON Web Key Set: the RSA keys a [`crate::Verifier`] accepts signatures from.
pub struct Jwks {
    source: Source,
    cache: RwLock<Cache>,
    /// Serializes fetches so concurrent requests with a new key id fetch once.
    fetching: tokio::sync::Mutex<()>,
}

enum Source {
    Static,
    Url { url: String, http: reqwest::Client },
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, Arc<DecodingKey>>,
    fetched_at: Option<Instant>,
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<String> = self
            .cache
            .read()
            .map(|c| c.keys.keys().cloned().collect())
            .unwrap_or_default();
        let source = match &self.source {
            Source::Static => "static".to_string(),
            Source::Url { url, .. } => url.clone(),
        };
        f.debug_struct("Jwks")
            .field("source", &source)
            .field("kids", &kids)
            .finish()
    }
}

impl Jwks {
    /// A fixed key set from its JSON (`{"keys": [...]}`), e.g. [`crate::DevIssuer::jwks`].
    pub fn from_json(value: &Value) -> Result<Jwks, AuthError> {
        let set: JwkSet = serde_json::from_value(value.clone())
            .map_err(|e| AuthError::InvalidKeySet(format!("not a JWKS: {e}")))?;
        let keys = decoding_keys(&set);
        if keys.is_empty() {
            return Err(AuthError::InvalidKeySet(
                "the JWKS has no RSA signing key with a `kid`".to_string(),
            ));
        }
        Ok(Jwks {
            source: Source::Static,
            cache: RwLock::new(Cache {
                keys,
                fetched_at: Some(Instant::now()),
            }),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// A key set fetched from `url` on first use, refreshed hourly and when a token names
    /// a key id it does not know (at most every 30 s). Cognito's is
    /// `https://cognito-idp.<region>.amazonaws.com/<pool id>/.well-known/jwks.json`.
    pub fn from_url(url: impl Into<String>) -> Result<Jwks, AuthError> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| AuthError::KeySetUnavailable(format!("no HTTP client: {e}")))?;
        Ok(Jwks {
            source: Source::Url {
                url: url.into(),
                http,
            },
            cache: RwLock::new(Cache::default()),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// The key with id `kid`, fetching the set if needed.
    pub(crate) async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, AuthError> {
        let (cached, fresh) = self.lookup(kid);
        let Source::Url { url, http } = &self.source else {
            return cached.ok_or(AuthError::UnknownKey);
        };
        if let (Some(key), true) = (&cached, fresh) {
            return Ok(key.clone());
        }
        let _guard = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        let (cached, fresh) = self.lookup(kid);
        if let (Some(key), true) = (&cached, fresh) {
            return Ok(key.clone());
        }
        let recently = self
            .cache
            .read()
            .ok()
            .and_then(|c| c.fetched_at)
            .is_some_and(|at| at.elapsed() < MIN_REFETCH);
        if cached.is_none() && recently {
            return Err(AuthError::UnknownKey);
        }
        match fetch(http, url).await {
            Ok(keys) => {
                tracing::info!(url = %url, keys = keys.len(), "fetched the JWKS");
                let found = keys.get(kid).cloned();
                if let Ok(mut cache) = self.cache.write() {
                    cache.keys = keys;
                    cache.fetched_at = Some(Instant::now());
                }
                found.ok_or(AuthError::UnknownKey)
            }
            // A stale key beats no key while the issuer is unreachable.
            Err(e) => match cached {
                Some(key) => {
                    tracing::warn!(url = %url, error = %e, "JWKS refresh failed; using the cached key");
                    Ok(key)
                }
                None => Err(e),
            },
        }
    }

    /// The cached key for `kid`, and whether the cache is younger than [`MAX_AGE`].
    fn lookup(&self, kid: &str) -> (Option<Arc<DecodingKey>>, bool) {
        match self.cache.read() {
            Ok(cache) => (
                cache.keys.get(kid).cloned(),
                cache.fetched_at.is_some_and(|at| at.elapsed() < MAX_AGE),
            ),
            Err(_) => (None, false),
        }
    }
}

async fn fetch(
    http: &reqwest::Client,
    url: &str,
) -> Result<HashMap<String, Arc<DecodingKey>>, AuthError> {
    let unavailable = |e: String| AuthError::KeySetUnavailable(format!("{url}: {e}"));
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    if !response.status().is_success() {
        return Err(unavailable(format!("answered {}", response.status())));
    }
    let set: JwkSet = response
        .json()
        .await
        .map_err(|e| unavailable(format!("not a JWKS: {e}")))?;
    Ok(decoding_keys(&set))
}

/// The RSA signature keys of a set, by key id; others are skipped.
fn decoding_keys(set: &JwkSet) -> HashMap<String, Arc<DecodingKey>> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            usable(jwk).then_some(())?;
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => Some((kid, Arc::new(key))),
                Err(e) => {
                    tracing::warn!(kid = %kid, error = %e, "skipping an unusable JWK");
                    None
                }
            }
        })
        .collect()
}

fn usable(jwk: &Jwk) -> bool {
    use jsonwebtoken::jwk::{AlgorithmParameters, KeyAlgorithm, PublicKeyUse};
    let rsa = matches!(jwk.algorithm, AlgorithmParameters::RSA(_));
    let for_signing = !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption));
    let rs256 = matches!(jwk.common.key_algorithm, None | Some(KeyAlgorithm::RS256));
    rsa && for_signing && rs256
}
