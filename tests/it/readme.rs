//! The README stays a user's document: short, with the quick start CI runs, and every
//! link to `docs/` alive.

use std::path::{Path, PathBuf};

/// The README's budget: what a new user reads before anything else.
const MAX_README_BYTES: usize = 12 * 1024;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn the_readme_is_short_has_the_quick_start_and_its_links_resolve() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.len() <= MAX_README_BYTES,
        "README.md is {} bytes, over {MAX_README_BYTES}: move details to docs/",
        readme.len()
    );
    for section in [
        "## Quick start",
        "## Concepts",
        "## The `fleet` command",
        "## Deploying to AWS",
    ] {
        assert!(readme.contains(section), "README.md lacks {section}");
    }
    // The two quick-start commands; CI runs the second one verbatim.
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(readme.contains("cargo run -p fleet -- dev"));
    assert!(readme.contains("cargo test --workspace") && ci.contains("cargo test --workspace"));
    for doc in [
        "docs/benchmarks.md",
        "docs/local-parity.md",
        "docs/operations.md",
        "docs/protocol.md",
    ] {
        assert!(
            readme.contains(&format!("]({doc})")),
            "README.md does not link {doc}"
        );
    }
    // Every relative link points at a file that exists.
    for link in readme.split("](").skip(1) {
        let target = link.split(')').next().unwrap_or_default();
        let path = target.split('#').next().unwrap_or_default();
        if path.is_empty() || path.contains("://") {
            continue;
        }
        assert!(
            root().join(path).exists(),
            "README.md links {target}, which is missing"
        );
    }
}
