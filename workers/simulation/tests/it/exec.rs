//! `exec` models: the stdin/stdout JSON protocol, failures, progress and timeouts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use simulation::models::{
    CancelFlag, ExecCommand, ModelError, ModelOutput, Registry, RegistryConfig,
};

use crate::Recorder;

/// Writes `body` as a shell script and returns a config with an exec model `name` running it.
///
/// The script runs as `/bin/sh <script>` rather than being executed itself: executing a file
/// this process just wrote can fail with "text file busy" when another test thread forks
/// while the file is still open for writing.
fn config(name: &str, body: &str, timeout: Option<Duration>) -> RegistryConfig {
    let path =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("simulation-exec-{name}.sh"));
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("the target tmpdir is writable");
    RegistryConfig {
        exec: BTreeMap::from([(
            name.to_owned(),
            ExecCommand {
                program: "/bin/sh".into(),
                args: vec![path.display().to_string()],
                timeout,
            },
        )]),
    }
}

fn run_script(name: &str, body: &str, params: Value) -> Result<ModelOutput, ModelError> {
    crate::run_with(config(name, body, None), name, params)
}

#[test]
fn summary_and_result_come_from_stdout() {
    let output = run_script(
        "wrapped",
        r#"printf '{"summary": {"ok": true}, "result": '; cat; printf '}'"#,
        json!({"x": [1, 2, 3]}),
    )
    .unwrap();
    assert_eq!(output.summary, json!({"ok": true}));
    assert_eq!(
        output.result,
        json!({"x": [1, 2, 3]}),
        "params arrive on stdin"
    );
}

#[test]
fn any_other_json_is_the_result_with_a_digest_summary() {
    let output = run_script("echo", "cat", json!({"answer": 42})).unwrap();
    assert_eq!(output.result, json!({"answer": 42}));
    assert_eq!(
        output.summary,
        json!({"model": "echo", "resultBytes": 13, "resultType": "object"})
    );
}

#[test]
fn nonzero_exit_fails_with_the_stderr_tail() {
    let body = r#"
cat > /dev/null
i=0
while [ $i -lt 200 ]; do echo "noise line $i: lorem ipsum dolor sit amet" >&2; i=$((i+1)); done
echo "fatal: matrix is singular" >&2
exit 3"#;
    let error = run_script("exit3", body, json!({})).unwrap_err();
    assert_eq!(error.error_name(), "Model.Failed");
    assert!(!error.is_retryable());
    let ModelError::Failed(message) = &error else {
        panic!("expected Failed, got {error:?}");
    };
    assert!(message.contains("exit status: 3"), "{message}");
    assert!(message.ends_with("fatal: matrix is singular"), "{message}");
    assert!(
        !message.contains("noise line 0:"),
        "only the tail is kept: {message}"
    );
    assert!(message.len() < 2_500, "message is {} bytes", message.len());
}

#[test]
fn invalid_json_on_stdout_fails() {
    let body = "echo 'this is not json'; echo 'warning: check output' >&2";
    let error = run_script("notjson", body, json!({})).unwrap_err();
    let ModelError::Failed(message) = &error else {
        panic!("expected Failed, got {error:?}");
    };
    assert!(message.contains("invalid JSON"), "{message}");
    assert!(message.contains("warning: check output"), "{message}");
}

#[test]
fn oversized_summary_fails() {
    let body =
        r#"printf '{"summary": "'; head -c 9000 /dev/zero | tr '\0' 'a'; printf '", "result": 1}'"#;
    let error = run_script("bigsummary", body, json!({})).unwrap_err();
    assert!(
        error.to_string().contains("put large data in `result`"),
        "{error}"
    );
}

#[test]
fn progress_lines_on_stderr_are_forwarded() {
    let body = r#"
echo "progress 0.25" >&2
echo "progress 0.5 halfway" >&2
echo "progressing nicely" >&2
echo '[]'"#;
    let registry = Registry::new(config("progress", body, None)).unwrap();
    let recorder = Recorder::default();
    registry
        .get("progress")
        .unwrap()
        .run(&json!({}), &recorder, &CancelFlag::new())
        .unwrap();
    let reports = recorder.0.lock().unwrap().clone();
    assert_eq!(reports, [(0.25, None), (0.5, Some("halfway".to_owned()))]);
}

#[test]
fn timeout_kills_the_command_and_what_it_started() {
    // `sleep` runs in the background holding stdout and stderr open, so only killing the
    // whole process group ends the run promptly.
    let registry = Registry::new(config(
        "slow",
        "sleep 30 &\nwait",
        Some(Duration::from_millis(300)),
    ))
    .unwrap();
    let started = Instant::now();
    let error = registry
        .get("slow")
        .unwrap()
        .run(
            &json!({}),
            &simulation::models::NoProgress,
            &CancelFlag::new(),
        )
        .unwrap_err();
    assert!(matches!(error, ModelError::TimedOut { .. }), "{error:?}");
    assert_eq!(error.error_name(), "Model.Timeout");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_missing_program_is_an_io_error() {
    let config = RegistryConfig {
        exec: BTreeMap::from([(
            "ghost".to_owned(),
            ExecCommand {
                program: "/nonexistent/simulation-model".into(),
                args: vec![],
                timeout: None,
            },
        )]),
    };
    let error = crate::run_with(config, "ghost", json!({})).unwrap_err();
    assert_eq!(error.error_name(), "Model.Io");
    assert!(
        error.to_string().contains("/nonexistent/simulation-model"),
        "{error}"
    );
}
