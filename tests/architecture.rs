//! The dependency rules of the workspace, checked over `cargo metadata`.
//!
//! - No crate under `workers/` depends on another crate under `workers/`: services talk
//!   only through EventBridge.
//! - No crate under `shared/` depends on a crate under `workers/` or `infra/`.
//! - `shared/contracts` and `shared/topology` do no I/O: they depend on no AWS SDK, no
//!   async runtime, no HTTP.
//! - The operations library (`fleet-ops`) is shared by the CLI and the browser console: it
//!   parses no arguments and renders nothing (no `clap`, no `indicatif`), and only the
//!   CLI and the end-to-end tests depend on the CLI crate (`fleet`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// A broken rule, readable as a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

/// A workspace package: its name, folder relative to the workspace root, and the names
/// of its dependencies (normal, dev and build).
#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    pub dir: PathBuf,
    pub dependencies: Vec<String>,
}

/// Reads the workspace's packages from `cargo metadata --no-deps` output.
pub fn packages(metadata: &Value) -> Vec<Package> {
    let root = PathBuf::from(metadata["workspace_root"].as_str().unwrap_or_default());
    metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let manifest = PathBuf::from(p["manifest_path"].as_str().unwrap_or_default());
            let dir = manifest
                .parent()
                .and_then(|d| d.strip_prefix(&root).ok())
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let dependencies = p["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d["name"].as_str().map(str::to_string))
                .collect();
            Package {
                name: p["name"].as_str().unwrap_or_default().to_string(),
                dir,
                dependencies,
            }
        })
        .collect()
}

/// Every rule the packages break.
pub fn violations(packages: &[Package]) -> Vec<Violation> {
    let area: BTreeMap<&str, &str> = packages
        .iter()
        .map(|p| (p.name.as_str(), top_folder(&p.dir)))
        .collect();
    let mut out = Vec::new();
    for p in packages {
        let from = top_folder(&p.dir);
        for dep in &p.dependencies {
            let Some(&to) = area.get(dep.as_str()) else {
                continue;
            };
            if from == "workers" && to == "workers" && dep != &p.name {
                out.push(Violation(format!(
                    "service `{}` depends on service `{dep}`: services under workers/ talk only through EventBridge; move shared types to shared/contracts",
                    p.name
                )));
            }
            if from == "shared" && (to == "workers" || to == "infra") {
                out.push(Violation(format!(
                    "shared crate `{}` depends on `{dep}` under {to}/: shared/ must not depend on services or infrastructure",
                    p.name
                )));
            }
        }
        if p.name == "fleet-ops" {
            for dep in &p.dependencies {
                if ["clap", "indicatif", "fleet"].contains(&dep.as_str()) {
                    out.push(Violation(format!(
                        "`fleet-ops` depends on `{dep}`: the operations library parses no arguments and renders nothing; that is the CLI's"
                    )));
                }
            }
        }
        if p.name != "tests" && p.dependencies.iter().any(|d| d == "fleet") {
            out.push(Violation(format!(
                "`{}` depends on the CLI crate `fleet`: put what it needs in a library",
                p.name
            )));
        }
        if PURE_DATA.contains(&p.name.as_str()) {
            for dep in &p.dependencies {
                if dep.starts_with("aws-")
                    || ["tokio", "reqwest", "hyper", "lambda_runtime"].contains(&dep.as_str())
                {
                    out.push(Violation(format!(
                        "`{}` depends on `{dep}`: it is pure data and does no I/O",
                        p.name
                    )));
                }
            }
        }
    }
    out
}

/// The crates that are pure data: the contracts and the topology's vocabulary.
const PURE_DATA: &[&str] = &["contracts", "topology"];

fn top_folder(dir: &Path) -> &str {
    dir.components()
        .next()
        .and_then(|c| c.as_os_str().to_str())
        .unwrap_or("")
}
