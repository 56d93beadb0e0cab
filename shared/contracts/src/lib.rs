//! The contracts between services: every type that crosses a process or service boundary.
//!
//! This crate does no I/O. Types here are versioned (see [`envelope::SCHEMA_VERSION`]),
//! have a committed JSON Schema (`schemas/`, checked by a test) and sample fixtures.

pub mod callbacks;
pub mod campaigns;
pub mod detail;
pub mod envelope;
pub mod frames;
pub mod http;
pub mod jobs;
pub mod licenses;
pub mod models;
pub mod schedules;
pub mod schema;
pub mod tasks;
pub mod timestamp;

mod error;

pub use envelope::{BusEvent, Entry, Envelope, Event, Meta, Received};
pub use error::ContractError;
pub use jobs::{JobEvent, JobId};
