//! Verifies a bearer token: RS256 signature, time window, issuer, audience.

use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Deserializer, Serialize};

use crate::jwks::Jwks;

/// Why a token was refused. The text names the reason for logs; clients only ever see
/// [`AuthError::client_message`], so nothing here helps an attacker probe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("the token is signed by a key the issuer's JWKS does not list")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token is from another issuer")]
    WrongIssuer,
    #[error("the token is for another audience")]
    WrongAudience,
    #[error("the token's token_use is {0:?}, not `id` or `access`")]
    WrongTokenUse(String),
    #[error("the token lacks the `{0}` claim")]
    MissingClaim(String),
    /// The issuer's JWKS could not be fetched: the server's problem, not the caller's.
    #[error("the JWKS is unavailable: {0}")]
    KeySetUnavailable(String),
    /// The configured JWKS is unusable: a deployment mistake.
    #[error("invalid JWKS: {0}")]
    InvalidKeySet(String),
}

impl AuthError {
    /// The only text a client gets.
    pub fn client_message(&self) -> &'static str {
        "unauthorized"
    }

    /// Whether the failure is the server's (the key set), not the token's: such errors
    /// answer 503 rather than 401, so clients do not throw away a good token.
    pub fn is_server_error(&self) -> bool {
        matches!(
            self,
            AuthError::KeySetUnavailable(_) | AuthError::InvalidKeySet(_)
        )
    }
}

/// A verified token's claims (Cognito ID and access tokens both fit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The caller's stable id; jobs belong to it.
    // `sub`, `iss` and `exp` default so that a token lacking one is reported as a missing
    // claim by the validation rather than as unreadable JSON.
    #[serde(default)]
    pub sub: String,
    #[serde(default)]
    pub iss: String,
    /// One audience or several; ID tokens carry it, Cognito access tokens do not.
    #[serde(default, deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    /// Cognito access tokens name the app client here instead of in `aud`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Cognito: `id` or `access`.
    #[serde(default)]
    pub token_use: Option<String>,
    #[serde(default)]
    pub exp: u64,
    #[serde(default)]
    pub nbf: Option<u64>,
    #[serde(default)]
    pub iat: Option<u64>,
    #[serde(default)]
    pub scope: Option<String>,
    /// Cognito's user-pool groups (`cognito:groups`), e.g. `fleet-ops` for the ops
    /// console. At most [`MAX_GROUPS`] names of at most [`MAX_GROUP_LEN`] bytes each: a
    /// token carrying more is refused as malformed.
    #[serde(
        rename = "cognito:groups",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub groups: Vec<String>,
}

/// The most groups a token may carry (Cognito puts a user in at most 100).
pub const MAX_GROUPS: usize = 100;
/// The longest group name accepted, in bytes (Cognito's limit on a group name).
pub const MAX_GROUP_LEN: usize = 128;

impl Claims {
    /// Whether the token carries the group `name` in `cognito:groups`.
    pub fn in_group(&self, name: &str) -> bool {
        self.groups.iter().any(|g| g == name)
    }
}

/// Refuses a groups claim over [`MAX_GROUPS`] or with a name over [`MAX_GROUP_LEN`].
pub(crate) fn check_groups<S: AsRef<str>>(groups: &[S]) -> Result<(), String> {
    if groups.len() > MAX_GROUPS {
        return Err(format!(
            "cognito:groups has {} groups, more than {MAX_GROUPS}",
            groups.len()
        ));
    }
    if let Some(long) = groups.iter().find(|g| g.as_ref().len() > MAX_GROUP_LEN) {
        return Err(format!(
            "a cognito:groups name is {} bytes, more than {MAX_GROUP_LEN}",
            long.as_ref().len()
        ));
    }
    Ok(())
}

/// What a [`Verifier`] accepts.
#[derive(Debug)]
pub struct VerifierConfig {
    /// The exact `iss`, e.g. `https://cognito-idp.<region>.amazonaws.com/<pool id>`.
    pub issuer: String,
    /// The app client id (Cognito) or API audience the token must be for.
    pub audience: String,
    pub jwks: Jwks,
}

/// Verifies bearer tokens. Build it once per process: it caches the issuer's keys.
#[derive(Debug)]
pub struct Verifier {
    config: VerifierConfig,
    validation: Validation,
}

impl Verifier {
    /// Clock skew tolerated on `exp` and `nbf`.
    pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

    pub fn new(config: VerifierConfig) -> Verifier {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&config.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.validate_nbf = true;
        // The audience is checked below: Cognito access tokens carry `client_id`
        // instead of `aud`, which jsonwebtoken's check does not know about.
        validation.validate_aud = false;
        validation.leeway = Self::DEFAULT_LEEWAY.as_secs();
        Verifier { config, validation }
    }

    /// Tolerates `leeway` of clock skew instead of [`Verifier::DEFAULT_LEEWAY`].
    pub fn with_leeway(mut self, leeway: Duration) -> Verifier {
        self.validation.leeway = leeway.as_secs();
        self
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    pub fn audience(&self) -> &str {
        &self.config.audience
    }

    /// Verifies `token` (without the `Bearer ` prefix) and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(from_jwt)?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Malformed(format!(
                "algorithm {:?}, only RS256 is accepted",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Malformed("the header has no `kid`".to_string()))?;
        let key = self.config.jwks.key(&kid).await?;
        let data =
            jsonwebtoken::decode::<Claims>(token, &key, &self.validation).map_err(from_jwt)?;
        let claims = data.claims;
        if claims.sub.is_empty() {
            return Err(AuthError::MissingClaim("sub".to_string()));
        }
        check_groups(&claims.groups).map_err(AuthError::Malformed)?;
        let audience = &self.config.audience;
        let for_us = if claims.aud.is_empty() {
            claims.client_id.as_deref() == Some(audience.as_str())
        } else {
            claims.aud.iter().any(|a| a == audience)
        };
        if !for_us {
            return Err(AuthError::WrongAudience);
        }
        if let Some(token_use) = &claims.token_use
            && token_use != "id"
            && token_use != "access"
        {
            return Err(AuthError::WrongTokenUse(token_use.clone()));
        }
        Ok(claims)
    }

    /// Verifies the value of an `Authorization` header (`Bearer <token>`).
    pub async fn verify_header(&self, authorization: Option<&str>) -> Result<Claims, AuthError> {
        self.verify(bearer_token(authorization)?).await
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    let value = authorization.ok_or(AuthError::Missing)?.trim();
    if value.is_empty() || value.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Missing);
    }
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| AuthError::Malformed("not `Bearer <token>`".to_string()))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed(format!(
            "scheme {scheme:?}, not Bearer"
        )));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token)
}

fn from_jwt(error: jsonwebtoken::errors::Error) -> AuthError {
    match error.kind() {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim.clone()),
        _ => AuthError::Malformed(error.to_string()),
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}
