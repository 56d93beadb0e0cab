//! Where the per-provider webhook secrets come from: SSM Parameter Store on AWS
//! (SecureString `<prefix>/<provider>`), files or memory locally. Binaries decide which
//! from their environment; this module never reads it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// The secrets of every provider.
pub enum SecretSource {
    /// Fixed secrets (tests, the local stack; a binary may fill it from
    /// `CALLBACK_SECRET_<PROVIDER>` variables).
    Memory(BTreeMap<String, Secret>),
    /// One file per provider, `<dir>/<provider>`, its content trimmed.
    Files { dir: PathBuf },
    /// SSM Parameter Store: `<prefix>/<provider>`, decrypted, cached for `cache_for`
    /// so a webhook burst costs one `GetParameter`.
    Ssm {
        client: aws_sdk_ssm::Client,
        prefix: String,
        cache_for: Duration,
        cache: Mutex<HashMap<String, (Secret, Instant)>>,
    },
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Memory(map) => f.debug_tuple("Memory").field(&map.keys()).finish(),
            SecretSource::Files { dir } => f.debug_struct("Files").field("dir", dir).finish(),
            SecretSource::Ssm { prefix, .. } => {
                f.debug_struct("Ssm").field("prefix", prefix).finish()
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("reading the secret of provider {provider}: {message}")]
    Unavailable { provider: String, message: String },
}

impl SecretSource {
    /// One provider's secret in memory.
    pub fn single(provider: &str, secret: Secret) -> SecretSource {
        SecretSource::Memory(BTreeMap::from([(provider.to_string(), secret)]))
    }

    pub fn ssm(client: aws_sdk_ssm::Client, prefix: impl Into<String>) -> SecretSource {
        SecretSource::Ssm {
            client,
            prefix: prefix.into().trim_end_matches('/').to_string(),
            cache_for: Duration::from_secs(300),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The secret of `provider`; `None` when the provider is unknown. Provider names are
    /// checked first, so a path segment cannot walk out of the directory or prefix.
    pub async fn secret(&self, provider: &str) -> Result<Option<Secret>, SecretError> {
        if !valid_provider(provider) {
            return Ok(None);
        }
        match self {
            SecretSource::Memory(map) => Ok(map.get(provider).cloned()),
            SecretSource::Files { dir } => {
                match tokio::fs::read_to_string(dir.join(provider)).await {
                    Ok(text) => Ok(Some(Secret::new(text.trim().as_bytes()))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(SecretError::Unavailable {
                        provider: provider.to_string(),
                        message: e.to_string(),
                    }),
                }
            }
            SecretSource::Ssm {
                client,
                prefix,
                cache_for,
                cache,
            } => {
                if let Some(secret) = cached(cache, provider, *cache_for) {
                    return Ok(Some(secret));
                }
                let name = format!("{prefix}/{provider}");
                let out = client
                    .get_parameter()
                    .name(&name)
                    .with_decryption(true)
                    .send()
                    .await;
                let value = match out {
                    Ok(out) => out.parameter.and_then(|p| p.value),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_parameter_not_found()) =>
                    {
                        None
                    }
                    Err(e) => {
                        return Err(SecretError::Unavailable {
                            provider: provider.to_string(),
                            message: aws_sdk_ssm::error::DisplayErrorContext(&e).to_string(),
                        });
                    }
                };
                let Some(value) = value else { return Ok(None) };
                let secret = Secret::new(value.into_bytes());
                if let Ok(mut cache) = cache.lock() {
                    cache.insert(provider.to_string(), (secret.clone(), Instant::now()));
                }
                Ok(Some(secret))
            }
        }
    }
}

fn cached(
    cache: &Mutex<HashMap<String, (Secret, Instant)>>,
    provider: &str,
    cache_for: Duration,
) -> Option<Secret> {
    let cache = cache.lock().ok()?;
    let (secret, at) = cache.get(provider)?;
    (at.elapsed() < cache_for).then(|| secret.clone())
}

/// 1 to 64 characters of `a-z 0-9 - _`.
pub fn valid_provider(provider: &str) -> bool {
    !provider.is_empty()
        && provider.len() <= 64
        && provider
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_and_memory_sources() {
        let dir = std::env::temp_dir().join(format!("callbacks-secrets-{}", std::process::id()));
        tokio::fs::create_dir_all(&dir).await.ok();
        tokio::fs::write(dir.join("acme"), "s3cret\n").await.ok();
        let files = SecretSource::Files { dir: dir.clone() };
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
}
