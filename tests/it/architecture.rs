//! The workspace keeps its dependency rules, and the check catches a violation.

use std::process::Command;

use tests::architecture::{Package, packages, violations};

fn workspace_packages() -> Vec<Package> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata = serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    packages(&metadata)
}

#[test]
fn no_service_depends_on_another_service() {
    let packages = workspace_packages();
    assert!(
        packages
            .iter()
            .filter(|p| p.dir.starts_with("workers"))
            .count()
            >= 1,
        "expected services under workers/: {packages:?}"
    );
    let broken = violations(&packages);
    assert!(broken.is_empty(), "{broken:#?}");
}

#[test]
fn the_check_catches_a_service_depending_on_another() {
    let mut packages = workspace_packages();
    let services: Vec<String> = packages
        .iter()
        .filter(|p| p.dir.starts_with("workers"))
        .map(|p| p.name.clone())
        .collect();
    // Pretend the first service depends on a second one (or on a made-up one).
    let other = services
        .get(1)
        .cloned()
        .unwrap_or_else(|| "other-service".to_string());
    if services.len() < 2 {
        packages.push(Package {
            name: other.clone(),
            dir: "workers/other-service".into(),
            dependencies: vec![],
        });
    }
    let first = packages
        .iter_mut()
        .find(|p| p.dir.starts_with("workers"))
        .expect("a service");
    first.dependencies.push(other.clone());
    let broken = violations(&packages);
    assert_eq!(broken.len(), 1, "{broken:#?}");
    assert!(broken[0].0.contains(&other), "{}", broken[0].0);
}

#[test]
fn the_check_catches_io_in_the_contracts_and_the_topology() {
    for name in ["contracts", "topology"] {
        let mut packages = workspace_packages();
        let package = packages
            .iter_mut()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("the {name} crate"));
        package.dependencies.push("aws-sdk-sqs".to_string());
        let broken = violations(&packages);
        assert_eq!(broken.len(), 1, "{broken:#?}");
        assert!(broken[0].0.contains(name), "{}", broken[0].0);
    }
}

#[test]
fn the_check_catches_argument_parsing_in_the_operations_library() {
    let mut packages = workspace_packages();
    let ops = packages
        .iter_mut()
        .find(|p| p.name == "fleet-ops")
        .expect("the fleet-ops crate");
    ops.dependencies.push("clap".to_string());
    let broken = violations(&packages);
    assert_eq!(broken.len(), 1, "{broken:#?}");
    assert!(broken[0].0.contains("fleet-ops"), "{}", broken[0].0);
}
