//! Simulation worker: the models it runs, chosen by name from a job spec.

pub mod models;
