//! Synthesis: snapshots of the templates, and the rules every template keeps.

use std::process::Command;

use provision::{Stage, TASK_TOKEN_ACTIONS, Template, fleet, synth, write};
use serde_json::Value;

use crate::samples;

fn templates() -> Vec<Template> {
    let dev = Stage::default();
    let mut all = synth(&fleet(&dev)).expect("fleet() synthesizes");
    all.extend(synth(&samples::all_kinds(&dev)).expect("the sample synthesizes"));
    all
}

/// One snapshot per stack, named `<prefix>-<stack>`.
fn check_snapshots(prefix: &str, templates: Vec<Template>) {
    for template in templates {
        // Sorted, so the snapshot does not depend on serde_json's map feature flags.
        insta::with_settings!({ sort_maps => true }, {
            insta::assert_json_snapshot!(format!("{prefix}-{}", template.stack_name), template.body);
        });
    }
}

#[test]
fn fleet_templates_for_dev() {
    let templates = synth(&fleet(&Stage::default())).expect("fleet() synthesizes");
    let stacks: Vec<_> = templates.iter().map(|t| t.stack_name.as_str()).collect();
    assert_eq!(
        stacks[..4],
        [
            "fleet-dev-core",
            "fleet-dev-simulation",
            "fleet-dev-jobs",
            "fleet-dev-notifier"
        ]
    );
    check_snapshots("fleet", templates);
}

#[test]
fn templates_of_every_resource_kind() {
    let templates = synth(&samples::all_kinds(&Stage::default())).expect("the sample synthesizes");
    check_snapshots("all-kinds", templates);
}

/// Every statement of every policy document (identity, trust and queue policies).
fn statements(value: &Value, out: &mut Vec<Value>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key.ends_with("PolicyDocument") {
                    out.extend(v["Statement"].as_array().cloned().unwrap_or_default());
                }
                statements(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| statements(v, out)),
        _ => {}
    }
}

fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn no_policy_grants_a_wildcard_action_and_only_task_tokens_use_resource_star() {
    let mut star_statements = 0;
    for template in templates() {
        let mut all = Vec::new();
        statements(&template.body, &mut all);
        assert!(!all.is_empty(), "{} has no policy", template.stack_name);
        for statement in all {
            let actions = strings(&statement["Action"]);
            assert!(!actions.is_empty(), "{statement}");
            for action in &actions {
                assert!(
                    !action.contains('*'),
                    "{}: {statement}",
                    template.stack_name
                );
            }
            if strings(&statement["Resource"]).contains(&"*") {
                star_statements += 1;
                assert!(
                    actions.iter().all(|a| TASK_TOKEN_ACTIONS.contains(a)),
                    "{}: resource * with {actions:?}",
                    template.stack_name
                );
            }
        }
    }
    assert_eq!(
        star_statements, 3,
        "the task-token statements of the simulation worker, callbacks-webhook and campaigns-send"
    );
}

/// The roles (logical ids) whose policy lets them put events with `source`.
fn roles_that_may_put(templates: &[Template], source: &str) -> Vec<String> {
    let mut roles = Vec::new();
    for template in templates {
        let Some(resources) = template.body["Resources"].as_object() else {
            continue;
        };
        for (id, resource) in resources {
            let mut all = Vec::new();
            statements(resource, &mut all);
            let admits = all.iter().any(|statement| {
                if !strings(&statement["Action"]).contains(&"events:PutEvents") {
                    return false;
                }
                let condition = &statement["Condition"];
                let only = strings(&condition["ForAllValues:StringEquals"]["events:source"]);
                let not = strings(&condition["ForAllValues:StringNotEquals"]["events:source"]);
                assert!(
                    !only.is_empty() || !not.is_empty(),
                    "{id}: PutEvents without an events:source condition: {statement}"
                );
                if only.is_empty() {
                    !not.contains(&source)
                } else {
                    only.contains(&source)
                }
            });
            if admits {
                roles.push(id.clone());
            }
        }
    }
    roles.sort();
    roles
}

#[test]
fn only_the_jobs_services_roles_may_speak_as_fleet_jobs() {
    let templates = synth(&fleet(&Stage::default())).expect("fleet() synthesizes");
    let roles = roles_that_may_put(&templates, contracts::jobs::SOURCE);
    // The API (JobRequested), the simulation-job machine (JobSucceeded/JobFailed), the
    // worker that runs the jobs (JobStarted/JobProgress); not the scheduler, which
    // publishes whatever anyone scheduled.
    assert_eq!(roles.len(), 3, "{roles:?}");
    for role in &roles {
        let lower = role.to_lowercase();
        assert!(
            ["jobsapi", "simulationjob", "simulationworker"]
                .iter()
                .any(|allowed| lower.contains(allowed)),
            "{role} may put fleet.jobs events"
        );
    }
    assert!(
        !roles_that_may_put(&templates, "acme.anything").is_empty(),
        "the scheduler still publishes other services' sources"
    );
}

#[test]
fn the_notifier_takes_job_owners_only_from_the_jobs_service() {
    let templates = synth(&fleet(&Stage::default())).expect("fleet() synthesizes");
    let rule = templates
        .iter()
        .filter_map(|t| t.body["Resources"].as_object())
        .flat_map(|resources| resources.values())
        .find(|r| {
            r["Type"] == "AWS::Events::Rule"
                && r["Properties"]["EventPattern"]["detail-type"]
                    .as_array()
                    .is_some_and(|types| types.iter().any(|t| t == "JobRequested"))
                && r["Properties"]["Name"]
                    .as_str()
                    .is_some_and(|n| n.contains("notifier"))
        })
        .expect("the notifier's JobRequested rule");
    assert_eq!(
        rule["Properties"]["EventPattern"]["source"],
        serde_json::json!([contracts::jobs::SOURCE])
    );
}

/// Every `{"Ref": name}` under `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let (1, Some(Value::String(name))) = (map.len(), map.get("Ref")) {
                out.push(name);
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn functions_that_verify_tokens_get_the_identity_providers_settings_as_stack_parameters() {
    let mut verifying = Vec::new();
    for template in templates() {
        let body = &template.body;
        let declared = |name: &str| {
            name.starts_with("AWS::")
                || body["Parameters"].get(name).is_some()
                || body["Resources"].get(name).is_some()
        };
        let mut all = Vec::new();
        refs(body, &mut all);
        for name in all {
            assert!(
                declared(name),
                "{}: Ref {name} names no parameter or resource",
                template.stack_name
            );
        }
        let functions = body["Resources"].as_object().into_iter().flatten();
        for (id, resource) in functions {
            let vars = &resource["Properties"]["Environment"]["Variables"];
            if resource["Type"] != "AWS::Lambda::Function" || vars.get("JWKS_URL").is_none() {
                continue;
            }
            for (var, parameter) in [
                ("JWT_ISSUER", "JwtIssuer"),
                ("JWT_AUDIENCE", "JwtAudience"),
                ("JWKS_URL", "JwksUrl"),
            ] {
                assert_eq!(vars[var], serde_json::json!({ "Ref": parameter }), "{id}");
                assert_eq!(body["Parameters"][parameter]["Type"], "String", "{id}");
            }
            let name = resource["Properties"]["FunctionName"].as_str();
            verifying.push(name.unwrap_or(id).to_owned());
        }
    }
    verifying.sort_unstable();
    assert_eq!(verifying, ["fleet-dev-jobs-api", "fleet-dev-notifier-ws"]);
}

#[test]
fn templates_pass_cfn_lint() {
    let venv = emulator::ensure_venv(&emulator::default_home())
        .expect("the project virtualenv (with cfn-lint) installs");
    let dir = std::env::temp_dir().join(emulator::unique_name("topology-lint"));
    let paths = write(&dir, &templates()).expect("templates are written");
    let out = Command::new(venv.bin("cfn-lint"))
        .arg("--")
        .args(&paths)
        .output()
        .expect("cfn-lint runs");
    std::fs::remove_dir_all(&dir).ok();
    // Exit 0: no errors and no warnings.
    assert!(
        out.status.success(),
        "cfn-lint: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_missing_definition_file_is_a_clear_error() {
    let mut topology = samples::all_kinds(&Stage::default());
    topology.definitions_dir = std::env::temp_dir().join(emulator::unique_name("nowhere"));
    let error = synth(&topology)
        .expect_err("the definition is missing")
        .to_string();
    assert!(error.contains("order-flow"), "{error}");
    assert!(error.contains("order-flow.asl.json"), "{error}");
}
