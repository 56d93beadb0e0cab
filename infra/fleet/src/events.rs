//! `fleet events put`: publishes one event through the shared publisher.

use std::path::Path;

use anyhow::Context as _;
use contracts::Entry;

use crate::UsageError;

/// Reads `--detail`: inline JSON, or `@path` to a file holding it.
pub fn read_detail(arg: &str) -> anyhow::Result<serde_json::Value> {
    let (text, origin) = match arg.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(Path::new(path))
                .map_err(|e| UsageError(format!("--detail: cannot read {path}: {e}")))?,
            path.to_string(),
        ),
        None => (arg.to_string(), "--detail".to_string()),
    };
    serde_json::from_str(&text).map_err(|e| {
        UsageError(format!(
            "--detail: {origin} is not valid JSON ({e}); pass a JSON object, e.g. --detail '{{\"model\":\"sir\",\"params\":{{}}}}'"
        ))
        .into()
    })
}

/// Publishes one event on `bus`; returns its EventBridge id.
pub async fn put(
    sdk: &aws_config::SdkConfig,
    bus: &str,
    source: &str,
    detail_type: &str,
    detail: &serde_json::Value,
) -> anyhow::Result<String> {
    let entry = Entry::new(source, detail_type, detail).map_err(|e| UsageError(e.to_string()))?;
    let publisher = bus::Publisher::from_sdk(sdk, bus);
    publisher
        .put_one(entry)
        .await
        .with_context(|| format!("publishing to the bus {bus}"))
}
