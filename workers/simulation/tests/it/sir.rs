//! The `sir` model: reproducibility, parameter errors and epidemiological sanity.

use serde_json::{Value, json};
use simulation::models::{CancelFlag, ModelError, Registry, RegistryConfig};

use crate::{Recorder, check_invalid, run};

fn params(beta: f64, gamma: f64) -> Value {
    json!({
        "population": 10_000,
        "initialInfected": 10,
        "beta": beta,
        "gamma": gamma,
        "days": 160,
        "runs": 40,
        "seed": 7,
    })
}

fn with(mut params: Value, key: &str, value: Value) -> Value {
    params[key] = value;
    params
}

fn summary_f64(summary: &Value, key: &str) -> f64 {
    summary[key]
        .as_f64()
        .unwrap_or_else(|| panic!("summary has no number `{key}`: {summary}"))
}

#[test]
fn same_seed_gives_an_identical_result() {
    let first = run("sir", params(0.3, 0.1)).unwrap();
    let second = run("sir", params(0.3, 0.1)).unwrap();
    assert_eq!(first, second);
    // Bit-identical, not merely equal after rounding through JSON numbers.
    assert_eq!(first.result.to_string(), second.result.to_string());
}

#[test]
fn different_seeds_give_different_results() {
    let first = run("sir", params(0.3, 0.1)).unwrap();
    let second = run("sir", with(params(0.3, 0.1), "seed", json!(8))).unwrap();
    assert_ne!(first.result["infected"], second.result["infected"]);
}

#[test]
fn invalid_params_name_the_field() {
    let base = params(0.3, 0.1);
    check_invalid(
        "sir",
        with(base.clone(), "beta", json!(-1)),
        "params.beta",
        "must be a number > 0, got -1",
    );
    check_invalid(
        "sir",
        with(base.clone(), "gamma", json!(0)),
        "params.gamma",
        "> 0",
    );
    check_invalid(
        "sir",
        with(base.clone(), "sigma", json!(0.0)),
        "params.sigma",
        "> 0",
    );
    check_invalid(
        "sir",
        with(base.clone(), "initialInfected", json!(10_001)),
        "params.initialInfected",
        "between 1 and population (10000), got 10001",
    );
    check_invalid(
        "sir",
        with(base.clone(), "initialInfected", json!(0)),
        "params.initialInfected",
        "got 0",
    );
    check_invalid(
        "sir",
        with(base.clone(), "population", json!(0)),
        "params.population",
        "at least 1",
    );
    check_invalid(
        "sir",
        with(base.clone(), "population", json!("many")),
        "params.population",
        "invalid type",
    );
    check_invalid(
        "sir",
        with(base.clone(), "population", json!(1.5)),
        "params.population",
        "invalid type",
    );
    check_invalid(
        "sir",
        with(base.clone(), "days", json!(3651)),
        "params.days",
        "between 1 and 3650",
    );
    check_invalid(
        "sir",
        with(base.clone(), "runs", json!(0)),
        "params.runs",
        "between 1 and 10000",
    );
    check_invalid(
        "sir",
        with(base.clone(), "seed", json!(-1)),
        "params.seed",
        "invalid",
    );
    check_invalid(
        "sir",
        with(base.clone(), "betta", json!(0.3)),
        "params.betta",
        "unknown field `betta`",
    );
    let mut missing = base;
    missing.as_object_mut().unwrap().remove("days");
    check_invalid("sir", missing, "params.days", "missing field `days`");
}

#[test]
fn invalid_params_are_not_retryable() {
    let error = run("sir", with(params(0.3, 0.1), "beta", json!(-1))).unwrap_err();
    assert_eq!(error.error_name(), "Model.InvalidParams");
    assert!(!error.is_retryable());
    assert_eq!(
        error.to_string(),
        "invalid parameter `params.beta`: must be a number > 0, got -1"
    );
}

#[test]
fn r0_of_three_infects_about_94_percent() {
    // The deterministic final size z solves z = 1 - exp(-R0 z): 0.940 for R0 = 3.
    let output = run("sir", params(0.3, 0.1)).unwrap();
    let final_size = summary_f64(&output.summary, "finalSizeMedian");
    assert!(
        (0.92..=0.96).contains(&final_size),
        "final size {final_size}"
    );

    let peak = summary_f64(&output.summary, "peakInfectedMedian");
    let peak_day = summary_f64(&output.summary, "peakDay");
    // The deterministic SIR peaks at N (1 - (1 + ln R0) / R0) ≈ 3,000 infected.
    assert!((2_500.0..=3_500.0).contains(&peak), "peak {peak}");
    assert!((20.0..=80.0).contains(&peak_day), "peak day {peak_day}");
    assert_eq!(output.summary["variant"], "SIR");
    assert_eq!(output.summary["runs"], 40);
    assert_eq!(output.summary["days"], 160);
}

#[test]
fn r0_below_one_gives_a_tiny_outbreak() {
    let output = run("sir", params(0.05, 0.1)).unwrap();
    let final_size = summary_f64(&output.summary, "finalSizeMedian");
    // Ten index cases with R0 = 0.5 infect about 10 / (1 - 0.5) = 20 people in all.
    assert!(final_size < 0.01, "final size {final_size}");
    assert_eq!(summary_f64(&output.summary, "peakDay"), 0.0);
}

#[test]
fn bands_are_ordered_and_cover_every_day() {
    let output = run("sir", params(0.3, 0.1)).unwrap();
    let band = |key: &str| -> Vec<f64> {
        output.result["infected"][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let bands: Vec<Vec<f64>> = ["p5", "p25", "p50", "p75", "p95"].map(band).into();
    for band in &bands {
        assert_eq!(band.len(), 161, "day 0 to day 160");
    }
    for day in 0..=160 {
        for pair in bands.windows(2) {
            assert!(pair[0][day] <= pair[1][day], "bands cross on day {day}");
        }
    }
    assert_eq!(bands[2][0], 10.0, "day 0 is the initial state");
    assert_eq!(output.result["susceptibleP50"][0], 9_990.0);
    assert_eq!(output.result["recoveredP50"].as_array().unwrap().len(), 161);
}

#[test]
fn sigma_makes_it_seir_with_a_later_peak() {
    let sir = run("sir", params(0.3, 0.1)).unwrap();
    let seir = run("sir", with(params(0.3, 0.1), "sigma", json!(0.2))).unwrap();
    assert_eq!(seir.summary["variant"], "SEIR");
    assert_eq!(seir.result["exposedP50"].as_array().unwrap().len(), 161);
    assert!(sir.result.get("exposedP50").is_none());
    // A latent period delays the epidemic but does not change R0 or the final size much.
    assert!(summary_f64(&seir.summary, "peakDay") > summary_f64(&sir.summary, "peakDay"));
    let final_size = summary_f64(&seir.summary, "finalSizeMedian");
    assert!(
        (0.92..=0.96).contains(&final_size),
        "final size {final_size}"
    );
}

#[test]
fn progress_rises_to_one_and_summary_stays_small() {
    let registry = Registry::new(RegistryConfig::default()).unwrap();
    let recorder = Recorder::default();
    let output = registry
        .get("sir")
        .unwrap()
        .run(&params(0.3, 0.1), &recorder, &CancelFlag::new())
        .unwrap();
    let fractions = recorder.fractions();
    assert!(!fractions.is_empty());
    assert!(fractions.windows(2).all(|w| w[0] <= w[1]), "{fractions:?}");
    assert_eq!(fractions.last(), Some(&1.0));
    assert!(
        output.summary.to_string().len() < 1024,
        "{}",
        output.summary
    );
}

#[test]
fn defaults_apply_and_a_cancelled_run_stops() {
    let params =
        json!({"population": 100, "initialInfected": 1, "beta": 0.3, "gamma": 0.1, "days": 10});
    let output = crate::run("sir", params.clone()).unwrap();
    assert_eq!(output.summary["runs"], 100);
    assert_eq!(output.result["seed"], 0);

    let registry = Registry::new(RegistryConfig::default()).unwrap();
    let cancel = CancelFlag::new();
    cancel.cancel();
    let error = registry
        .get("sir")
        .unwrap()
        .run(&params, &simulation::models::NoProgress, &cancel)
        .unwrap_err();
    assert!(matches!(error, ModelError::Cancelled));
    assert!(error.is_retryable());
}
