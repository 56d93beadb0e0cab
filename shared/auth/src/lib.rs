//! Who is calling: verifies JWT bearer tokens, and issues them for the local stack.
//!
//! [`Verifier`] checks an RS256 token against a JSON Web Key Set (static, or fetched from
//! the issuer and cached by key id): signature, `exp`, `nbf`, `iss`, and the audience
//! (`aud`, or Cognito access tokens' `client_id`), and
//! bounds the groups claim (`cognito:groups`) that [`Claims::in_group`] reads. Every failure is an [`AuthError`] whose
//! text is for logs only: HTTP clients get a bare 401 (see [`AuthError::client_message`]).
//!
//! [`DevIssuer`] stands in for Cognito locally: an RSA key generated once and kept under
//! `.fleet/` (never committed), tokens for any subject (with groups, for the ops console), and the JWKS to serve at
//! `/.well-known/jwks.json`.

mod dev;
mod jwks;
mod verify;

pub use dev::{DEV_AUDIENCE, DEV_ISSUER, DevIssuer, DevIssuerError};
pub use jwks::{Jwks, JwksConfig, MAX_JWKS_BYTES, MAX_KEYS};
pub use verify::{
    AuthError, Claims, MAX_GROUP_LEN, MAX_GROUPS, Verifier, VerifierConfig, bearer_token,
};
