//! The `export` line `fleet dev` prints for other shells.

use std::collections::BTreeMap;

/// The AWS CLI v1 and some SDKs read only `AWS_DEFAULT_REGION`: without it
/// `aws events list-event-buses` answered "You must specify a region".
#[tokio::test]
async fn the_exports_set_the_region_both_ways_and_point_at_the_emulator() {
    let emulator = emulator::test_emulator().await;
    let line = emulator.exports();
    let vars: BTreeMap<&str, &str> = line
        .strip_prefix("export ")
        .expect("an export line")
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .collect();
    assert_eq!(vars.get("AWS_REGION"), Some(&emulator::REGION), "{line}");
    assert_eq!(
        vars.get("AWS_DEFAULT_REGION"),
        Some(&emulator::REGION),
        "{line}"
    );
    assert_eq!(
        vars.get("AWS_ENDPOINT_URL").copied(),
        Some(emulator.endpoint()),
        "{line}"
    );
    assert!(vars.contains_key("AWS_ACCESS_KEY_ID") && vars.contains_key("AWS_SECRET_ACCESS_KEY"));
}
