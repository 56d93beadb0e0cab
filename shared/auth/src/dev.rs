//! The local stack's token issuer: Cognito's stand-in for `fleet dev` and the tests.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};

use crate::jwks::Jwks;
use crate::verify::{AuthError, VerifierConfig, check_groups};

/// The issuer of locally issued tokens, unless [`DevIssuer::with_issuer`] says otherwise.
pub const DEV_ISSUER: &str = "http://127.0.0.1/dev";
/// The audience of locally issued tokens.
pub const DEV_AUDIENCE: &str = "fleet-local";

const KEY_BITS: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum DevIssuerError {
    #[error("I/O error at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the dev issuer's key at {path} is not a PKCS#8 RSA key ({detail}); delete it to get a new one"
    )]
    BadKey { path: PathBuf, detail: String },
    #[error("could not generate an RSA key: {0}")]
    Generate(String),
    #[error("could not sign a token: {0}")]
    Sign(String),
    #[error("invalid groups: {0}")]
    Groups(String),
}

/// Issues RS256 tokens with a key generated once per workspace.
pub struct DevIssuer {
    issuer: String,
    audience: String,
    kid: String,
    encoding: EncodingKey,
    public: RsaPublicKey,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl DevIssuer {
    /// Loads the key at `path` (e.g. `.fleet/dev-issuer.pem`), generating and storing it
    /// (mode 0600) on first use. Processes starting together serialize on `<path>.lock`,
    /// so they all end up with the same key.
    pub fn load_or_create(path: impl AsRef<Path>) -> Result<DevIssuer, DevIssuerError> {
        let path = path.as_ref();
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| DevIssuerError::Io { path: p, source }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let lock_path = path.with_extension("lock");
        let lock = File::create(&lock_path).map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        match fs::read_to_string(path) {
            Ok(pem) => DevIssuer::from_pem(&pem).map_err(|e| match e {
                DevIssuerError::BadKey { detail, .. } => DevIssuerError::BadKey {
                    path: path.to_path_buf(),
                    detail,
                },
                other => other,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = generate_key()?;
                let pem = key
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| DevIssuerError::Generate(e.to_string()))?;
                write_private(path, pem.as_bytes())?;
                tracing::info!(path = %path.display(), "generated the dev issuer's key");
                DevIssuer::from_key(key)
            }
            Err(e) => Err(io(path)(e)),
        }
    }

    /// A dev issuer with a fresh key kept only in memory.
    pub fn generate() -> Result<DevIssuer, DevIssuerError> {
        DevIssuer::from_key(generate_key()?)
    }

    /// A dev issuer from a PKCS#8 PEM private key.
    pub fn from_pem(pem: &str) -> Result<DevIssuer, DevIssuerError> {
        let key = RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| DevIssuerError::BadKey {
            path: PathBuf::new(),
            detail: e.to_string(),
        })?;
        DevIssuer::from_key(key)
    }

    fn from_key(key: RsaPrivateKey) -> Result<DevIssuer, DevIssuerError> {
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| DevIssuerError::Generate(e.to_string()))?;
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|e| DevIssuerError::Generate(e.to_string()))?;
        let public = key.to_public_key();
        // The key id is derived from the modulus, so every process loading the same key
        // agrees on it, and a new key gets a new id.
        let modulus = public.n().to_bytes_be();
        let kid = format!(
            "dev-{}",
            URL_SAFE_NO_PAD.encode(&modulus[..12.min(modulus.len())])
        );
        Ok(DevIssuer {
            issuer: DEV_ISSUER.to_string(),
            audience: DEV_AUDIENCE.to_string(),
            kid,
            encoding,
            public,
        })
    }

    /// Uses `issuer` as `iss`, e.g. `http://127.0.0.1:<port>/dev` for the local host.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> DevIssuer {
        self.issuer = issuer.into();
        self
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A token for `sub`, valid from now for `ttl`, shaped like a Cognito ID token.
    pub fn issue(&self, sub: &str, ttl: Duration) -> Result<String, DevIssuerError> {
        self.issue_with_groups::<&str>(sub, &[], ttl)
    }

    /// A token for `sub` in the user-pool `groups` (`cognito:groups`, e.g. `fleet-ops`),
    /// within the bounds the verifier applies.
    pub fn issue_with_groups<S: AsRef<str>>(
        &self,
        sub: &str,
        groups: &[S],
        ttl: Duration,
    ) -> Result<String, DevIssuerError> {
        check_groups(groups).map_err(DevIssuerError::Groups)?;
        let now = unix_now();
        let mut claims = json!({
            "sub": sub,
            "iss": self.issuer,
            "aud": self.audience,
            "token_use": "id",
            "iat": now,
            "nbf": now,
            "exp": now + ttl.as_secs(),
        });
        if !groups.is_empty()
            && let Some(object) = claims.as_object_mut()
        {
            let groups: Vec<&str> = groups.iter().map(AsRef::as_ref).collect();
            object.insert("cognito:groups".to_owned(), json!(groups));
        }
        self.sign(&claims)
    }

    /// Signs arbitrary `claims` with this issuer's key: for tests that need expired,
    /// foreign or otherwise odd tokens.
    pub fn sign(&self, claims: &Value) -> Result<String, DevIssuerError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| DevIssuerError::Sign(e.to_string()))
    }

    /// The JWKS to serve at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> Value {
        json!({
            "keys": [{
                "kty": "RSA",
                "use": "sig",
                "alg": "RS256",
                "kid": self.kid,
                "n": URL_SAFE_NO_PAD.encode(self.public.n().to_bytes_be()),
                "e": URL_SAFE_NO_PAD.encode(self.public.e().to_bytes_be()),
            }]
        })
    }

    /// A verifier accepting this issuer's tokens, with the key set built in.
    pub fn verifier_config(&self) -> Result<VerifierConfig, AuthError> {
        Ok(VerifierConfig {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            jwks: Jwks::from_json(&self.jwks())?,
        })
    }
}

fn generate_key() -> Result<RsaPrivateKey, DevIssuerError> {
    RsaPrivateKey::new(&mut rsa::rand_core::OsRng, KEY_BITS)
        .map_err(|e| DevIssuerError::Generate(e.to_string()))
}

/// Writes `bytes` to `path` readable by the owner only, atomically (temp file + rename).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), DevIssuerError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| DevIssuerError::Io { path: p, source }
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
