//! The catalog of built-in models: their names, their parameters with limits and
//! defaults, the checks of those parameters, and how a result is drawn.
//!
//! One behaviour, one place: the simulation worker parses a job's params with
//! [`SirParams::from_json`] / [`SpinParams::from_json`] before it runs the model, and the
//! jobs API calls [`check`] on `POST /jobs`, so an invalid job of a built-in model is
//! refused (400) before anything is written. [`catalog`] describes the same parameters
//! (`GET /models`), and the dashboard builds its form from that description; a test
//! checks the description against the parsers.
//!
//! The rule for names: a built-in name ([`BUILTIN`]) is checked at submit. Any other name
//! is accepted, because `exec` models are configured per worker deployment (the
//! worker's `EXEC_MODELS`) and the API cannot know them; the worker checks those, and
//! answers `Model.UnknownModel` for a name no worker has. `exec` models can never take a
//! built-in name (the worker's registry refuses that at startup), so a built-in name
//! always means the built-in model.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// `sir`: a stochastic SIR or SEIR epidemic over many runs.
pub const SIR: &str = "sir";
/// `spin`: burns CPU for a while, then succeeds, fails, crashes or hangs as asked.
pub const SPIN: &str = "spin";
/// Every built-in model's name.
pub const BUILTIN: [&str; 2] = [SIR, SPIN];

/// The most `days` a `sir` job may simulate: ten years.
pub const MAX_DAYS: u32 = 3650;
/// The most independent `runs` a `sir` job may ask for.
pub const MAX_RUNS: u32 = 10_000;
/// The `runs` of a `sir` job that names none.
pub const DEFAULT_RUNS: u32 = 100;
/// The longest `durationMs` of a `spin` job: one hour.
pub const MAX_DURATION_MS: u64 = 3_600_000;
/// The percentiles a `sir` result holds for each compartment and day, with their keys.
pub const PERCENTILES: [(&str, f64); 5] = [
    ("p5", 0.05),
    ("p25", 0.25),
    ("p50", 0.50),
    ("p75", 0.75),
    ("p95", 0.95),
];

/// Parameters that are not valid for their model. `field` is the JSON path of the
/// offending parameter (`params.beta`) and `reason` says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid parameter `{field}`: {reason}")]
pub struct ParamError {
    pub field: String,
    pub reason: String,
}

impl ParamError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> ParamError {
        ParamError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Checks `params` of model `name`: `None` when `name` is not a built-in model (the
/// worker that has it checks it), else whether the built-in model accepts them.
pub fn check(name: &str, params: &Value) -> Option<Result<(), ParamError>> {
    match name {
        SIR => Some(SirParams::from_json(params).map(drop)),
        SPIN => Some(SpinParams::from_json(params).map(drop)),
        _ => None,
    }
}

/// The parameters of a `sir` job (camelCase JSON keys; unknown keys are rejected).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SirParams {
    /// People in the closed population, at least 1.
    pub population: u64,
    /// People infectious on day 0, `1..=population`.
    pub initial_infected: u64,
    /// Transmission rate per day, `> 0`.
    pub beta: f64,
    /// Recovery rate per day (1 / mean infectious period), `> 0`.
    pub gamma: f64,
    /// Rate per day at which the exposed become infectious (1 / mean latent period), `> 0`.
    /// Present ⇒ SEIR; absent ⇒ SIR.
    #[serde(default)]
    pub sigma: Option<f64>,
    /// Days to simulate, `1..=MAX_DAYS`.
    pub days: u32,
    /// Independent runs, `1..=MAX_RUNS`.
    #[serde(default = "default_runs")]
    pub runs: u32,
    /// Seed of the whole experiment.
    #[serde(default)]
    pub seed: u64,
}

fn default_runs() -> u32 {
    DEFAULT_RUNS
}

impl SirParams {
    /// Parses and validates parameters, naming the offending field on failure.
    pub fn from_json(params: &Value) -> Result<Self, ParamError> {
        let parsed: Self = parse_params(params)?;
        parsed.validate()?;
        Ok(parsed)
    }

    /// Checks the ranges serde cannot express.
    pub fn validate(&self) -> Result<(), ParamError> {
        if self.population < 1 {
            return Err(ParamError::new(
                "params.population",
                format!("must be at least 1, got {}", self.population),
            ));
        }
        if !(1..=self.population).contains(&self.initial_infected) {
            return Err(ParamError::new(
                "params.initialInfected",
                format!(
                    "must be between 1 and population ({}), got {}",
                    self.population, self.initial_infected
                ),
            ));
        }
        check_rate("params.beta", self.beta)?;
        check_rate("params.gamma", self.gamma)?;
        if let Some(sigma) = self.sigma {
            check_rate("params.sigma", sigma)?;
        }
        if !(1..=MAX_DAYS).contains(&self.days) {
            return Err(ParamError::new(
                "params.days",
                format!("must be between 1 and {MAX_DAYS}, got {}", self.days),
            ));
        }
        if !(1..=MAX_RUNS).contains(&self.runs) {
            return Err(ParamError::new(
                "params.runs",
                format!("must be between 1 and {MAX_RUNS}, got {}", self.runs),
            ));
        }
        Ok(())
    }
}

fn check_rate(field: &str, value: f64) -> Result<(), ParamError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(ParamError::new(
            field,
            format!("must be a number > 0, got {value}"),
        ))
    }
}

/// The parameters of a `spin` job (camelCase JSON keys; unknown keys are rejected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SpinParams {
    /// How long to work, in milliseconds, `0..=MAX_DURATION_MS`; defaults to 0.
    #[serde(default)]
    pub duration_ms: u64,
    /// What to do afterwards.
    #[serde(default)]
    pub mode: SpinMode,
}

/// What `spin` does once it has worked for `durationMs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpinMode {
    /// Succeed.
    #[default]
    Ok,
    /// Fail.
    Fail,
    /// Exit the worker's process mid-job.
    Crash,
    /// Sleep through `durationMs` without progress; the worker must not heartbeat.
    Hang,
}

impl SpinMode {
    /// Every mode's JSON name.
    pub const NAMES: [&str; 4] = ["ok", "fail", "crash", "hang"];
}

impl SpinParams {
    /// Parses and validates parameters, naming the offending field on failure.
    pub fn from_json(params: &Value) -> Result<Self, ParamError> {
        let parsed: Self = parse_params(params)?;
        if parsed.duration_ms > MAX_DURATION_MS {
            return Err(ParamError::new(
                "params.durationMs",
                format!(
                    "must be at most {MAX_DURATION_MS} (one hour), got {}",
                    parsed.duration_ms
                ),
            ));
        }
        Ok(parsed)
    }
}

/// Deserializes a model's parameters, naming the offending field on failure.
///
/// Parameter structs use `deny_unknown_fields`, so a typo such as `betta` is reported as
/// `params.betta` rather than silently ignored.
pub fn parse_params<T: DeserializeOwned>(params: &Value) -> Result<T, ParamError> {
    if !params.is_object() {
        return Err(ParamError::new(
            "params",
            format!(
                "must be a JSON object, got {}",
                crate::envelope::json_kind(params)
            ),
        ));
    }
    serde_path_to_error::deserialize(params).map_err(|error| {
        let path = error.path().to_string();
        let reason = error.into_inner().to_string();
        let field = if path == "." {
            // Unknown and missing fields are reported at the object itself; serde names the
            // field between the first pair of backticks ("unknown field `betta`, ...").
            match reason.split('`').nth(1) {
                Some(name) if !name.is_empty() => format!("params.{name}"),
                _ => "params".to_owned(),
            }
        } else {
            format!("params.{path}")
        };
        ParamError { field, reason }
    })
}

/// `GET /models`: the built-in models, as the dashboard builds its form from them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Catalog {
    pub models: Vec<ModelSpec>,
    /// Whether names outside `models` are accepted (`exec` models, checked by the worker).
    pub other_models: bool,
}

/// One model: its name, what it does, its parameters and how its result is drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    pub name: String,
    pub title: String,
    pub params: Vec<ParamSpec>,
    /// How to draw the result; absent: the result is offered as a download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<Picture>,
}

/// One parameter. The limits are the ones [`check`] applies; a rule across parameters
/// (`initialInfected` at most `population`) is in `hint`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParamSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ParamKind,
    pub required: bool,
    /// What the form starts with; for an optional parameter, what the model assumes when
    /// it is absent. An optional parameter without one changes the model when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// The smallest value accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<f64>,
    /// The largest value accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<f64>,
    /// Values must be greater than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusive_minimum: Option<f64>,
    /// For [`ParamKind::Choice`]: the accepted values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    pub hint: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamKind {
    /// A whole number.
    Integer,
    /// Any number.
    Number,
    /// One of `choices`.
    Choice,
}

/// How a result is drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Picture {
    /// Per-step percentile bands: each series is a field of the result holding one array
    /// per percentile key (`{"p5": [...], "p50": [...], ...}`), one value per step of `x`.
    /// A series absent from a result (SEIR's `exposed` in a SIR run) is not drawn.
    #[serde(rename_all = "camelCase")]
    Bands {
        /// The x axis' label (one step per array element, from 0).
        x_label: String,
        /// The y axis' label.
        y_label: String,
        /// The key of the line drawn (e.g. `p50`).
        median: String,
        /// The keys of the band's lower and upper edges (e.g. `p5`, `p95`).
        band: [String; 2],
        series: Vec<Series>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Series {
    /// The result's field.
    pub field: String,
    pub label: String,
}

/// The catalog `GET /models` serves.
pub fn catalog() -> Catalog {
    let param =
        |name: &str, kind: ParamKind, required: bool, default: Value, hint: &str| ParamSpec {
            name: name.to_owned(),
            kind,
            required,
            default: Some(default),
            minimum: None,
            maximum: None,
            exclusive_minimum: None,
            choices: Vec::new(),
            hint: hint.to_owned(),
        };
    let range = |spec: ParamSpec, min: f64, max: Option<f64>| ParamSpec {
        minimum: Some(min),
        maximum: max,
        ..spec
    };
    let positive = |spec: ParamSpec| ParamSpec {
        exclusive_minimum: Some(0.0),
        ..spec
    };
    let sir = ModelSpec {
        name: SIR.to_owned(),
        title: "sir: a stochastic SIR/SEIR epidemic".to_owned(),
        params: vec![
            range(
                param(
                    "population",
                    ParamKind::Integer,
                    true,
                    json!(2000),
                    "people in the closed population",
                ),
                1.0,
                None,
            ),
            range(
                param(
                    "initialInfected",
                    ParamKind::Integer,
                    true,
                    json!(5),
                    "people infectious on day 0, at most population",
                ),
                1.0,
                None,
            ),
            positive(param(
                "beta",
                ParamKind::Number,
                true,
                json!(0.4),
                "transmission rate per day",
            )),
            positive(param(
                "gamma",
                ParamKind::Number,
                true,
                json!(0.1),
                "recovery rate per day (1 / mean infectious days)",
            )),
            positive(ParamSpec {
                default: None,
                ..param(
                    "sigma",
                    ParamKind::Number,
                    false,
                    Value::Null,
                    "rate per day the exposed become infectious (1 / mean latent days); set it for SEIR",
                )
            }),
            range(
                param(
                    "days",
                    ParamKind::Integer,
                    true,
                    json!(60),
                    "days to simulate",
                ),
                1.0,
                Some(f64::from(MAX_DAYS)),
            ),
            range(
                param(
                    "runs",
                    ParamKind::Integer,
                    false,
                    json!(DEFAULT_RUNS),
                    "independent runs the bands are taken over",
                ),
                1.0,
                Some(f64::from(MAX_RUNS)),
            ),
            range(
                param(
                    "seed",
                    ParamKind::Integer,
                    false,
                    json!(0),
                    "the same seed gives the same result",
                ),
                0.0,
                None,
            ),
        ],
        picture: Some(Picture::Bands {
            x_label: "day".to_owned(),
            y_label: "people".to_owned(),
            median: "p50".to_owned(),
            band: ["p5".to_owned(), "p95".to_owned()],
            series: [
                ("susceptible", "susceptible"),
                ("exposed", "exposed"),
                ("infected", "infected"),
                ("recovered", "recovered"),
            ]
            .into_iter()
            .map(|(field, label)| Series {
                field: field.to_owned(),
                label: label.to_owned(),
            })
            .collect(),
        }),
    };
    let spin = ModelSpec {
        name: SPIN.to_owned(),
        title: "spin: works for a while".to_owned(),
        params: vec![
            range(
                param(
                    "durationMs",
                    ParamKind::Integer,
                    false,
                    json!(4000),
                    "how long it works, in milliseconds",
                ),
                0.0,
                // Exact: MAX_DURATION_MS is far below 2^53.
                Some(MAX_DURATION_MS as f64),
            ),
            ParamSpec {
                choices: SpinMode::NAMES.map(str::to_owned).to_vec(),
                ..param(
                    "mode",
                    ParamKind::Choice,
                    false,
                    json!("ok"),
                    "what it does afterwards: ok, fail, crash (the worker) or hang",
                )
            },
        ],
        picture: None,
    };
    Catalog {
        models: vec![sir, spin],
        other_models: true,
    }
}
