//! The dashboard `fleet dev` serves at `/`, driven in headless Chromium
//! (`tests/browser/dashboard.mjs`, playwright-core) against the local stack: a spin job
//! submitted from the page, its progress live, the connection dropped mid-job and resumed
//! with `since`, every frame delivered once and in order; a sir job's chart; a running job
//! cancelled from its row, which frees its worker for the next job.
//!
//! Needs Debian's `chromium` and `npm ci --prefix tests/browser`. Without them the test
//! is skipped, unless `FLEET_REQUIRE_BROWSER=1` (CI) makes that a failure.

use std::path::Path;
use std::time::Duration;

use crate::browser::Browser;
use crate::support::Local;

/// The whole browser run: Chromium start, job, reconnect, screenshot.
const BROWSER_DEADLINE: Duration = Duration::from_secs(360);

#[tokio::test]
async fn the_dashboard_follows_a_job_live_through_a_dropped_connection() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let Some(browser) = Browser::find(&root, "dashboard.mjs") else {
        return;
    };

    let local = Local::start().await;
    let base = format!("http://{}", local.stack.http_addr);
    preflight(&base).await;

    let screenshot = root.join("target/dashboard.png");
    let outcome = browser
        .run(
            &[base.as_ref(), screenshot.as_os_str()],
            &[],
            BROWSER_DEADLINE,
        )
        .await;
    local.stop().await;
    let (status, stdout, stderr) = outcome;
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        status.success(),
        "tests/browser/dashboard.mjs failed ({status}); its output is above"
    );
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
