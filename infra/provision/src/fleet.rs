//! THE fleet: `core` and every service's own declaration (`workers/<svc>/src/service.rs`).
//! Adding a service means listing its `service::topology()` in [`fleet`] and its
//! `service::FUNCTIONS` in [`functions`].

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

/// Every Lambda function of the fleet, as its service lists it: what the local host runs
/// and what each `bootstrap` binary runs on AWS.
pub fn functions() -> Vec<lambda_shell::Function> {
    [
        jobs::service::FUNCTIONS,
        notifier::service::FUNCTIONS,
        callbacks::service::FUNCTIONS,
        campaigns::service::FUNCTIONS,
        scheduler::service::FUNCTIONS,
        licenses::service::FUNCTIONS,
    ]
    .concat()
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

    /// Each listed function builds from exactly the environment its topology entry
    /// declares, and each topology function is listed once: a variable a handler needs but
    /// the topology does not give it would fail here, not on AWS at its first event.
    #[tokio::test]
    async fn every_function_builds_from_the_environment_the_topology_gives_it() {
        let topology = fleet(&Stage::default());
        let listed = functions();
        for f in topology.functions() {
            let count = listed.iter().filter(|l| l.name == f.name).count();
            assert_eq!(count, 1, "{} is listed {count} times", f.name);
        }
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        for function in &listed {
            let declared = topology
                .function(function.name)
                .unwrap_or_else(|| panic!("{} is not in the topology", function.name));
            // What CloudFormation would set, with parameters as a deployment gives them.
            let vars = declared.env.iter().map(|(name, value)| {
                let value = match value {
                    topology::ValueRef::Setting { parameter, .. } if parameter.ends_with("Url") => {
                        "https://provider.example".to_owned()
                    }
                    topology::ValueRef::Token(topology::TokenSetting::JwksUrl) => {
                        "https://issuer.example/.well-known/jwks.json".to_owned()
                    }
                    topology::ValueRef::ConnectionsEndpoint(_) => {
                        "https://api.example/dev".to_owned()
                    }
                    _ => "acme".to_owned(),
                };
                (name.clone(), value)
            });
            let context = lambda_shell::Context::new(sdk.clone(), vars);
            if let Err(e) = (function.build)(&context) {
                panic!(
                    "{} does not build from its topology's environment: {e}",
                    function.name
                );
            }
        }
    }
}
