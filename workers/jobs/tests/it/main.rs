//! The jobs service against the emulator, and the fleet's state machine definitions.

mod api;
mod asl;
mod cancel;
mod handlers;
mod results;
mod statemachine;
mod support;
