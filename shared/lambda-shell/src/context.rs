//! What a function is built from.

use std::collections::BTreeMap;
use std::sync::Arc;

use auth::{Jwks, Verifier, VerifierConfig};
use topology::env::{JWKS_URL, JWT_AUDIENCE, JWT_ISSUER};

/// A function could not be built: a variable of its environment is missing or wrong.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error(
        "environment variable {name} is not set: declare it for this function in its service's topology (`service.rs`) and deploy from that, or set it"
    )]
    Missing { name: String },
    #[error("environment variable {name}: {reason}")]
    Invalid { name: String, reason: String },
}

/// The SDK configuration, the function's environment variables, and values provided in
/// place of the environment (the local host's in-process clients and verifier).
#[derive(Clone)]
pub struct Context {
    sdk: aws_config::SdkConfig,
    vars: BTreeMap<String, String>,
    provided: http::Extensions,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may be secrets: only the names are shown.
        f.debug_struct("Context")
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context with exactly these variables (the local host resolves them from the
    /// topology and the deployment).
    pub fn new(
        sdk: aws_config::SdkConfig,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Context {
        Context {
            sdk,
            vars: vars.into_iter().collect(),
            provided: http::Extensions::new(),
        }
    }

    /// The context of a Lambda process: the SDK configuration and variables of its
    /// environment.
    pub async fn from_process() -> Context {
        let sdk = aws_config::load_from_env().await;
        Context::new(sdk, std::env::vars())
    }

    /// Provides `value` to the functions built with this context, in place of what they
    /// would build from their environment (see [`Context::provided`]).
    pub fn with<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Context {
        self.provided.insert(value);
        self
    }

    /// Provides the verifier functions get from [`Context::verifier`].
    pub fn with_verifier(self, verifier: Verifier) -> Context {
        self.with(Arc::new(verifier))
    }

    pub fn sdk(&self) -> &aws_config::SdkConfig {
        &self.sdk
    }

    /// A required variable; the error names it.
    pub fn var(&self, name: &str) -> Result<String, ShellError> {
        self.optional(name).ok_or_else(|| ShellError::Missing {
            name: name.to_owned(),
        })
    }

    /// A variable the function can do without.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    /// The variables whose names start with `prefix`, with the prefix removed.
    pub fn vars_with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.vars
            .iter()
            .filter_map(move |(k, v)| Some((k.strip_prefix(prefix)?, v.as_str())))
    }

    /// A value provided with [`Context::with`].
    pub fn provided<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.provided.get::<T>().cloned()
    }

    /// The bearer-token verifier: the one provided, or one for the identity provider the
    /// `JWT_ISSUER`, `JWT_AUDIENCE` and `JWKS_URL` variables name.
    pub fn verifier(&self) -> Result<Arc<Verifier>, ShellError> {
        if let Some(verifier) = self.provided::<Arc<Verifier>>() {
            return Ok(verifier);
        }
        let jwks_url = self.var(JWKS_URL)?;
        let jwks = Jwks::from_url(&jwks_url).map_err(|e| ShellError::Invalid {
            name: JWKS_URL.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Arc::new(Verifier::new(VerifierConfig {
            issuer: self.var(JWT_ISSUER)?,
            audience: self.var(JWT_AUDIENCE)?,
            jwks,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(vars: &[(&str, &str)]) -> Context {
        let sdk = aws_config::SdkConfig::builder().build();
        Context::new(
            sdk,
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn a_missing_variable_is_named() {
        let err = context(&[]).var("JOBS_TABLE").expect_err("unset");
        assert!(err.to_string().contains("JOBS_TABLE"), "{err}");
    }

    #[test]
    fn a_verifier_without_its_settings_names_the_first_missing_one() {
        let err = context(&[]).verifier().expect_err("no settings");
        assert!(err.to_string().contains("JWKS_URL"), "{err}");
        let err = context(&[("JWKS_URL", "https://issuer.example/jwks.json")])
            .verifier()
            .expect_err("no issuer");
        assert!(err.to_string().contains("JWT_ISSUER"), "{err}");
    }

    #[test]
    fn a_provided_value_is_returned_and_prefixes_are_stripped() {
        let ctx = context(&[("CALLBACK_SECRET_ACME", "s1"), ("OTHER", "x")]).with(7_u32);
        assert_eq!(ctx.provided::<u32>(), Some(7));
        assert_eq!(ctx.provided::<u64>(), None);
        let found: Vec<_> = ctx.vars_with_prefix("CALLBACK_SECRET_").collect();
        assert_eq!(found, vec![("ACME", "s1")]);
    }
}
