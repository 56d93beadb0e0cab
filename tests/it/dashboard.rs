//! The dashboard `fleet dev` serves at `/`, driven in headless Chromium
//! (`tests/browser/dashboard.mjs`, playwright-core) against the local stack: a spin job
//! submitted from the page, its progress live, the connection dropped mid-job and resumed
//! with `since`, every frame delivered once and in order.
//!
//! Needs Debian's `chromium` and `npm ci --prefix tests/browser`. Without them the test
//! is skipped, unless `FLEET_REQUIRE_BROWSER=1` (CI) makes that a failure.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::support::Local;

/// The whole browser run: Chromium start, job, reconnect, screenshot.
const BROWSER_DEADLINE: Duration = Duration::from_secs(240);

#[tokio::test]
async fn the_dashboard_follows_a_job_live_through_a_dropped_connection() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let Some(browser) = Browser::find(&root) else {
        return;
    };

    let local = Local::start().await;
    let base = format!("http://{}", local.stack.http_addr);
    preflight(&base).await;

    let screenshot = root.join("target/dashboard.png");
    let outcome = browser.run(&base, &screenshot).await;
    local.stop().await;
    let (status, stdout, stderr) = outcome;
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        status.success(),
        "tests/browser/dashboard.mjs failed ({status}); its output is above"
    );
}

/// What the browser test needs on this machine: node, Chromium, playwright-core.
struct Browser {
    node: PathBuf,
    script: PathBuf,
    chromium: PathBuf,
}

impl Browser {
    /// `None` (after saying why) when something is missing and the browser is optional.
    fn find(root: &Path) -> Option<Browser> {
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
                script: browser_dir.join("dashboard.mjs"),
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
            "skipped: the dashboard browser test needs {what} (set FLEET_REQUIRE_BROWSER=1 to make this a failure)"
        );
        None
    }

    /// Runs the script against `base`; its exit status and output. The process is killed
    /// at the deadline (and if this future is dropped).
    async fn run(
        &self,
        base: &str,
        screenshot: &Path,
    ) -> (std::process::ExitStatus, String, String) {
        let child = tokio::process::Command::new(&self.node)
            .arg(&self.script)
            .arg(base)
            .arg(screenshot)
            .env("CHROMIUM", &self.chromium)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts");
        match tokio::time::timeout(BROWSER_DEADLINE, child.wait_with_output()).await {
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
            Err(_) => {
                panic!("tests/browser/dashboard.mjs did not finish within {BROWSER_DEADLINE:?}")
            }
        }
    }
}

/// Fails early, with a message saying what is missing, when the stack does not serve what
/// the page needs.
async fn preflight(base: &str) {
    let http = reqwest::Client::new();
    for (path, wants) in [("/", "text/html"), ("/dev/token", "application/json")] {
        let response = http
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        assert!(
            response.status().is_success() && content_type.starts_with(wants),
            "the local stack must serve GET {path} ({wants}); it answered {} ({content_type})",
            response.status()
        );
    }
    // Another web page the developer has open gets no token: not cross-site, not through
    // a domain rebound to 127.0.0.1.
    let host = base.trim_start_matches("http://").to_owned();
    let port = host.rsplit(':').next().unwrap_or_default().to_owned();
    for (header, value) in [
        ("origin", "https://evil.example".to_owned()),
        ("host", format!("evil.example:{port}")),
    ] {
        let refused = http
            .get(format!("{base}/dev/token"))
            .header(header, &value)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET /dev/token: {e}"));
        assert_eq!(refused.status(), 403, "/dev/token with {header}: {value}");
    }
}
