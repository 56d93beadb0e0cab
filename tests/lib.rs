//! Support for the end-to-end scenarios in `it/`.
