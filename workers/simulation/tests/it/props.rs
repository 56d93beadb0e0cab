//! Property tests of the job params of every model: no input panics, valid params
//! round-trip, and an out-of-range value is refused naming its field.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use simulation::models::exec::MAX_STDIN_BYTES;
use simulation::models::sir::{MAX_DAYS, MAX_RUNS};
use simulation::models::spin::MAX_DURATION_MS;
use simulation::models::{
    ExecCommand, ModelError, Registry, RegistryConfig, SirParams, SpinMode, SpinParams,
};

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object with some of the models' own keys, holding any values: closer to the edge
/// than arbitrary objects.
fn params_like() -> impl Strategy<Value = Value> {
    let keys = prop::sample::select(vec![
        "population",
        "initialInfected",
        "beta",
        "gamma",
        "sigma",
        "days",
        "runs",
        "seed",
        "durationMs",
        "mode",
        "other",
    ]);
    prop::collection::btree_map(keys, any_json(), 0..9).prop_map(|m| {
        Value::Object(
            m.into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect::<Map<_, _>>(),
        )
    })
}

fn registry() -> Registry {
    let mut config = RegistryConfig::default();
    config.exec.insert(
        "cat".into(),
        ExecCommand {
            program: "/bin/cat".into(),
            args: vec![],
            timeout: None,
        },
    );
    Registry::new(config).expect("the test registry is valid")
}

/// The field an error names, or a failure naming what came instead.
fn field<T: std::fmt::Debug, E: Into<ModelError>>(
    result: Result<T, E>,
) -> Result<String, TestCaseError> {
    match result.map_err(Into::into) {
        Err(ModelError::InvalidParams { field, .. }) => Ok(field),
        other => Err(TestCaseError::fail(format!(
            "expected InvalidParams, got {other:?}"
        ))),
    }
}

fn rate() -> impl Strategy<Value = f64> {
    prop_oneof![1e-9f64..1e3, Just(f64::MIN_POSITIVE), Just(1e300)]
}

proptest! {
    #[test]
    fn no_params_make_any_model_panic(params in prop_oneof![any_json(), params_like()]) {
        let registry = registry();
        for name in ["sir", "spin", "cat"] {
            let model = registry.get(name).expect("the model is registered");
            if let Err(e) = model.validate(&params) {
                // Every refusal of params names a field under `params`.
                if let ModelError::InvalidParams { field, .. } = &e {
                    prop_assert!(field.starts_with("params"), "{name}: {field}");
                } else {
                    prop_assert!(false, "{name}: unexpected error {e:?}");
                }
            }
            let _ = model.suppresses_heartbeat(&params);
        }
    }

    #[test]
    fn valid_sir_params_round_trip(
        population in 1u64..=u64::MAX,
        infected_share in 0.0f64..=1.0,
        beta in rate(),
        gamma in rate(),
        sigma in proptest::option::of(rate()),
        days in 1..=MAX_DAYS,
        runs in 1..=MAX_RUNS,
        seed in any::<u64>(),
    ) {
        // Float to int saturates; the clamp keeps 1..=population.
        let initial_infected = ((population as f64 * infected_share) as u64).clamp(1, population);
        let mut params = json!({
            "population": population, "initialInfected": initial_infected,
            "beta": beta, "gamma": gamma, "days": days, "runs": runs, "seed": seed,
        });
        if let Some(sigma) = sigma {
            params["sigma"] = json!(sigma);
        }
        let parsed = SirParams::from_json(&params).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed, SirParams {
            population, initial_infected, beta, gamma, sigma, days, runs, seed,
        });
    }

    #[test]
    fn out_of_range_sir_params_name_their_field(
        which in 0usize..6,
        days in prop_oneof![Just(0u32), (MAX_DAYS + 1)..=u32::MAX],
        runs in prop_oneof![Just(0u32), (MAX_RUNS + 1)..=u32::MAX],
        bad_rate in prop_oneof![Just(0.0f64), -1e300f64..0.0],
        over in 1u64..1000,
    ) {
        let mut params = json!({"population": 1000, "initialInfected": 10, "beta": 0.3, "gamma": 0.1, "days": 30, "runs": 5});
        let expected = match which {
            0 => { params["days"] = json!(days); "params.days" }
            1 => { params["runs"] = json!(runs); "params.runs" }
            2 => { params["beta"] = json!(bad_rate); "params.beta" }
            3 => { params["gamma"] = json!(bad_rate); "params.gamma" }
            4 => { params["sigma"] = json!(bad_rate); "params.sigma" }
            _ => { params["initialInfected"] = json!(1000 + over); "params.initialInfected" }
        };
        prop_assert_eq!(field(SirParams::from_json(&params))?, expected);
    }

    #[test]
    fn valid_spin_params_round_trip(
        duration_ms in 0..=MAX_DURATION_MS,
        mode in prop::sample::select(vec![
            ("ok", SpinMode::Ok), ("fail", SpinMode::Fail),
            ("crash", SpinMode::Crash), ("hang", SpinMode::Hang),
        ]),
    ) {
        let params = json!({"durationMs": duration_ms, "mode": mode.0});
        let parsed = SpinParams::from_json(&params).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed, SpinParams { duration_ms, mode: mode.1 });
    }

    #[test]
    fn out_of_range_spin_params_name_their_field(
        duration_ms in (MAX_DURATION_MS + 1)..=u64::MAX,
        mode in "[a-z]{1,8}".prop_filter("not a mode", |m| !["ok", "fail", "crash", "hang"].contains(&m.as_str())),
        bad_duration in prop_oneof![Just(json!(-1)), Just(json!(1.5)), Just(json!("5"))],
    ) {
        prop_assert_eq!(field(SpinParams::from_json(&json!({"durationMs": duration_ms})))?, "params.durationMs");
        prop_assert_eq!(field(SpinParams::from_json(&json!({"mode": mode})))?, "params.mode");
        prop_assert_eq!(field(SpinParams::from_json(&json!({"durationMs": bad_duration})))?, "params.durationMs");
    }

    #[test]
    fn exec_params_are_refused_only_past_the_stdin_limit(len in 0usize..(2 * MAX_STDIN_BYTES)) {
        let registry = registry();
        let model = registry.get("cat").expect("the model is registered");
        let params = json!({"blob": "x".repeat(len)});
        let bytes = params.to_string().len();
        match model.validate(&params) {
            Ok(()) => prop_assert!(bytes <= MAX_STDIN_BYTES),
            Err(e) => {
                prop_assert!(bytes > MAX_STDIN_BYTES);
                prop_assert_eq!(field(Err::<(), _>(e))?, "params");
            }
        }
    }
}
