//! Running a script of `tests/browser/` (node + playwright-core + Debian's Chromium) from
//! a test. Without them the test is skipped, unless `FLEET_REQUIRE_BROWSER=1` (CI) makes
//! that a failure.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// What the browser test needs on this machine: node, Chromium, playwright-core.
pub struct Browser {
    node: PathBuf,
    script: PathBuf,
    chromium: PathBuf,
}

impl Browser {
    /// `None` (after saying why) when something is missing and the browser is optional.
    pub fn find(root: &Path, script: &str) -> Option<Browser> {
        let chromium = std::env::var_os("CHROMIUM")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
        let node = PathBuf::from("node");
        let mut missing = Vec::new();
        if !chromium.exists() {
            missing.push(format!(
                "Chromium at {} (`apt-get install chromium`)",
                chromium.display()
            ));
        }
        let node_works = std::process::Command::new(&node)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !node_works {
            missing.push("Node.js on PATH (`apt-get install nodejs npm`)".to_owned());
        }
        let browser_dir = root.join("tests/browser");
        if !browser_dir.join("node_modules/playwright-core").exists() {
            missing.push("playwright-core (`npm ci --prefix tests/browser`)".to_owned());
        }
        if missing.is_empty() {
            return Some(Browser {
                node,
                script: browser_dir.join(script),
                chromium,
            });
        }
        let what = missing.join(", ");
        if std::env::var("FLEET_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
            panic!(
                "FLEET_REQUIRE_BROWSER=1 but the browser test cannot run: missing {what}. \
                 Install with `apt-get install -y chromium` and `npm ci --prefix tests/browser`."
            );
        }
        println!(
            "skipped: the browser test {script} needs {what} (set FLEET_REQUIRE_BROWSER=1 to make this a failure)"
        );
        None
    }

    /// Runs the script with `args` and `env`; its exit status and output. The process is
    /// killed at the deadline (and if this future is dropped).
    pub async fn run(
        &self,
        args: &[&OsStr],
        env: &[(&str, &str)],
        deadline: Duration,
    ) -> (std::process::ExitStatus, String, String) {
        let child = tokio::process::Command::new(&self.node)
            .arg(&self.script)
            .args(args)
            .envs(env.iter().copied())
            .env("CHROMIUM", &self.chromium)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts");
        match tokio::time::timeout(deadline, child.wait_with_output()).await {
            Ok(output) => {
                let output = output.expect("node's output is readable");
                (
                    output.status,
                    String::from_utf8_lossy(&output.stdout).into_owned(),
                    String::from_utf8_lossy(&output.stderr).into_owned(),
                )
            }
            // The timed-out future owned the child: dropping it killed node (and with it
            // Chromium, which playwright started as node's child).
            Err(_) => panic!(
                "{} did not finish within {deadline:?}",
                self.script.display()
            ),
        }
    }
}
