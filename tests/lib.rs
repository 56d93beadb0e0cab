//! Support for the end-to-end scenarios in `it/`, and the architecture's invariants as
//! functions over `cargo metadata`, so a test can show they catch a violation.

pub mod architecture;
