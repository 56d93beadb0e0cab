//! `fleet cost`: the flags' errors, the priced table, and `--measure` counting the same
//! requests per job run after run.

use std::process::{Command, Output};

use serde_json::Value;

fn fleet_cost(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleet"))
        .arg("cost")
        .args(args)
        .arg("--home")
        .arg(emulator::default_home())
        .env("RUST_LOG", "warn")
        .env_remove("FLEET_STAGE")
        .output()
        .expect("fleet cost runs")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "fleet cost printed no JSON ({e}); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn a_region_other_than_us_east_1_is_refused_naming_the_flag_and_the_fix() {
    let out = fleet_cost(&["--region", "eu-west-1"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--region eu-west-1") && stderr.contains("--region us-east-1"),
        "{stderr}"
    );
}

#[test]
fn a_flag_past_its_bound_is_refused_naming_it() {
    let out = fleet_cost(&["--connected-hours", "1000"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--connected-hours 1000"), "{stderr}");
}

#[test]
fn every_service_of_the_topology_gets_a_line_and_the_total_adds_them_up() {
    let out = fleet_cost(&["--json", "--jobs-per-month", "100000"]);
    assert!(out.status.success());
    let report = json(&out);
    let lines = report["estimate"]["lines"].as_array().expect("lines");
    let services: std::collections::BTreeSet<&str> =
        lines.iter().filter_map(|l| l["service"].as_str()).collect();
    for service in [
        "EventBridge",
        "SQS",
        "SNS",
        "Step Functions",
        "Lambda",
        "DynamoDB",
        "S3",
        "API Gateway",
        "Fargate",
        "CloudWatch Logs",
    ] {
        assert!(
            services.contains(service),
            "{service} missing: {services:?}"
        );
    }
    let sum: f64 = lines.iter().filter_map(|l| l["usd"].as_f64()).sum();
    let total = report["estimate"]["totalUsd"].as_f64().expect("a total");
    assert!(
        (sum - total).abs() < 1e-9 && total > 0.0,
        "{sum} vs {total}"
    );
    assert!(report["estimate"]["alwaysOn"]["totalUsd"].as_f64() > Some(0.0));
}

/// Two runs of `fleet cost --measure 20` count the same requests per job, within 10%:
/// every operation called at least once a job, and every billed total.
#[test]
fn measuring_twice_gives_the_same_requests_per_job_within_ten_percent() {
    let run = || {
        let out = fleet_cost(&["--json", "--measure", "20"]);
        assert!(
            out.status.success(),
            "fleet cost --measure failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json(&out)["measurement"].clone()
    };
    let (first, second) = (run(), run());
    let mut compared = Vec::new();
    let mut check = |what: String, a: f64, b: f64| {
        let spread = (a - b).abs() / a.max(b).max(f64::MIN_POSITIVE);
        assert!(
            spread <= 0.10,
            "{what}: {a} then {b} per job\nfirst: {first:#}\nsecond: {second:#}"
        );
        compared.push(what);
    };
    let ops = first["operations"].as_object().expect("operations");
    for (key, counted) in ops {
        let a = counted["perJob"].as_f64().unwrap_or(0.0);
        if a < 1.0 {
            continue;
        }
        let b = second["operations"][key]["perJob"].as_f64().unwrap_or(0.0);
        check(key.clone(), a, b);
    }
    for field in [
        "events",
        "sqs",
        "transitions",
        "dynamodbWriteUnits",
        "dynamodbReadUnits",
        "s3Puts",
        "httpRequests",
    ] {
        let a = first["perJob"][field].as_f64().unwrap_or(0.0);
        let b = second["perJob"][field].as_f64().unwrap_or(0.0);
        check(format!("perJob.{field}"), a, b);
    }
    let invocations = |m: &Value| -> f64 {
        m["lambda"]
            .as_array()
            .map(|l| l.iter().filter_map(|i| i["count"].as_f64()).sum())
            .unwrap_or(0.0)
    };
    check(
        "Lambda invocations".into(),
        invocations(&first),
        invocations(&second),
    );
    assert!(compared.len() > 10, "{compared:?}");
}
