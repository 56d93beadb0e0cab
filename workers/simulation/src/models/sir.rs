//! `sir`: a stochastic SIR or SEIR epidemic, many runs, summarised as per-day percentile bands.
//!
//! # Method
//!
//! Each run is a *binomial chain* (tau-leaping with binomial draws) of the continuous-time
//! Markov model. Every step of length `dt` moves
//!
//! - `Binomial(S, 1 - exp(-beta * I / N * dt))` people from S to E (SEIR) or to I (SIR),
//! - `Binomial(E, 1 - exp(-sigma * dt))` from E to I (SEIR only),
//! - `Binomial(I, 1 - exp(-gamma * dt))` from I to R,
//!
//! all drawn from the state at the start of the step. Compartments can never go negative,
//! the cost of a step does not grow with the population (Gillespie's exact SSA costs one
//! event per infection, far too slow for large populations), and the error against the exact
//! process shrinks with `dt`. We take `dt` so that the fastest rate times `dt` is at most
//! [`MAX_RATE_PER_STEP`], with between [`MIN_STEPS_PER_DAY`] and [`MAX_STEPS_PER_DAY`] steps a
//! day; a run whose E and I are both empty has ended and costs nothing more.
//!
//! # Reproducibility
//!
//! Run `k` draws from its own `ChaCha8Rng`, keyed by `seed` and set to stream `k`, so the
//! same parameters give a bit-identical result, and different seeds share no stream.
//!
//! # Memory and progress
//!
//! All runs advance together one day at a time, and each day's percentiles are taken before
//! the next day is simulated. Memory is therefore proportional to `runs + days`, not their
//! product (10,000 runs × 3,650 days would otherwise hold hundreds of MB). For the same
//! reason progress is reported once per simulated day rather than once per run.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::models::{CancelFlag, Model, ModelError, ModelOutput, Progress, parse_params};

/// The name jobs use for this model.
pub const NAME: &str = "sir";

/// The most that `rate × dt` may be for the fastest rate; keeps the binomial chain close to
/// the exact process.
pub const MAX_RATE_PER_STEP: f64 = 0.05;
/// Fewest steps per day, however slow the rates.
pub const MIN_STEPS_PER_DAY: u32 = 4;
/// Most steps per day, however fast the rates: bounds the cost of extreme parameters.
pub const MAX_STEPS_PER_DAY: u32 = 200;
/// The most `days` a job may simulate: ten years.
pub const MAX_DAYS: u32 = 3650;
/// The most independent `runs` a job may ask for.
pub const MAX_RUNS: u32 = 10_000;

/// The percentiles reported for each day, with their JSON keys.
const PERCENTILES: [(&str, f64); 5] = [
    ("p5", 0.05),
    ("p25", 0.25),
    ("p50", 0.50),
    ("p75", 0.75),
    ("p95", 0.95),
];

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
    /// Days to simulate, `1..=3650`.
    pub days: u32,
    /// Independent runs, `1..=10000`.
    #[serde(default = "default_runs")]
    pub runs: u32,
    /// Seed of the whole experiment.
    #[serde(default)]
    pub seed: u64,
}

fn default_runs() -> u32 {
    100
}

impl SirParams {
    /// Parses and validates parameters, naming the offending field on failure.
    pub fn from_json(params: &Value) -> Result<Self, ModelError> {
        let parsed: Self = parse_params(params)?;
        parsed.validate()?;
        Ok(parsed)
    }

    /// Checks the ranges serde cannot express.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.population < 1 {
            return Err(ModelError::invalid(
                "params.population",
                format!("must be at least 1, got {}", self.population),
            ));
        }
        if !(1..=self.population).contains(&self.initial_infected) {
            return Err(ModelError::invalid(
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
            return Err(ModelError::invalid(
                "params.days",
                format!("must be between 1 and {MAX_DAYS}, got {}", self.days),
            ));
        }
        if !(1..=MAX_RUNS).contains(&self.runs) {
            return Err(ModelError::invalid(
                "params.runs",
                format!("must be between 1 and {MAX_RUNS}, got {}", self.runs),
            ));
        }
        Ok(())
    }

    /// Simulation steps per day for these rates (see the module documentation).
    pub fn steps_per_day(&self) -> u32 {
        let fastest = self.beta.max(self.gamma).max(self.sigma.unwrap_or(0.0));
        // A float-to-int `as` saturates, and the clamp bounds it anyway.
        ((fastest / MAX_RATE_PER_STEP).ceil() as u32).clamp(MIN_STEPS_PER_DAY, MAX_STEPS_PER_DAY)
    }
}

fn check_rate(field: &str, value: f64) -> Result<(), ModelError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(ModelError::invalid(
            field,
            format!("must be a number > 0, got {value}"),
        ))
    }
}

/// The `sir` model.
#[derive(Debug, Clone, Copy, Default)]
pub struct SirModel;

impl Model for SirModel {
    fn name(&self) -> &str {
        NAME
    }

    fn validate(&self, params: &Value) -> Result<(), ModelError> {
        SirParams::from_json(params).map(drop)
    }

    fn run(
        &self,
        params: &Value,
        progress: &dyn Progress,
        cancel: &CancelFlag,
    ) -> Result<ModelOutput, ModelError> {
        let params = SirParams::from_json(params)?;
        simulate(&params, progress, cancel)
    }
}

/// Runs the simulation for validated parameters.
pub fn simulate(
    params: &SirParams,
    progress: &dyn Progress,
    cancel: &CancelFlag,
) -> Result<ModelOutput, ModelError> {
    let steps = params.steps_per_day();
    let dt = 1.0 / f64::from(steps);
    let rates = StepProbabilities {
        recover: -(-params.gamma * dt).exp_m1(),
        incubate: params.sigma.map(|sigma| -(-sigma * dt).exp_m1()),
        beta_dt_over_n: params.beta * dt / params.population as f64,
    };
    let mut runs: Vec<RunState> = (0..params.runs)
        .map(|run| RunState::new(params, run))
        .collect();

    let days = params.days as usize;
    let seir = params.sigma.is_some();
    let mut infected: Vec<Vec<f64>> = vec![Vec::with_capacity(days + 1); PERCENTILES.len()];
    let mut susceptible_p50 = Vec::with_capacity(days + 1);
    let mut exposed_p50 = Vec::new();
    let mut recovered_p50 = Vec::with_capacity(days + 1);
    let mut scratch = Vec::with_capacity(runs.len());
    let mut record = |runs: &[RunState]| {
        let bands = percentiles(&mut scratch, runs.iter().map(|run| run.i));
        for (band, value) in infected.iter_mut().zip(bands) {
            band.push(value);
        }
        susceptible_p50.push(median(&mut scratch, runs.iter().map(|run| run.s)));
        if seir {
            exposed_p50.push(median(&mut scratch, runs.iter().map(|run| run.e)));
        }
        recovered_p50.push(median(&mut scratch, runs.iter().map(|run| run.r)));
    };

    record(&runs);
    for day in 1..=params.days {
        if cancel.is_cancelled() {
            return Err(ModelError::Cancelled);
        }
        for run in &mut runs {
            for _ in 0..steps {
                if !run.step(&rates) {
                    break;
                }
            }
        }
        record(&runs);
        progress.report(f64::from(day) / f64::from(params.days), None);
    }

    let population = params.population as f64;
    let mut final_sizes: Vec<f64> = runs
        .iter()
        .map(|run| (params.population - run.s) as f64 / population)
        .collect();
    final_sizes.sort_by(f64::total_cmp);
    let final_size: serde_json::Map<String, Value> = PERCENTILES
        .iter()
        .map(|&(key, q)| (key.to_owned(), json!(quantile_sorted(&final_sizes, q))))
        .collect();
    let final_size_median = quantile_sorted(&final_sizes, 0.5);

    let median_curve = &infected[2];
    let (peak_day, peak_infected) = median_curve.iter().copied().enumerate().fold(
        (0, f64::NEG_INFINITY),
        |best, (day, value)| {
            if value > best.1 { (day, value) } else { best }
        },
    );

    let variant = if params.sigma.is_some() {
        "SEIR"
    } else {
        "SIR"
    };
    let summary = json!({
        "model": NAME,
        "variant": variant,
        "runs": params.runs,
        "days": params.days,
        "r0": params.beta / params.gamma,
        "peakInfectedMedian": peak_infected,
        "peakDay": peak_day,
        "finalSizeMedian": final_size_median,
    });
    let bands: serde_json::Map<String, Value> = PERCENTILES
        .iter()
        .zip(infected)
        .map(|(&(key, _), band)| (key.to_owned(), json!(band)))
        .collect();
    let mut result = json!({
        "model": NAME,
        "variant": variant,
        "population": params.population,
        "initialInfected": params.initial_infected,
        "beta": params.beta,
        "gamma": params.gamma,
        "days": params.days,
        "runs": params.runs,
        "seed": params.seed,
        "stepsPerDay": steps,
        "infected": bands,
        "susceptibleP50": susceptible_p50,
        "recoveredP50": recovered_p50,
        "finalSize": final_size,
    });
    if let (Some(sigma), Value::Object(fields)) = (params.sigma, &mut result) {
        fields.insert("sigma".into(), json!(sigma));
        fields.insert("exposedP50".into(), json!(exposed_p50));
    }
    Ok(ModelOutput { summary, result })
}

/// Per-step transition probabilities, shared by all runs.
struct StepProbabilities {
    recover: f64,
    /// `None` for SIR: the infected become infectious at once.
    incubate: Option<f64>,
    /// `beta * dt / N`, so the infection probability is `1 - exp(-beta_dt_over_n * I)`.
    beta_dt_over_n: f64,
}

/// One run's compartments and random stream.
struct RunState {
    rng: ChaCha8Rng,
    s: u64,
    e: u64,
    i: u64,
    r: u64,
}

impl RunState {
    fn new(params: &SirParams, run: u32) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
        rng.set_stream(u64::from(run));
        Self {
            rng,
            s: params.population - params.initial_infected,
            e: 0,
            i: params.initial_infected,
            r: 0,
        }
    }

    /// Advances one step; returns `false` once nothing can change any more.
    fn step(&mut self, p: &StepProbabilities) -> bool {
        if self.i == 0 && self.e == 0 {
            return false;
        }
        let infect = -(-p.beta_dt_over_n * self.i as f64).exp_m1();
        let new_exposed = binomial(&mut self.rng, self.s, infect);
        let new_recovered = binomial(&mut self.rng, self.i, p.recover);
        self.s -= new_exposed;
        self.i -= new_recovered;
        self.r += new_recovered;
        match p.incubate {
            Some(incubate) => {
                let new_infectious = binomial(&mut self.rng, self.e, incubate);
                self.e = self.e - new_infectious + new_exposed;
                self.i += new_infectious;
            }
            None => self.i += new_exposed,
        }
        true
    }
}

/// A `Binomial(n, p)` draw, skipping the trivial cases (which also keeps `p` in range).
fn binomial(rng: &mut ChaCha8Rng, n: u64, p: f64) -> u64 {
    // A NaN cannot arise from validated rates, but must never reach `Binomial::new`.
    if n == 0 || p.is_nan() || p <= 0.0 {
        return 0;
    }
    if p >= 1.0 {
        return n;
    }
    Binomial::new(n, p)
        .expect("invariant: 0 < p < 1 was checked just above")
        .sample(rng)
}

/// The [`PERCENTILES`] of `values`, using `scratch` to sort.
fn percentiles(scratch: &mut Vec<f64>, values: impl Iterator<Item = u64>) -> [f64; 5] {
    fill_sorted(scratch, values);
    PERCENTILES.map(|(_, q)| quantile_sorted(scratch, q))
}

fn median(scratch: &mut Vec<f64>, values: impl Iterator<Item = u64>) -> f64 {
    fill_sorted(scratch, values);
    quantile_sorted(scratch, 0.5)
}

fn fill_sorted(scratch: &mut Vec<f64>, values: impl Iterator<Item = u64>) {
    scratch.clear();
    scratch.extend(values.map(|value| value as f64));
    scratch.sort_by(f64::total_cmp);
}

/// The `q` quantile of sorted, non-empty `values`, interpolating linearly between ranks
/// (the "type 7" definition used by R and NumPy by default).
fn quantile_sorted(values: &[f64], q: f64) -> f64 {
    let Some(last) = values.len().checked_sub(1) else {
        return f64::NAN;
    };
    let rank = q * last as f64;
    let below = rank.floor() as usize;
    let above = rank.ceil() as usize;
    values[below] + (rank - below as f64) * (values[above] - values[below])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_between_ranks() {
        let values = [0.0, 10.0, 20.0, 30.0, 40.0];
        assert_eq!(quantile_sorted(&values, 0.5), 20.0);
        assert_eq!(quantile_sorted(&values, 0.05), 2.0);
        assert_eq!(quantile_sorted(&values, 0.95), 38.0);
        assert_eq!(quantile_sorted(&[7.0], 0.25), 7.0);
    }

    #[test]
    fn steps_per_day_follow_the_fastest_rate() {
        let mut params = SirParams {
            population: 100,
            initial_infected: 1,
            beta: 0.3,
            gamma: 0.1,
            sigma: None,
            days: 10,
            runs: 1,
            seed: 0,
        };
        assert_eq!(params.steps_per_day(), 6);
        params.sigma = Some(2.0);
        assert_eq!(params.steps_per_day(), 40);
        params.beta = 1e300;
        assert_eq!(params.steps_per_day(), MAX_STEPS_PER_DAY);
        params.beta = 0.01;
        params.sigma = None;
        assert_eq!(params.steps_per_day(), MIN_STEPS_PER_DAY);
    }
}
