//! Where the per-provider webhook secrets come from: SSM Parameter Store on AWS
//! (SecureString `<prefix>/<provider>`), files or memory locally. Binaries decide which
//! from their environment; this module never reads it.
//!
//! Every answer of a file or SSM backend, a secret or its absence, is cached for
//! [`SECRET_CACHE_FOR`]: a burst of webhooks costs one read, and so does a burst for a
//! provider whose secret is missing. Which providers exist at all is not this module's
//! question: the webhook asks only about the providers its `Config` lists, so a made-up
//! name in the path never reaches a backend.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a file or SSM backend's answer (a secret, or that there is none) is reused.
pub const SECRET_CACHE_FOR: Duration = Duration::from_secs(300);

/// A webhook secret; its bytes never appear in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The secrets of every provider, from one backend.
pub struct SecretSource {
    backend: Backend,
    cache: Mutex<HashMap<String, (Option<Secret>, Instant)>>,
    reads: AtomicU64,
}

enum Backend {
    /// Fixed secrets (tests, the local stack; a binary may fill it from
    /// `CALLBACK_SECRET_<PROVIDER>` variables).
    Memory(BTreeMap<String, Secret>),
    /// One file per provider, `<dir>/<provider>`, its content trimmed.
    Files { dir: PathBuf },
    /// SSM Parameter Store: `<prefix>/<provider>`, decrypted.
    Ssm {
        client: aws_sdk_ssm::Client,
        prefix: String,
    },
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.backend {
            Backend::Memory(map) => f.debug_tuple("Memory").field(&map.keys()).finish(),
            Backend::Files { dir } => f.debug_struct("Files").field("dir", dir).finish(),
            Backend::Ssm { prefix, .. } => f.debug_struct("Ssm").field("prefix", prefix).finish(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("reading the secret of provider {provider}: {message}")]
    Unavailable { provider: String, message: String },
    /// An empty key would make every signature forgeable by anyone who guesses it.
    #[error(
        "the secret of provider {provider} is empty: store a random secret of at least 32 bytes"
    )]
    Empty { provider: String },
}

impl SecretSource {
    /// Fixed secrets, by provider.
    pub fn memory(secrets: BTreeMap<String, Secret>) -> SecretSource {
        SecretSource::with_backend(Backend::Memory(secrets))
    }

    /// One provider's secret in memory.
    pub fn single(provider: &str, secret: Secret) -> SecretSource {
        SecretSource::memory(BTreeMap::from([(provider.to_string(), secret)]))
    }

    /// A file per provider, `<dir>/<provider>`, its content trimmed.
    pub fn files(dir: impl Into<PathBuf>) -> SecretSource {
        SecretSource::with_backend(Backend::Files { dir: dir.into() })
    }

    /// SSM Parameter Store SecureStrings `<prefix>/<provider>`.
    pub fn ssm(client: aws_sdk_ssm::Client, prefix: impl Into<String>) -> SecretSource {
        SecretSource::with_backend(Backend::Ssm {
            client,
            prefix: prefix.into().trim_end_matches('/').to_string(),
        })
    }

    fn with_backend(backend: Backend) -> SecretSource {
        SecretSource {
            backend,
            cache: Mutex::new(HashMap::new()),
            reads: AtomicU64::new(0),
        }
    }

    /// The providers this source knows without asking its backend: the keys of a memory
    /// source; `None` for files and SSM, whose providers the `Config` must list.
    pub fn listed_providers(&self) -> Option<Vec<String>> {
        match &self.backend {
            Backend::Memory(map) => Some(map.keys().cloned().collect()),
            Backend::Files { .. } | Backend::Ssm { .. } => None,
        }
    }

    /// How many times the backend was asked (a map look-up, a file read, a
    /// `GetParameter`): what a test counts to show what a request costs.
    pub fn backend_reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// The secret of `provider`; `None` when the provider has none. Provider names are
    /// checked first, so a path segment cannot walk out of the directory or prefix. An
    /// empty secret is an error, never a key.
    pub async fn secret(&self, provider: &str) -> Result<Option<Secret>, SecretError> {
        if !valid_provider(provider) {
            return Ok(None);
        }
        let found = match self.cached(provider) {
            Some(found) => found,
            None => {
                let found = self.read(provider).await?;
                if !matches!(self.backend, Backend::Memory(_))
                    && let Ok(mut cache) = self.cache.lock()
                {
                    cache.insert(provider.to_string(), (found.clone(), Instant::now()));
                }
                found
            }
        };
        match found {
            Some(secret) if secret.expose().is_empty() => Err(SecretError::Empty {
                provider: provider.to_string(),
            }),
            found => Ok(found),
        }
    }

    fn cached(&self, provider: &str) -> Option<Option<Secret>> {
        let cache = self.cache.lock().ok()?;
        let (found, at) = cache.get(provider)?;
        (at.elapsed() < SECRET_CACHE_FOR).then(|| found.clone())
    }

    async fn read(&self, provider: &str) -> Result<Option<Secret>, SecretError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        match &self.backend {
            Backend::Memory(map) => Ok(map.get(provider).cloned()),
            Backend::Files { dir } => match tokio::fs::read_to_string(dir.join(provider)).await {
                Ok(text) => Ok(Some(Secret::new(text.trim().as_bytes()))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(SecretError::Unavailable {
                    provider: provider.to_string(),
                    message: e.to_string(),
                }),
            },
            Backend::Ssm { client, prefix } => {
                let out = client
                    .get_parameter()
                    .name(format!("{prefix}/{provider}"))
                    .with_decryption(true)
                    .send()
                    .await;
                match out {
                    Ok(out) => Ok(out
                        .parameter
                        .and_then(|p| p.value)
                        .map(|value| Secret::new(value.into_bytes()))),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_parameter_not_found()) =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(SecretError::Unavailable {
                        provider: provider.to_string(),
                        message: aws_sdk_ssm::error::DisplayErrorContext(&e).to_string(),
                    }),
                }
            }
        }
    }
}

/// The longest provider name (the webhook path's `{provider}` segment).
pub const MAX_PROVIDER_LEN: usize = 64;

/// 1 to [`MAX_PROVIDER_LEN`] characters of `a-z 0-9 - _`.
pub fn valid_provider(provider: &str) -> bool {
    !provider.is_empty()
        && provider.len() <= MAX_PROVIDER_LEN
        && provider
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("callbacks-{name}-{}", std::process::id()))
    }

    #[tokio::test]
    async fn files_and_memory_sources() {
        let dir = temp_dir("secrets");
        tokio::fs::create_dir_all(&dir).await.ok();
        tokio::fs::write(dir.join("acme"), "s3cret\n").await.ok();
        let files = SecretSource::files(dir.clone());
        assert_eq!(
            files.secret("acme").await.ok().flatten(),
            Some(Secret::new("s3cret"))
        );
        assert_eq!(files.secret("nobody").await.ok().flatten(), None);
        assert_eq!(files.secret("../acme").await.ok().flatten(), None);
        let memory = SecretSource::single("acme", Secret::new("x"));
        assert_eq!(
            memory.secret("acme").await.ok().flatten(),
            Some(Secret::new("x"))
        );
        assert_eq!(format!("{:?}", Secret::new("x")), "Secret(..)");
        tokio::fs::remove_dir_all(&dir).await.ok();
    }

    #[tokio::test]
    async fn an_empty_secret_is_refused_when_loaded() {
        let memory = SecretSource::single("acme", Secret::new(""));
        assert!(matches!(
            memory.secret("acme").await,
            Err(SecretError::Empty { provider }) if provider == "acme"
        ));
        let dir = temp_dir("empty-secret");
        tokio::fs::create_dir_all(&dir).await.ok();
        // Whitespace only: trimmed, it is empty.
        tokio::fs::write(dir.join("acme"), " \n").await.ok();
        let files = SecretSource::files(dir.clone());
        for _ in 0..2 {
            assert!(matches!(
                files.secret("acme").await,
                Err(SecretError::Empty { .. })
            ));
        }
        tokio::fs::remove_dir_all(&dir).await.ok();
    }

    #[tokio::test]
    async fn a_missing_secret_is_read_once_then_cached() {
        let dir = temp_dir("missing-secret");
        tokio::fs::create_dir_all(&dir).await.ok();
        let files = SecretSource::files(dir.clone());
        for _ in 0..100 {
            assert_eq!(files.secret("acme").await.ok().flatten(), None);
        }
        assert_eq!(files.backend_reads(), 1, "the miss is cached");
        // Invalid names never reach the backend.
        for name in ["../etc", "", "UPPER", &"a".repeat(MAX_PROVIDER_LEN + 1)] {
            assert_eq!(files.secret(name).await.ok().flatten(), None);
        }
        assert_eq!(files.backend_reads(), 1);
        tokio::fs::remove_dir_all(&dir).await.ok();
    }
}
