//! `fleet-ops` against the emulator: what the stage's own topology cannot show (a
//! rule-target DLQ, functions that share an event), driven through the library.

// Tests may panic on what they did not expect: that is how they fail.
#![allow(clippy::unwrap_used)]

mod redrive;
mod support;
