//! THE fleet: `core` and every service's own declaration (`workers/<svc>/src/service.rs`).
//! Adding a service means listing its `service::topology()` in [`fleet`].

use topology::{Stage, Topology, core};

/// The fleet for `stage`.
pub fn fleet(stage: &Stage) -> Topology {
    Topology::new(
        stage,
        vec![
            core(),
            simulation::service::topology(),
            jobs::service::topology(),
            notifier::service::topology(),
            callbacks::service::topology(),
            campaigns::service::topology(),
            scheduler::service::topology(),
            licenses::service::topology(),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use topology::{DeadLetterSource, FAILURES};

    #[test]
    fn the_fleet_is_valid() {
        let topology = fleet(&Stage::default());
        topology
            .validate()
            .expect("fleet() must be a valid topology");
        let queues: Vec<_> = topology.queues().map(|q| q.name.as_str()).collect();
        assert_eq!(queues, ["failures", "simulation"]);
        let tables: Vec<_> = topology.tables().map(|t| t.name.as_str()).collect();
        assert_eq!(tables[..3], ["simulation-jobs", "jobs", "notifier"]);
        let services: Vec<_> = topology.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(services[..4], ["core", "simulation", "jobs", "notifier"]);
        assert_eq!(
            services[4..],
            ["callbacks", "campaigns", "scheduler", "licenses"]
        );
        assert_eq!(tables[3..], ["callbacks", "campaigns", "licenses"]);
    }

    #[test]
    fn dead_letters_name_their_source() {
        let topology = fleet(&Stage::default());
        let dead = topology.dead_letters();
        assert_eq!(dead.len(), 2, "{dead:?}");
        assert_eq!(dead[0].queue, "fleet-dev-failures");
        assert_eq!(dead[0].service, "core");
        assert_eq!(
            dead[0].source,
            DeadLetterSource::Functions {
                name: FAILURES.into(),
                topic: FAILURES.into(),
                functions: topology
                    .functions()
                    .filter(|f| f.dead_letter.is_some())
                    .map(|f| f.name.clone())
                    .collect(),
            }
        );
        let DeadLetterSource::Functions { functions, .. } = &dead[0].source else {
            unreachable!("checked above");
        };
        assert!(functions.starts_with(&["jobs-requested".into(), "jobs-view".into()]));
        assert!(functions.contains(&"notifier-events".to_owned()));
        assert_eq!(dead[1].queue, "fleet-dev-simulation-dlq");
        assert_eq!(dead[1].service, "simulation");
    }
}
