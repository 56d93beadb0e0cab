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
use serde_json::{Value, json};

use crate::models::{CancelFlag, Model, ModelError, ModelOutput, Progress};

/// The name jobs use for this model.
pub const NAME: &str = contracts::models::SIR;

/// The most that `rate × dt` may be for the fastest rate; keeps the binomial chain close to
/// the exact process.
pub const MAX_RATE_PER_STEP: f64 = 0.05;
/// Fewest steps per day, however slow the rates.
pub const MIN_STEPS_PER_DAY: u32 = 4;
/// Most steps per day, however fast the rates: bounds the cost of extreme parameters.
pub const MAX_STEPS_PER_DAY: u32 = 200;
pub use contracts::models::{MAX_DAYS, MAX_RUNS, SirParams};

use contracts::models::PERCENTILES;

/// The index of `p50` in [`PERCENTILES`].
const MEDIAN: usize = 2;

/// Simulation steps per day for these rates (see the module documentation).
pub fn steps_per_day(params: &SirParams) -> u32 {
    let fastest = params
        .beta
        .max(params.gamma)
        .max(params.sigma.unwrap_or(0.0));
    // A float-to-int `as` saturates, and the clamp bounds it anyway.
    ((fastest / MAX_RATE_PER_STEP).ceil() as u32).clamp(MIN_STEPS_PER_DAY, MAX_STEPS_PER_DAY)
}

/// The `sir` model.
#[derive(Debug, Clone, Copy, Default)]
pub struct SirModel;

impl Model for SirModel {
    fn name(&self) -> &str {
        NAME
    }

    fn validate(&self, params: &Value) -> Result<(), ModelError> {
        SirParams::from_json(params)?;
        Ok(())
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
    let steps = steps_per_day(params);
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
    // Per compartment, one series per percentile; E only for SEIR.
    let new_bands = || vec![Vec::with_capacity(days + 1); PERCENTILES.len()];
    let mut susceptible = new_bands();
    let mut exposed = if seir { new_bands() } else { Vec::new() };
    let mut infected = new_bands();
    let mut recovered = new_bands();
    let mut scratch = Vec::with_capacity(runs.len());
    let mut record = |runs: &[RunState]| {
        let mut push = |bands: &mut Vec<Vec<f64>>, of: fn(&RunState) -> u64| {
            let values = percentiles(&mut scratch, runs.iter().map(of));
            for (band, value) in bands.iter_mut().zip(values) {
                band.push(value);
            }
        };
        push(&mut susceptible, |run| run.s);
        if seir {
            push(&mut exposed, |run| run.e);
        }
        push(&mut infected, |run| run.i);
        push(&mut recovered, |run| run.r);
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

    let median_curve = &infected[MEDIAN];
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
    let as_json = |bands: Vec<Vec<f64>>| -> serde_json::Map<String, Value> {
        PERCENTILES
            .iter()
            .zip(bands)
            .map(|(&(key, _), band)| (key.to_owned(), json!(band)))
            .collect()
    };
    let median_of = |bands: &[Vec<f64>]| json!(bands.get(MEDIAN).cloned().unwrap_or_default());
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
        // The medians alone, as results had them before every compartment had bands.
        "susceptibleP50": median_of(&susceptible),
        "recoveredP50": median_of(&recovered),
        "susceptible": as_json(susceptible),
        "infected": as_json(infected),
        "recovered": as_json(recovered),
        "finalSize": final_size,
    });
    if let (Some(sigma), Value::Object(fields)) = (params.sigma, &mut result) {
        fields.insert("sigma".into(), json!(sigma));
        fields.insert("exposedP50".into(), median_of(&exposed));
        fields.insert("exposed".into(), Value::Object(as_json(exposed)));
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
        assert_eq!(steps_per_day(&params), 6);
        params.sigma = Some(2.0);
        assert_eq!(steps_per_day(&params), 40);
        params.beta = 1e300;
        assert_eq!(steps_per_day(&params), MAX_STEPS_PER_DAY);
        params.beta = 0.01;
        params.sigma = None;
        assert_eq!(steps_per_day(&params), MIN_STEPS_PER_DAY);
    }
}
