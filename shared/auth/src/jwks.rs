//! The issuer's public keys: a static set, or one fetched from a URL and cached by key id.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use serde_json::Value;

use crate::verify::AuthError;

/// How a key set fetched from a URL is kept fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksConfig {
    /// Keys older than this are refreshed (in the background), so rotated-out keys expire.
    pub max_age: Duration,
    /// A key id the set does not know triggers a fetch at most this often: tokens with
    /// made-up key ids must not turn the verifier into a load generator against the
    /// issuer, and with the issuer down they must not each wait out a fetch.
    pub min_refetch: Duration,
    /// One fetch's deadline.
    pub fetch_timeout: Duration,
    /// The first and the longest pause between the background refresh's attempts.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl Default for JwksConfig {
    fn default() -> Self {
        JwksConfig {
            max_age: Duration::from_secs(3600),
            min_refetch: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(5),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
        }
    }
}

/// The most keys a fetched set may hold; a larger one is refused as not a JWKS.
pub const MAX_KEYS: usize = 100;
/// The largest JWKS document accepted (bytes).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// A JSON Web Key Set: the RSA keys a [`crate::Verifier`] accepts signatures from.
///
/// A set fetched from a URL never makes a request wait for the issuer once it holds a
/// key: a stale set is served while one background task refreshes it, retrying with
/// backoff while the issuer is down. Only a key id it has never seen waits for a fetch,
/// and at most one such fetch per [`JwksConfig::min_refetch`].
pub struct Jwks {
    inner: Arc<Inner>,
    /// The background refresh, if one was started; aborted when the set is dropped.
    refresh: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

struct Inner {
    source: Source,
    config: JwksConfig,
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
    /// The last fetch, successful or not.
    attempted_at: Option<Instant>,
    last_error: Option<AuthError>,
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<String> = self
            .inner
            .cache
            .read()
            .map(|c| c.keys.keys().cloned().collect())
            .unwrap_or_default();
        let source = match &self.inner.source {
            Source::Static => "static".to_string(),
            Source::Url { url, .. } => url.clone(),
        };
        f.debug_struct("Jwks")
            .field("source", &source)
            .field("kids", &kids)
            .finish()
    }
}

impl Drop for Jwks {
    fn drop(&mut self) {
        if let Ok(mut refresh) = self.refresh.lock()
            && let Some(task) = refresh.take()
        {
            task.abort();
        }
    }
}

impl Jwks {
    /// A fixed key set from its JSON (`{"keys": [...]}`), e.g. [`crate::DevIssuer::jwks`].
    pub fn from_json(value: &Value) -> Result<Jwks, AuthError> {
        let set: JwkSet = serde_json::from_value(value.clone())
            .map_err(|e| AuthError::InvalidKeySet(format!("not a JWKS: {e}")))?;
        let keys = decoding_keys(&set)?;
        if keys.is_empty() {
            return Err(AuthError::InvalidKeySet(
                "the JWKS has no RSA signing key with a `kid`".to_string(),
            ));
        }
        Ok(Jwks::with(
            Source::Static,
            JwksConfig::default(),
            Cache {
                keys,
                fetched_at: Some(Instant::now()),
                ..Cache::default()
            },
        ))
    }

    /// A key set fetched from `url` on first use and kept fresh as [`JwksConfig::default`]
    /// says (hourly; an unknown key id refetches at most every 30 s). Cognito's is
    /// `https://cognito-idp.<region>.amazonaws.com/<pool id>/.well-known/jwks.json`.
    pub fn from_url(url: impl Into<String>) -> Result<Jwks, AuthError> {
        Jwks::from_url_with(url, JwksConfig::default())
    }

    /// [`Jwks::from_url`] with other timings.
    pub fn from_url_with(url: impl Into<String>, config: JwksConfig) -> Result<Jwks, AuthError> {
        let http = reqwest::Client::builder()
            .timeout(config.fetch_timeout)
            .build()
            .map_err(|e| AuthError::KeySetUnavailable(format!("no HTTP client: {e}")))?;
        Ok(Jwks::with(
            Source::Url {
                url: url.into(),
                http,
            },
            config,
            Cache::default(),
        ))
    }

    fn with(source: Source, config: JwksConfig, cache: Cache) -> Jwks {
        Jwks {
            inner: Arc::new(Inner {
                source,
                config,
                cache: RwLock::new(cache),
                fetching: tokio::sync::Mutex::new(()),
            }),
            refresh: std::sync::Mutex::new(None),
        }
    }

    /// The key with id `kid`, fetching the set only if it has never held that key.
    pub(crate) async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, AuthError> {
        let (cached, fresh) = self.inner.lookup(kid);
        if matches!(self.inner.source, Source::Static) {
            return cached.ok_or(AuthError::UnknownKey);
        }
        if let Some(key) = cached {
            if !fresh {
                // Serve the stale key now; the issuer may be slow or down.
                self.refresh_in_background();
            }
            return Ok(key);
        }
        let _guard = self.inner.fetching.lock().await;
        // Another request may have fetched while this one waited.
        if let (Some(key), _) = self.inner.lookup(kid) {
            return Ok(key);
        }
        if let Some(refused) = self.inner.recently_attempted() {
            return Err(refused);
        }
        self.inner.fetch_once().await?;
        self.inner.lookup(kid).0.ok_or(AuthError::UnknownKey)
    }

    /// Starts the refresh task unless one is running.
    fn refresh_in_background(&self) {
        let Ok(mut refresh) = self.refresh.lock() else {
            return;
        };
        if refresh.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let inner = self.inner.clone();
        *refresh = Some(tokio::spawn(async move { inner.refresh().await }));
    }
}

impl Inner {
    /// The cached key for `kid`, and whether the cache is younger than `max_age`.
    fn lookup(&self, kid: &str) -> (Option<Arc<DecodingKey>>, bool) {
        match self.cache.read() {
            Ok(cache) => (
                cache.keys.get(kid).cloned(),
                cache
                    .fetched_at
                    .is_some_and(|at| at.elapsed() < self.config.max_age),
            ),
            Err(_) => (None, false),
        }
    }

    /// The answer for an unknown key id while a fetch happened less than `min_refetch`
    /// ago: the key is unknown if that fetch worked, the set unavailable if it failed.
    fn recently_attempted(&self) -> Option<AuthError> {
        let cache = self.cache.read().ok()?;
        let recent = cache
            .attempted_at
            .is_some_and(|at| at.elapsed() < self.config.min_refetch);
        if !recent {
            return None;
        }
        Some(match (&cache.last_error, cache.fetched_at) {
            (Some(error), None) => error.clone(),
            _ => AuthError::UnknownKey,
        })
    }

    /// One fetch; the cache records its outcome.
    async fn fetch_once(&self) -> Result<(), AuthError> {
        let Source::Url { url, http } = &self.source else {
            return Ok(());
        };
        let outcome = fetch(http, url).await;
        let Ok(mut cache) = self.cache.write() else {
            return outcome.map(|_| ());
        };
        cache.attempted_at = Some(Instant::now());
        match outcome {
            Ok(keys) => {
                tracing::info!(url = %url, keys = keys.len(), "fetched the JWKS");
                cache.keys = keys;
                cache.fetched_at = Some(Instant::now());
                cache.last_error = None;
                Ok(())
            }
            Err(e) => {
                tracing::warn!(url = %url, error = %e, "JWKS fetch failed");
                cache.last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Fetches until it works, with exponential backoff; requests meanwhile get the
    /// cached keys.
    async fn refresh(&self) {
        use backon::Retryable as _;
        let backoff = backon::ExponentialBuilder::default()
            .with_min_delay(self.config.retry_min)
            .with_max_delay(self.config.retry_max)
            .with_jitter()
            .without_max_times();
        let _ = (|| async {
            let _guard = self.fetching.lock().await;
            self.fetch_once().await
        })
        .retry(backoff)
        .await;
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
    if response
        .content_length()
        .is_some_and(|length| length > MAX_JWKS_BYTES as u64)
    {
        return Err(unavailable(format!(
            "the JWKS is over {MAX_JWKS_BYTES} bytes"
        )));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    if body.len() > MAX_JWKS_BYTES {
        return Err(unavailable(format!(
            "the JWKS is over {MAX_JWKS_BYTES} bytes"
        )));
    }
    let set: JwkSet =
        serde_json::from_slice(&body).map_err(|e| unavailable(format!("not a JWKS: {e}")))?;
    decoding_keys(&set).map_err(|e| unavailable(e.to_string()))
}

/// The RSA signature keys of a set, by key id; others are skipped.
fn decoding_keys(set: &JwkSet) -> Result<HashMap<String, Arc<DecodingKey>>, AuthError> {
    if set.keys.len() > MAX_KEYS {
        return Err(AuthError::InvalidKeySet(format!(
            "the JWKS has {} keys, at most {MAX_KEYS} are accepted",
            set.keys.len()
        )));
    }
    Ok(set
        .keys
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
        .collect())
}

fn usable(jwk: &Jwk) -> bool {
    use jsonwebtoken::jwk::{AlgorithmParameters, KeyAlgorithm, PublicKeyUse};
    let rsa = matches!(jwk.algorithm, AlgorithmParameters::RSA(_));
    let for_signing = !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption));
    let rs256 = matches!(jwk.common.key_algorithm, None | Some(KeyAlgorithm::RS256));
    rsa && for_signing && rs256
}
