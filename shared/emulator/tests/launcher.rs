//! The launcher's changes to moto, checked in the project virtualenv's Python against
//! moto's own classes (no server, no timing race): see `launcher_checks.py`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn here(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs one check of `launcher_checks.py`; panics with what it printed if it fails.
fn check(name: &str) {
    let venv = emulator::ensure_venv(&emulator::default_home())
        .expect("the project virtualenv (with moto) installs");
    let out = Command::new(venv.python())
        .arg(here("tests/launcher_checks.py"))
        .arg(here("src/launcher.py"))
        .arg(name)
        .output()
        .expect("the virtualenv's python runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_task_answered_before_its_heartbeat_clock_starts_ends_at_once() {
    check("answer_before_the_clock_starts");
}

#[test]
fn a_heartbeat_sent_before_the_clock_starts_is_accepted_and_counts() {
    check("heartbeat_before_the_clock_starts");
}

#[test]
fn a_task_that_hears_nothing_still_misses_its_heartbeat() {
    check("a_silent_task_still_times_out");
}

#[test]
fn a_stopped_execution_is_aborted_and_its_tokens_closed_when_stop_answers() {
    check("a_stopped_execution_has_stopped_when_stop_answers");
}
