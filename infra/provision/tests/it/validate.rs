//! Validation: each mistake is reported in words naming the resource.

use std::time::Duration;

use provision::{
    EventBus, Function, Permission, Queue, Resource, ResourceRef, Service, Stage, Topology, fleet,
};

/// Applies `edit` to the dev fleet and expects a problem containing `expected`.
fn check(edit: impl FnOnce(&mut Topology), expected: &str) {
    let mut topology = fleet(&Stage::default());
    edit(&mut topology);
    let error = topology
        .validate()
        .expect_err("the edit makes the topology invalid");
    assert!(
        error.problems.iter().any(|p| p.contains(expected)),
        "expected a problem containing {expected:?}, got: {error}"
    );
}

fn simulation(topology: &mut Topology) -> &mut Service {
    &mut topology.services[1]
}

fn worker_permissions(topology: &mut Topology) -> &mut Vec<Permission> {
    simulation(topology)
        .resources
        .iter_mut()
        .find_map(|r| match r {
            Resource::FargateService(f) => Some(&mut f.permissions),
            _ => None,
        })
        .expect("the simulation service has a worker")
}

#[test]
fn the_fleet_is_valid() {
    fleet(&Stage::default()).validate().expect("valid");
}

#[test]
fn async_functions_need_a_dead_letter_topic() {
    check(
        |t| {
            let mut f = Function::asynchronous("on-job");
            f.dead_letter = None;
            simulation(t).resources.push(f.into());
        },
        "must have the failures topic as dead letter",
    );
}

#[test]
fn wildcard_actions_are_rejected() {
    check(
        |t| {
            worker_permissions(t).push(Permission::new(
                &["sqs:*"],
                ResourceRef::Queue("simulation".into()),
            ))
        },
        "without wildcards",
    );
}

#[test]
fn publishing_without_naming_its_sources_is_rejected() {
    check(
        |t| worker_permissions(t).push(Permission::new(&["events:PutEvents"], ResourceRef::Bus)),
        "must name the sources it may put",
    );
}

#[test]
fn resource_star_is_only_for_task_tokens() {
    check(
        |t| {
            worker_permissions(t).push(Permission::new(
                &["sqs:SendMessage"],
                ResourceRef::TaskTokens,
            ))
        },
        "resource * is only allowed",
    );
}

#[test]
fn references_must_exist() {
    check(
        |t| {
            worker_permissions(t).push(Permission::new(
                &["dynamodb:GetItem"],
                ResourceRef::Table("nope".into()),
            ))
        },
        "is not defined",
    );
}

#[test]
fn a_service_cannot_use_a_later_service() {
    check(
        |t| {
            t.services[0].resources.push(
                Function::sqs("early", "simulation", 1)
                    .with_timeout(Duration::from_secs(10))
                    .into(),
            )
        },
        "defined later",
    );
}

#[test]
fn bucket_names_stay_within_63_characters() {
    check(
        |t| {
            simulation(t)
                .resources
                .push(provision::Bucket::new("a".repeat(41)).into())
        },
        "too long",
    );
}

#[test]
fn names_are_lowercase() {
    check(
        |t| simulation(t).resources.push(Queue::new("Jobs").into()),
        "must be [a-z0-9-]",
    );
}

#[test]
fn fifo_queues_are_not_supported() {
    check(
        |t| {
            let mut q = Queue::new("ordered");
            q.fifo = true;
            simulation(t).resources.push(q.into());
        },
        "FIFO",
    );
}

#[test]
fn fargate_stop_timeout_is_at_most_120_seconds() {
    check(
        |t| {
            for r in &mut simulation(t).resources {
                if let Resource::FargateService(f) = r {
                    f.stop_timeout = Duration::from_secs(121);
                }
            }
        },
        "stop timeout",
    );
}

#[test]
fn a_queue_outlasts_the_function_it_feeds() {
    check(
        |t| {
            simulation(t).resources.push(
                Function::sqs("slow", "simulation", 1)
                    .with_timeout(Duration::from_secs(61))
                    .into(),
            )
        },
        "visibility timeout is shorter",
    );
}

#[test]
fn there_is_one_bus() {
    check(
        |t| simulation(t).resources.push(EventBus.into()),
        "exactly one event bus",
    );
}

#[test]
fn core_comes_first() {
    check(|t| t.services.reverse(), "the first service must be `core`");
}

#[test]
fn physical_names_are_unique() {
    check(
        |t| {
            simulation(t)
                .resources
                .push(Queue::new("simulation-dlq").into())
        },
        "used twice",
    );
}

#[test]
fn async_functions_dead_letter_to_the_failures_topic() {
    check(
        |t| {
            let mut f = Function::asynchronous("on-job");
            f.dead_letter = Some("elsewhere".into());
            simulation(t).resources.push(f.into());
        },
        "must be the `failures` topic",
    );
}
