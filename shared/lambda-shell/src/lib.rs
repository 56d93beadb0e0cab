//! The shell of every Lambda `bootstrap` binary: the binaries are thin, and this is the
//! part they would otherwise each repeat. Only binaries call it (libraries take config).

use tracing_subscriber::EnvFilter;

/// A required environment variable; the error names it.
pub fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
}

/// JSON logs on stdout (what CloudWatch Logs ingests), filtered by `RUST_LOG`
/// (default `info`).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_current_span(false)
        .init();
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_missing_variable_is_named() {
        let err = super::env("FLEET_SURELY_UNSET_VARIABLE").expect_err("unset");
        assert!(err.contains("FLEET_SURELY_UNSET_VARIABLE"), "{err}");
    }
}
