//! A lint for every `statemachines/*.asl.json`: the mistakes that otherwise surface only
//! when CloudFormation or an execution trips on them.
//!
//! It lives here, with the only service that owns a state machine so far, because the
//! topology crate's validator checks resources, not definitions. Checks, per scope
//! (the machine, each Parallel branch, each Map processor): valid JSON; `StartAt` names a
//! state; every `Next`, `Default`, Choice and Catch target exists; every state is
//! reachable; every non-terminal state has exactly one of `Next` and `End`; every Task
//! has a `Catch`; every `.waitForTaskToken` Task has `HeartbeatSeconds` below its
//! `TimeoutSeconds`; `States.ALL` stands alone and last in `Retry` and `Catch`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::{Value, json};

use crate::support::definitions_dir;

/// Everything wrong with a definition; empty when it passes.
fn lint(definition: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    lint_scope("", definition, &mut problems);
    problems
}

fn lint_scope(scope: &str, machine: &Value, problems: &mut Vec<String>) {
    let at = |name: &str| format!("{scope}{name}");
    let Some(states) = machine.get("States").and_then(Value::as_object) else {
        problems.push(format!(
            "{scope}(root): `States` must be a non-empty object"
        ));
        return;
    };
    if states.is_empty() {
        problems.push(format!(
            "{scope}(root): `States` must be a non-empty object"
        ));
    }
    let start = machine.get("StartAt").and_then(Value::as_str);
    match start {
        None => problems.push(format!("{scope}(root): `StartAt` is missing")),
        Some(s) if !states.contains_key(s) => problems.push(format!(
            "{scope}(root): `StartAt` names {s:?}, which is not a state"
        )),
        Some(_) => {}
    }

    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, state) in states {
        let kind = state.get("Type").and_then(Value::as_str).unwrap_or("");
        let mut targets: Vec<(&str, &str)> = Vec::new();
        if let Some(next) = state.get("Next").and_then(Value::as_str) {
            targets.push(("Next", next));
        }
        if let Some(default) = state.get("Default").and_then(Value::as_str) {
            targets.push(("Default", default));
        }
        for rule in array(state, "Choices") {
            match rule.get("Next").and_then(Value::as_str) {
                Some(next) => targets.push(("Choices[].Next", next)),
                None => problems.push(format!("{}: a Choice rule has no `Next`", at(name))),
            }
        }
        for catcher in array(state, "Catch") {
            match catcher.get("Next").and_then(Value::as_str) {
                Some(next) => targets.push(("Catch[].Next", next)),
                None => problems.push(format!("{}: a Catch has no `Next`", at(name))),
            }
        }
        for (field, target) in &targets {
            if !states.contains_key(*target) {
                problems.push(format!(
                    "{}: `{field}` names {target:?}, which is not a state",
                    at(name)
                ));
            }
        }
        edges.insert(name, targets.iter().map(|(_, t)| *t).collect());

        let has_next = state.get("Next").is_some();
        let has_end = state.get("End").and_then(Value::as_bool) == Some(true);
        match kind {
            "Task" | "Pass" | "Wait" | "Parallel" | "Map" => {
                if has_next == has_end {
                    problems.push(format!(
                        "{}: a {kind} state needs exactly one of `Next` and `End: true`",
                        at(name)
                    ));
                }
            }
            "Choice" => {
                if array(state, "Choices").is_empty() {
                    problems.push(format!("{}: a Choice state needs `Choices`", at(name)));
                }
                if has_next || has_end {
                    problems.push(format!(
                        "{}: a Choice state has no `Next` or `End`",
                        at(name)
                    ));
                }
            }
            "Succeed" | "Fail" => {
                if has_next || has_end {
                    problems.push(format!("{}: a {kind} state is terminal", at(name)));
                }
            }
            other => problems.push(format!("{}: unknown state type {other:?}", at(name))),
        }

        if kind == "Task" {
            if array(state, "Catch").is_empty() {
                problems.push(format!(
                    "{}: every Task needs a `Catch`, so no failure ends the execution without a word",
                    at(name)
                ));
            }
            let resource = state.get("Resource").and_then(Value::as_str).unwrap_or("");
            if resource.ends_with(".waitForTaskToken") {
                let heartbeat = state.get("HeartbeatSeconds").and_then(Value::as_u64);
                let timeout = state.get("TimeoutSeconds").and_then(Value::as_u64);
                match (heartbeat, timeout) {
                    (None, _) => problems.push(format!(
                        "{}: a .waitForTaskToken Task needs `HeartbeatSeconds`, or a dead worker holds the job until the timeout",
                        at(name)
                    )),
                    (Some(h), Some(t)) if h >= t => problems.push(format!(
                        "{}: `HeartbeatSeconds` ({h}) must be below `TimeoutSeconds` ({t})",
                        at(name)
                    )),
                    _ => {}
                }
            }
        }
        for field in ["Retry", "Catch"] {
            let rules = array(state, field);
            for (i, rule) in rules.iter().enumerate() {
                let errors = array(rule, "ErrorEquals");
                if errors.is_empty() {
                    problems.push(format!("{}: a {field} rule needs `ErrorEquals`", at(name)));
                }
                if errors.iter().any(|e| e == "States.ALL")
                    && (errors.len() > 1 || i + 1 != rules.len())
                {
                    problems.push(format!(
                        "{}: `States.ALL` must be alone in the last {field} rule",
                        at(name)
                    ));
                }
            }
        }
        for (i, branch) in array(state, "Branches").iter().enumerate() {
            lint_scope(&format!("{}.Branches[{i}].", at(name)), branch, problems);
        }
        for field in ["ItemProcessor", "Iterator"] {
            if let Some(processor) = state.get(field) {
                lint_scope(&format!("{}.{field}.", at(name)), processor, problems);
            }
        }
    }

    // Reachability from StartAt.
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<&str> = start.into_iter().collect();
    while let Some(name) = queue.pop_front() {
        if seen.insert(name) {
            queue.extend(edges.get(name).into_iter().flatten());
        }
    }
    for name in states.keys() {
        if !seen.contains(name.as_str()) {
            problems.push(format!("{}: unreachable from `StartAt`", at(name)));
        }
    }
}

fn array<'a>(value: &'a Value, field: &str) -> &'a [Value] {
    value
        .get(field)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

#[test]
fn every_state_machine_definition_passes_the_lint() {
    let mut checked = 0;
    let entries = std::fs::read_dir(definitions_dir()).expect("statemachines/ exists");
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if !path.to_string_lossy().ends_with(".asl.json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        let definition: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let problems = lint(&definition);
        assert!(
            problems.is_empty(),
            "{}:\n{}",
            path.display(),
            problems.join("\n")
        );
        checked += 1;
    }
    assert!(checked >= 1, "no definitions found in statemachines/");
}

/// Runs the lint on `definition` and compares the problems.
fn check(definition: Value, expected: &[&str]) {
    assert_eq!(lint(&definition), expected, "{definition:#}");
}

#[test]
fn the_lint_catches_broken_definitions() {
    check(
        json!({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}),
        &[],
    );
    check(
        json!({"StartAt": "B", "States": {"A": {"Type": "Succeed"}}}),
        &[
            "(root): `StartAt` names \"B\", which is not a state",
            "A: unreachable from `StartAt`",
        ],
    );
    check(
        json!({"StartAt": "A", "States": {
            "A": {"Type": "Pass", "Next": "Nowhere"},
            "B": {"Type": "Succeed"}
        }}),
        &[
            "A: `Next` names \"Nowhere\", which is not a state",
            "B: unreachable from `StartAt`",
        ],
    );
    check(
        json!({"StartAt": "A", "States": {
            "A": {"Type": "Choice", "Choices": [{"Variable": "$.x", "IsPresent": true, "Next": "B"}], "Default": "C"},
            "B": {"Type": "Succeed"},
            "C": {"Type": "Fail", "Next": "B"}
        }}),
        &["C: a Fail state is terminal"],
    );
    check(
        json!({"StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken", "End": true}
        }}),
        &[
            "T: every Task needs a `Catch`, so no failure ends the execution without a word",
            "T: a .waitForTaskToken Task needs `HeartbeatSeconds`, or a dead worker holds the job until the timeout",
        ],
    );
    check(
        json!({"StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                  "HeartbeatSeconds": 60, "TimeoutSeconds": 30,
                  "Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}],
                  "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "F"}], "Next": "F", "End": true},
            "F": {"Type": "Fail"}
        }}),
        &[
            "T: a Task state needs exactly one of `Next` and `End: true`",
            "T: `HeartbeatSeconds` (60) must be below `TimeoutSeconds` (30)",
            "T: `States.ALL` must be alone in the last Retry rule",
        ],
    );
    check(
        json!({"StartAt": "P", "States": {
            "P": {"Type": "Parallel", "End": true, "Branches": [
                {"StartAt": "X", "States": {"X": {"Type": "Pass", "End": true}, "Y": {"Type": "Succeed"}}}
            ]}
        }}),
        &["P.Branches[0].Y: unreachable from `StartAt`"],
    );
}
