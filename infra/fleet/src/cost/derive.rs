//! The per-flow requests read off the topology, without running anything: which rules an
//! event matches and what they target (functions and their memory, state machines and
//! the states an execution passes, queues), which HTTP routes serve a request, and what
//! each role may do to tables and buckets.
//!
//! What the topology cannot say is an assumption, named here once: how long an
//! invocation takes ([`ASSUMED_INVOCATION_MS`]), one unit per table or bucket action a
//! role may take, the size of a result ([`ASSUMED_RESULT_BYTES`]) and of a log
//! ([`ASSUMED_LOG_BYTES`]). `fleet cost --measure` replaces them with counts.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use topology::{FunctionKind, Method, Permission, ResourceRef, Target, Topology};

use super::model::{Basis, Invocations, Profile, Requests};

/// The mean billed duration assumed for an invocation that was not measured.
pub const ASSUMED_INVOCATION_MS: f64 = 50.0;
/// The bytes a job's result adds to the results bucket, when not measured.
pub const ASSUMED_RESULT_BYTES: f64 = 4096.0;
/// CloudWatch Logs bytes per invocation or per job on a worker (Lambda's START, END and
/// REPORT lines and a few structured lines).
pub const ASSUMED_LOG_BYTES: f64 = 1024.0;
/// Bytes an item written to DynamoDB adds, when not measured.
pub const ASSUMED_ITEM_BYTES: f64 = 1024.0;
/// The long polls Lambda's event source mapping keeps open on each SQS queue it reads
/// (AWS starts five and scales with the backlog), each answered at most every 20 s.
pub const ESM_POLLERS: f64 = 5.0;
/// The longest SQS long poll.
pub const LONG_POLL_SECONDS: f64 = 20.0;
/// Longest walk through a state machine, against a definition that loops.
const MAX_STATES_WALKED: usize = 100;

/// Why a profile cannot be derived.
#[derive(Debug, thiserror::Error)]
pub enum DeriveError {
    #[error("reading the state machine definition {file}: {source}")]
    Definition {
        file: String,
        source: std::io::Error,
    },
    #[error("the state machine definition {file} is not JSON: {source}")]
    DefinitionJson {
        file: String,
        source: serde_json::Error,
    },
    #[error("the rule {rule}'s pattern: {message}")]
    Pattern { rule: String, message: String },
}

/// The profile of every flow, from the topology alone.
pub fn profile(topology: &Topology) -> Result<Profile, DeriveError> {
    let mut job = Requests::default();
    // `POST /jobs` starts a job: one HTTP request and its function.
    http(topology, Method::Post, "/jobs", &mut job)?;
    for detail_type in [
        contracts::jobs::REQUESTED,
        contracts::jobs::STARTED,
        contracts::jobs::SUCCEEDED,
    ] {
        event(topology, contracts::jobs::SOURCE, detail_type, &mut job)?;
    }
    // The worker: what its role may do to tables and buckets, once per job, its queue's
    // receive and delete, and its logs.
    let workers: Vec<_> = topology.fargate_services().collect();
    for worker in &workers {
        job.sqs += 2.0;
        storage(&worker.permissions, &mut job);
        job.s3_bytes += ASSUMED_RESULT_BYTES;
        job.log_bytes += ASSUMED_LOG_BYTES;
    }
    let mut progress = Requests::default();
    event(
        topology,
        contracts::jobs::SOURCE,
        contracts::jobs::PROGRESS,
        &mut progress,
    )?;

    let mut callback = Requests::default();
    http(
        topology,
        Method::Post,
        "/callbacks/{provider}",
        &mut callback,
    )?;
    let mut schedule = Requests::default();
    event(
        topology,
        "fleet.any",
        contracts::schedules::REQUESTED,
        &mut schedule,
    )?;

    // Lambda's pollers on every queue a function reads, all month.
    let polled = topology
        .functions()
        .filter(|f| matches!(f.kind, FunctionKind::Sqs { .. }))
        .count() as f64;
    let idle_sqs_per_month =
        polled * ESM_POLLERS * super::model::HOURS_PER_MONTH * 3600.0 / LONG_POLL_SECONDS;
    Ok(Profile {
        basis: Basis::Derived,
        job,
        progress,
        progress_in_job: 0.0,
        callback,
        schedule,
        idle_sqs_per_month,
        min_worker_tasks: workers.iter().map(|w| f64::from(w.scaling.min_tasks)).sum(),
        max_worker_tasks: workers.iter().map(|w| f64::from(w.scaling.max_tasks)).sum(),
    })
}

/// The function serving `method path`, invoked once, with its logs and storage.
fn http(
    topology: &Topology,
    method: Method,
    path: &str,
    into: &mut Requests,
) -> Result<(), DeriveError> {
    let serving = topology.functions().find(|f| match &f.kind {
        FunctionKind::Http { routes } => {
            routes.iter().any(|r| r.method == method && r.path == path)
        }
        _ => false,
    });
    into.http_requests += 1.0;
    match serving {
        Some(f) => invoke(topology, &f.name, into),
        None => Ok(()),
    }
}

/// One event put on the fleet bus and everything the rules it matches start.
fn event(
    topology: &Topology,
    source: &str,
    detail_type: &str,
    into: &mut Requests,
) -> Result<(), DeriveError> {
    into.events += 1.0;
    let sample = json!({"source": source, "detail-type": detail_type, "detail": {}});
    for rule in topology.rules() {
        if rule.bus != topology::BusRef::Fleet {
            continue;
        }
        let pattern =
            fleet_ops::pattern::Pattern::from_value(&rule.event_pattern).map_err(|e| {
                DeriveError::Pattern {
                    rule: rule.name.clone(),
                    message: e.to_string(),
                }
            })?;
        if !pattern.matches(&sample) {
            continue;
        }
        for target in &rule.targets {
            match target {
                Target::Function(name) => {
                    invoke(topology, name, into)?;
                    if pushes_frames(topology, name) {
                        into.frames += 1.0;
                    }
                }
                // EventBridge's send, then the consumer's receive and delete.
                Target::Queue(_) => into.sqs += 3.0,
                Target::StateMachine(name) => execution(topology, name, into)?,
            }
        }
    }
    Ok(())
}

/// One invocation of `function`, with the storage its role may touch, its logs and an
/// execution of each state machine it may start.
fn invoke(topology: &Topology, function: &str, into: &mut Requests) -> Result<(), DeriveError> {
    let Some(f) = topology.function(function) else {
        return Ok(());
    };
    into.add_scaled(
        &Requests {
            invocations: vec![Invocations {
                function: f.name.clone(),
                memory_mb: f.memory_mb,
                count: 1.0,
                mean_ms: ASSUMED_INVOCATION_MS,
            }],
            log_bytes: ASSUMED_LOG_BYTES,
            ..Requests::default()
        },
        1.0,
    );
    storage(&f.permissions, into);
    for p in &f.permissions {
        if let ResourceRef::StateMachine(machine) = &p.resource
            && p.actions.contains(&"states:StartExecution")
        {
            execution(topology, machine, into)?;
        }
    }
    Ok(())
}

/// One unit per table or bucket action a role may take: a write unit (and an item) per
/// write action, a read unit per read action, a request per object action.
fn storage(permissions: &[Permission], into: &mut Requests) {
    for p in permissions {
        let actions: BTreeSet<&str> = p.actions.iter().copied().collect();
        match &p.resource {
            ResourceRef::Table(_) | ResourceRef::TableIndexes(_) => {
                for a in actions {
                    match a {
                        "dynamodb:PutItem" | "dynamodb:UpdateItem" | "dynamodb:DeleteItem" => {
                            into.dynamodb_write_units += 1.0;
                            if a != "dynamodb:DeleteItem" {
                                into.dynamodb_bytes += ASSUMED_ITEM_BYTES;
                            }
                        }
                        "dynamodb:GetItem" | "dynamodb:Query" => into.dynamodb_read_units += 1.0,
                        _ => {}
                    }
                }
            }
            ResourceRef::BucketObjects(_) => {
                for a in actions {
                    match a {
                        "s3:PutObject" => into.s3_puts += 1.0,
                        "s3:GetObject" => into.s3_gets += 1.0,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}

/// Whether `function` belongs to the service with a WebSocket API: what it handles is
/// pushed to subscribers.
fn pushes_frames(topology: &Topology, function: &str) -> bool {
    topology.services.iter().any(|s| {
        let mine = |r: &topology::Resource| matches!(r, topology::Resource::Function(f) if f.name == function);
        let websocket = |r: &topology::Resource| {
            matches!(r, topology::Resource::Function(f) if matches!(f.kind, FunctionKind::WebSocket { .. }))
        };
        s.resources.iter().any(mine) && s.resources.iter().any(websocket)
    }) && !matches!(
        topology.function(function).map(|f| &f.kind),
        Some(FunctionKind::WebSocket { .. })
    )
}

/// One execution of a state machine along its happy path: a transition per state
/// entered; an SQS send per SQS task (the consumer's receive and delete are the
/// worker's); events its `putEvents` tasks publish are counted where they are the flow's.
fn execution(topology: &Topology, name: &str, into: &mut Requests) -> Result<(), DeriveError> {
    let Some(machine) = topology.state_machine(name) else {
        return Ok(());
    };
    let file = topology.definitions_dir.join(&machine.definition_file);
    let text = std::fs::read_to_string(&file).map_err(|source| DeriveError::Definition {
        file: file.display().to_string(),
        source,
    })?;
    let definition: Value =
        serde_json::from_str(&text).map_err(|source| DeriveError::DefinitionJson {
            file: file.display().to_string(),
            source,
        })?;
    let walk = happy_path(&definition);
    into.transitions += walk.states;
    into.sqs += walk.sqs_tasks;
    // A machine publishing events of its own (not the jobs lifecycle, counted by the
    // caller) adds them: the scheduler's firing.
    if name != "simulation-job" {
        into.events += walk.put_events;
    }
    Ok(())
}

/// What one walk from `StartAt` along `Next` (a `Choice`'s `Default`) meets.
#[derive(Debug, Default, PartialEq)]
struct Walk {
    states: f64,
    sqs_tasks: f64,
    put_events: f64,
}

fn happy_path(definition: &Value) -> Walk {
    let mut walk = Walk::default();
    let states = &definition["States"];
    let mut at = definition["StartAt"].as_str();
    let mut steps = 0;
    while let Some(name) = at {
        let state = &states[name];
        if state.is_null() || steps >= MAX_STATES_WALKED {
            break;
        }
        steps += 1;
        walk.states += 1.0;
        let resource = state["Resource"].as_str().unwrap_or_default();
        if resource.starts_with("arn:aws:states:::sqs:sendMessage") {
            walk.sqs_tasks += 1.0;
        }
        if resource.starts_with("arn:aws:states:::events:putEvents") {
            walk.put_events += 1.0;
        }
        if state["End"].as_bool() == Some(true) {
            break;
        }
        at = match state["Type"].as_str() {
            Some("Choice") => state["Default"].as_str(),
            Some("Succeed" | "Fail") => None,
            _ => state["Next"].as_str(),
        };
    }
    walk
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet() -> Topology {
        provision::fleet(&provision::Stage::new("cost").expect("a valid stage"))
    }

    #[test]
    fn a_job_is_read_off_the_rules_and_the_state_machine() {
        let profile = profile(&fleet()).expect("the fleet's profile");
        let job = &profile.job;
        // JobRequested, JobStarted, JobSucceeded.
        assert_eq!(job.events, 3.0, "{job:#?}");
        assert_eq!(job.http_requests, 1.0);
        let functions: Vec<&str> = job
            .invocations
            .iter()
            .map(|i| i.function.as_str())
            .collect();
        assert!(functions.contains(&"jobs-api"), "{functions:?}");
        assert!(functions.contains(&"jobs-requested"), "{functions:?}");
        assert!(job.transitions >= 3.0, "{job:#?}");
        // The state machine's send, the worker's receive and delete.
        assert!(job.sqs >= 3.0, "{job:#?}");
        assert!(
            job.frames >= 2.0,
            "started and succeeded reach subscribers: {job:#?}"
        );
        // Progress: one event, the notifier's invocation, one frame.
        assert_eq!(profile.progress.events, 1.0);
        assert_eq!(profile.progress.frames, 1.0);
        assert!(profile.max_worker_tasks >= 1.0);
    }

    #[test]
    fn a_walk_follows_next_and_the_default_choice_and_stops_at_the_end() {
        let definition = json!({
            "StartAt": "A",
            "States": {
                "A": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken", "Next": "B"},
                "B": {"Type": "Choice", "Choices": [{"Next": "X"}], "Default": "C"},
                "C": {"Type": "Task", "Resource": "arn:aws:states:::events:putEvents", "End": true},
                "X": {"Type": "Fail"}
            }
        });
        assert_eq!(
            happy_path(&definition),
            Walk {
                states: 3.0,
                sqs_tasks: 1.0,
                put_events: 1.0
            }
        );
        let looping = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "A"}}});
        assert_eq!(happy_path(&looping).states, MAX_STATES_WALKED as f64);
    }
}
