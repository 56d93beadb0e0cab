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

/// The names of the variables a command sees, from a script that prints them as JSON.
fn child_env_names(name: &str) -> Vec<String> {
    let output = run_script(
        name,
        r#"printf '['; env | cut -d= -f1 | grep -E '^[A-Za-z_][A-Za-z0-9_]*$' | sed 's/.*/"&",/' | tr -d '\n'; printf '""]'"#,
        json!({}),
    )
    .unwrap();
    serde_json::from_value::<Vec<String>>(output.result)
        .unwrap()
        .into_iter()
        .filter(|n| !n.is_empty())
        .collect()
}

#[test]
fn an_exec_child_sees_none_of_the_workers_environment_but_the_allow_list() {
    use simulation::models::exec::{INHERITED_ENV, MODEL_ENV};

    let seen = child_env_names("envnames");
    // The shell itself sets a few of its own.
    let shell_own = ["PWD", "OLDPWD", "SHLVL", "_"];
    // Cargo gives this test process HOME, CARGO_* and more; none of it may reach the child.
    let ours: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| !INHERITED_ENV.contains(&k.as_str()) && !shell_own.contains(&k.as_str()))
        .collect();
    assert!(
        ours.iter().any(|k| k.starts_with("CARGO")),
        "the test needs variables to leak: {ours:?}"
    );
    let leaked: Vec<&String> = seen.iter().filter(|k| ours.contains(k)).collect();
    assert!(leaked.is_empty(), "the child saw {leaked:?}");
    assert!(seen.iter().any(|k| k == "PATH"), "{seen:?}");
    assert!(seen.iter().any(|k| k == MODEL_ENV), "{seen:?}");
    // Nothing else appears.
    let unexpected: Vec<&String> = seen
        .iter()
        .filter(|k| {
            !INHERITED_ENV.contains(&k.as_str())
                && k.as_str() != MODEL_ENV
                && !shell_own.contains(&k.as_str())
        })
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:?}");
}

#[test]
fn exec_params_over_the_stdin_limit_are_refused_naming_params() {
    use simulation::models::exec::MAX_STDIN_BYTES;

    let registry = Registry::new(config("big", "cat", None)).unwrap();
    let model = registry.get("big").unwrap();
    let big = json!({"blob": "x".repeat(MAX_STDIN_BYTES)});
    for result in [
        model.validate(&big).map(|()| None),
        model
            .run(&big, &simulation::models::NoProgress, &CancelFlag::new())
            .map(Some),
    ] {
        match result {
            Err(ModelError::InvalidParams { field, reason }) => {
                assert_eq!(field, "params");
                assert!(reason.contains(&MAX_STDIN_BYTES.to_string()), "{reason}");
            }
            other => panic!("expected InvalidParams, got {other:?}"),
        }
    }
    let fits = json!({"blob": "x".repeat(MAX_STDIN_BYTES - 100)});
    assert!(model.validate(&fits).is_ok());
}

#[test]
fn exec_model_arguments_and_timeouts_over_the_limits_are_refused() {
    use simulation::models::RegistryConfigError;
    use simulation::models::exec::{MAX_ARG_BYTES, MAX_ARGS, MAX_TIMEOUT};

    let with = |args: Vec<String>, timeout: Option<Duration>| {
        Registry::new(RegistryConfig {
            exec: BTreeMap::from([(
                "m".to_owned(),
                ExecCommand {
                    program: "/bin/true".into(),
                    args,
                    timeout,
                },
            )]),
        })
    };
    let error = with(vec!["a".into(); MAX_ARGS + 1], None).unwrap_err();
    assert!(
        matches!(&error, RegistryConfigError::Args { model, .. } if model == "m"),
        "{error}"
    );
    assert!(error.to_string().contains("`args`"), "{error}");
    let error = with(vec!["a".repeat(MAX_ARG_BYTES + 1)], None).unwrap_err();
    assert!(error.to_string().contains("argument 0"), "{error}");
    for timeout in [Duration::ZERO, MAX_TIMEOUT + Duration::from_secs(1)] {
        let error = with(vec![], Some(timeout)).unwrap_err();
        assert!(error.to_string().contains("`timeoutSecs`"), "{error}");
    }
    assert!(with(vec!["a".repeat(MAX_ARG_BYTES); MAX_ARGS], Some(MAX_TIMEOUT)).is_ok());
}

#[test]
fn an_exec_model_without_a_timeout_runs_under_the_default() {
    use simulation::models::exec::{DEFAULT_TIMEOUT, MAX_TIMEOUT, effective_timeout};

    assert_eq!(effective_timeout(None), DEFAULT_TIMEOUT);
    assert_eq!(
        effective_timeout(Some(Duration::from_secs(5))),
        Duration::from_secs(5)
    );
    assert_eq!(effective_timeout(Some(Duration::MAX)), MAX_TIMEOUT);
}
