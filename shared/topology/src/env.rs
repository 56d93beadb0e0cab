//! The environment variable names the topology gives functions and services that more
//! than one service reads. A service's own names live in its `service::env`.

/// The stage every resource name carries.
pub const STAGE: &str = "STAGE";
/// The event bus's name.
pub const BUS: &str = "BUS";
/// The ARN of the state machine a function starts or stops.
pub const STATE_MACHINE_ARN: &str = "STATE_MACHINE_ARN";
/// The identity provider's token issuer.
pub const JWT_ISSUER: &str = "JWT_ISSUER";
/// The audience tokens must carry.
pub const JWT_AUDIENCE: &str = "JWT_AUDIENCE";
/// Where the identity provider publishes its keys.
pub const JWKS_URL: &str = "JWKS_URL";
