//! `SECURITY.md`'s limits table is the code's: every row names the constant enforcing it,
//! with its value.

use std::collections::BTreeMap;
use std::path::Path;

/// Every documented limit: the constant's path as the table writes it, and its value
/// (sizes and counts as they are, durations in seconds, times as Unix seconds).
fn limits() -> BTreeMap<&'static str, i128> {
    use contracts::callbacks::signature;
    use contracts::jobs as cj;
    use contracts::{frames, timestamp};
    use fleet::cost::bounds as cost;
    use simulation::models::exec;
    let n = |v: usize| v as i128;
    let secs = |d: std::time::Duration| i128::from(d.as_secs());
    BTreeMap::from([
        ("jobs::MAX_BODY_BYTES", n(jobs::MAX_BODY_BYTES)),
        ("contracts::jobs::MAX_JOB_ID_LEN", n(cj::MAX_JOB_ID_LEN)),
        ("contracts::jobs::MAX_MODEL_LEN", n(cj::MAX_MODEL_LEN)),
        ("contracts::jobs::MAX_PARAMS_BYTES", n(cj::MAX_PARAMS_BYTES)),
        (
            "contracts::jobs::MAX_IDEMPOTENCY_KEY_LEN",
            n(cj::MAX_IDEMPOTENCY_KEY_LEN),
        ),
        (
            "contracts::jobs::MAX_REQUESTER_LEN",
            n(cj::MAX_REQUESTER_LEN),
        ),
        (
            "contracts::models::MAX_DAYS",
            i128::from(contracts::models::MAX_DAYS),
        ),
        (
            "contracts::models::MAX_RUNS",
            i128::from(contracts::models::MAX_RUNS),
        ),
        (
            "contracts::models::MAX_DURATION_MS",
            i128::from(contracts::models::MAX_DURATION_MS),
        ),
        ("jobs::RESULT_URL_TTL", secs(jobs::RESULT_URL_TTL)),
        (
            "fleet::cmd::jobs::MAX_RESULT_BYTES",
            i128::from(fleet::cmd::jobs::MAX_RESULT_BYTES),
        ),
        (
            "simulation::models::exec::MAX_STDIN_BYTES",
            n(exec::MAX_STDIN_BYTES),
        ),
        (
            "simulation::models::exec::MAX_STDOUT_BYTES",
            n(exec::MAX_STDOUT_BYTES),
        ),
        (
            "simulation::models::exec::MAX_SUMMARY_BYTES",
            n(exec::MAX_SUMMARY_BYTES),
        ),
        ("simulation::models::exec::MAX_ARGS", n(exec::MAX_ARGS)),
        (
            "simulation::models::exec::MAX_ARG_BYTES",
            n(exec::MAX_ARG_BYTES),
        ),
        (
            "simulation::models::exec::MAX_TIMEOUT",
            secs(exec::MAX_TIMEOUT),
        ),
        ("jobs::MAX_QUERY_BYTES", n(jobs::MAX_QUERY_BYTES)),
        ("jobs::MAX_NEXT_TOKEN_LEN", n(jobs::MAX_NEXT_TOKEN_LEN)),
        ("jobs::MAX_PAGE_SIZE", n(jobs::MAX_PAGE_SIZE)),
        (
            "contracts::frames::GATEWAY_MESSAGE_BYTES",
            n(frames::GATEWAY_MESSAGE_BYTES),
        ),
        (
            "contracts::frames::MAX_FRAME_BYTES",
            n(frames::MAX_FRAME_BYTES),
        ),
        (
            "contracts::frames::MAX_CLIENT_MESSAGE_BYTES",
            n(frames::MAX_CLIENT_MESSAGE_BYTES),
        ),
        (
            "contracts::frames::MAX_CHANNEL_NAME_BYTES",
            n(frames::MAX_CHANNEL_NAME_BYTES),
        ),
        (
            "contracts::frames::MAX_SINCE",
            i128::from(frames::MAX_SINCE),
        ),
        (
            "contracts::frames::MAX_CHANNELS_PER_CONNECTION",
            n(frames::MAX_CHANNELS_PER_CONNECTION),
        ),
        (
            "contracts::callbacks::signature::MAX_HEADER_LEN",
            n(signature::MAX_HEADER_LEN),
        ),
        (
            "contracts::callbacks::signature::MAX_CANDIDATES",
            n(signature::MAX_CANDIDATES),
        ),
        (
            "contracts::callbacks::signature::CANDIDATE_HEX_LEN",
            n(signature::CANDIDATE_HEX_LEN),
        ),
        (
            "contracts::callbacks::signature::TOLERANCE",
            secs(signature::TOLERANCE),
        ),
        (
            "callbacks::DEFAULT_MAX_BODY_BYTES",
            n(callbacks::DEFAULT_MAX_BODY_BYTES),
        ),
        (
            "callbacks::MAX_CONFIGURABLE_BODY_BYTES",
            n(callbacks::MAX_CONFIGURABLE_BODY_BYTES),
        ),
        (
            "callbacks::MAX_DELIVERY_ID_LEN",
            n(callbacks::MAX_DELIVERY_ID_LEN),
        ),
        (
            "callbacks::MAX_EXTERNAL_ID_LEN",
            n(callbacks::MAX_EXTERNAL_ID_LEN),
        ),
        ("callbacks::MAX_STATUS_LEN", n(callbacks::MAX_STATUS_LEN)),
        (
            "callbacks::secrets::MAX_PROVIDER_LEN",
            n(callbacks::secrets::MAX_PROVIDER_LEN),
        ),
        (
            "callbacks::secrets::SECRET_CACHE_FOR",
            secs(callbacks::secrets::SECRET_CACHE_FOR),
        ),
        (
            "callbacks::MAX_TASK_OUTPUT_BYTES",
            n(callbacks::MAX_TASK_OUTPUT_BYTES),
        ),
        (
            "callbacks::MAX_FAILURE_CAUSE_CHARS",
            n(callbacks::MAX_FAILURE_CAUSE_CHARS),
        ),
        (
            "callbacks::MAX_TASK_TOKEN_LEN",
            n(callbacks::MAX_TASK_TOKEN_LEN),
        ),
        (
            "callbacks::MAX_TIMEOUT_SECONDS",
            i128::from(callbacks::MAX_TIMEOUT_SECONDS),
        ),
        (
            "contracts::timestamp::MAX_TEXT_LEN",
            n(timestamp::MAX_TEXT_LEN),
        ),
        (
            "contracts::timestamp::EARLIEST",
            i128::from(timestamp::EARLIEST.unix_timestamp()),
        ),
        (
            "contracts::timestamp::LATEST",
            i128::from(timestamp::LATEST.unix_timestamp()),
        ),
        ("auth::MAX_JWKS_BYTES", n(auth::MAX_JWKS_BYTES)),
        ("auth::MAX_KEYS", n(auth::MAX_KEYS)),
        ("auth::MAX_GROUPS", n(auth::MAX_GROUPS)),
        ("auth::MAX_GROUP_LEN", n(auth::MAX_GROUP_LEN)),
        (
            "fleet_ops::pattern::MAX_PATTERN_LEN",
            n(fleet_ops::pattern::MAX_PATTERN_LEN),
        ),
        (
            "fleet::console::limits::MAX_TOKEN_BYTES",
            n(fleet::console::limits::MAX_TOKEN_BYTES),
        ),
        (
            "fleet::console::limits::MAX_QUERY_BYTES",
            n(fleet::console::limits::MAX_QUERY_BYTES),
        ),
        (
            "fleet::console::limits::MAX_BODY_BYTES",
            n(fleet::console::limits::MAX_BODY_BYTES),
        ),
        (
            "fleet::console::limits::MAX_NAME_LEN",
            n(fleet::console::limits::MAX_NAME_LEN),
        ),
        (
            "fleet::console::limits::MAX_EXECUTION_LEN",
            n(fleet::console::limits::MAX_EXECUTION_LEN),
        ),
        (
            "fleet::console::limits::MAX_TASK_TOKEN_LEN",
            n(fleet::console::limits::MAX_TASK_TOKEN_LEN),
        ),
        (
            "fleet::console::limits::MAX_FILTER_LEN",
            n(fleet::console::limits::MAX_FILTER_LEN),
        ),
        (
            "fleet::console::limits::MAX_ERROR_LEN",
            n(fleet::console::limits::MAX_ERROR_LEN),
        ),
        (
            "fleet::console::limits::MAX_CAUSE_LEN",
            n(fleet::console::limits::MAX_CAUSE_LEN),
        ),
        (
            "fleet::console::limits::MAX_PEEK",
            n(fleet::console::limits::MAX_PEEK),
        ),
        (
            "fleet::console::limits::MAX_LIST",
            n(fleet::console::limits::MAX_LIST),
        ),
        (
            "fleet::console::limits::MAX_REDRIVE",
            n(fleet::console::limits::MAX_REDRIVE),
        ),
        (
            "fleet::console::limits::DEFAULT_REDRIVE_RATE",
            i128::from(fleet::console::limits::DEFAULT_REDRIVE_RATE),
        ),
        (
            "fleet::console::limits::MAX_REDRIVE_RATE",
            i128::from(fleet::console::limits::MAX_REDRIVE_RATE),
        ),
        (
            "local_host::MAX_REQUEST_BYTES",
            n(local_host::MAX_REQUEST_BYTES),
        ),
        (
            "local_host::MAX_MESSAGE_BYTES",
            n(local_host::MAX_MESSAGE_BYTES),
        ),
        ("local_host::MAX_LIST_ITEMS", n(local_host::MAX_LIST_ITEMS)),
        (
            "fleet::cost::bounds::MAX_PER_MONTH",
            i128::from(cost::MAX_PER_MONTH),
        ),
        (
            "fleet::cost::bounds::MAX_JOB_SECONDS",
            i128::from(cost::MAX_JOB_SECONDS),
        ),
        (
            "fleet::cost::bounds::MAX_PROGRESS_PER_JOB",
            i128::from(cost::MAX_PROGRESS_PER_JOB),
        ),
        (
            "fleet::cost::bounds::MAX_SUBSCRIBERS",
            i128::from(cost::MAX_SUBSCRIBERS),
        ),
        (
            "fleet::cost::bounds::MAX_CONNECTED_HOURS",
            i128::from(cost::MAX_CONNECTED_HOURS),
        ),
        (
            "fleet::cost::bounds::MAX_WORKER_VCPU",
            i128::from(cost::MAX_WORKER_VCPU),
        ),
        (
            "fleet::cost::bounds::MAX_WORKER_MEMORY_GB",
            i128::from(cost::MAX_WORKER_MEMORY_GB),
        ),
        (
            "fleet::cost::bounds::MAX_PEAK_FACTOR",
            i128::from(cost::MAX_PEAK_FACTOR),
        ),
        (
            "fleet::cost::bounds::MAX_MEASURE_JOBS",
            n(cost::MAX_MEASURE_JOBS),
        ),
        (
            "fleet::cmd::cost::MAX_MEASURE_WORKERS",
            n(fleet::cmd::cost::MAX_MEASURE_WORKERS),
        ),
    ])
}

/// The table's rows: `| boundary | limit | value | `constant` |`.
fn documented() -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../SECURITY.md");
    let text = std::fs::read_to_string(&path).expect("SECURITY.md is readable");
    text.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
            let [_, _, value, constant] = cells[..] else {
                return None;
            };
            let constant = constant.trim().strip_prefix('`')?.strip_suffix('`')?;
            constant
                .contains("::")
                .then(|| (constant.to_owned(), value.trim().to_owned()))
        })
        .collect()
}

#[test]
fn the_limits_table_in_security_md_matches_the_code() {
    let code = limits();
    let table = documented();
    let mut problems = Vec::new();
    for (constant, value) in &code {
        match table.get(*constant) {
            None => problems.push(format!("{constant} ({value}) is missing from the table")),
            Some(written) if *written != value.to_string() => problems.push(format!(
                "{constant}: the table says {written}, the code {value}"
            )),
            Some(_) => {}
        }
    }
    for constant in table.keys() {
        if !code.contains_key(constant.as_str()) {
            problems.push(format!(
                "{constant} is in the table but not checked by tests/it/security.rs"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "SECURITY.md is stale:\n{}",
        problems.join("\n")
    );
}
