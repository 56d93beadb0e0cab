//! Times the models on fixed workloads and prints runs per second (`cargo bench -p simulation`).
//!
//! Plain `Instant` timing, no statistics framework: the numbers are for spotting
//! order-of-magnitude regressions, and the machine is shared.

use std::process::ExitCode;
use std::time::Instant;

use serde_json::{Value, json};
use simulation::models::{CancelFlag, NoProgress, Registry, RegistryConfig};

/// How many times each workload is timed; the best time is reported.
const REPEATS: u32 = 5;

fn main() -> ExitCode {
    let registry = match Registry::new(RegistryConfig::default()) {
        Ok(registry) => registry,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let workloads: [(&str, &str, Value, u32); 3] = [
        (
            "sir N=10,000 runs=100 days=160",
            "sir",
            json!({"population": 10_000, "initialInfected": 10, "beta": 0.3, "gamma": 0.1,
                   "days": 160, "runs": 100, "seed": 1}),
            100,
        ),
        (
            "seir N=10,000 runs=100 days=160",
            "sir",
            json!({"population": 10_000, "initialInfected": 10, "beta": 0.3, "gamma": 0.1,
                   "sigma": 0.2, "days": 160, "runs": 100, "seed": 1}),
            100,
        ),
        (
            "sir N=1,000,000 runs=1,000 days=365",
            "sir",
            json!({"population": 1_000_000, "initialInfected": 100, "beta": 0.25, "gamma": 0.1,
                   "days": 365, "runs": 1_000, "seed": 1}),
            1_000,
        ),
    ];
    for (label, model, params, runs) in workloads {
        let model = match registry.get(model) {
            Ok(model) => model,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        };
        let mut best = f64::INFINITY;
        for _ in 0..REPEATS {
            let started = Instant::now();
            if let Err(error) = model.run(&params, &NoProgress, &CancelFlag::new()) {
                eprintln!("error: {label}: {error}");
                return ExitCode::FAILURE;
            }
            best = best.min(started.elapsed().as_secs_f64());
        }
        println!(
            "{label:<40} best of {REPEATS}: {:>9.2} ms  {:>10.0} runs/s",
            best * 1e3,
            f64::from(runs) / best
        );
    }
    ExitCode::SUCCESS
}
