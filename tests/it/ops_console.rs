//! The ops console `fleet dev` serves at `/ops`: who may use it (a token in the
//! `fleet-ops` group; 401 without a valid token, 403 without the group, on the page and on
//! the API), a redrive through its API (the library's: copy before delete), its bounds,
//! and the page itself in headless Chromium (`tests/browser/ops.mjs`): an ops user
//! redrives a poisoned message and sees the depth reach 0; a non-ops user gets 403.

use std::path::Path;
use std::time::Duration;

use aws_sdk_sqs::types::MessageAttributeValue;
use fleet::dev::Stack;
use serde_json::{Value, json};

use crate::browser::Browser;
use crate::support::{stack, until};

/// The whole browser run: Chromium start, sign-in, redrive, the non-ops checks.
const BROWSER_DEADLINE: Duration = Duration::from_secs(180);

#[tokio::test]
async fn the_ops_api_needs_the_ops_group_redrives_one_message_by_id_and_purges_when_confirmed() {
    let stack = stack().await;
    let base = format!("http://{}", stack.http_addr);
    let http = reqwest::Client::new();
    let ops = ops_token(&stack, "olive");
    let plain = plain_token(&stack, "alice");

    for path in ["/ops", "/ops/api/dlqs"] {
        let get = |token: Option<&str>| {
            let request = http.get(format!("{base}{path}"));
            match token {
                Some(t) => request.bearer_auth(t),
                None => request,
            }
        };
        assert_eq!(
            get(None).send().await.unwrap().status(),
            401,
            "{path} without a token"
        );
        assert_eq!(
            get(Some("not.a.jwt")).send().await.unwrap().status(),
            401,
            "{path} with garbage"
        );
        assert_eq!(
            get(Some(&plain)).send().await.unwrap().status(),
            403,
            "{path} without the group"
        );
        assert_eq!(
            get(Some(&ops)).send().await.unwrap().status(),
            200,
            "{path} as an ops user"
        );
    }
    // The page reads the token from its cookie; the API never does (another page could
    // make the browser send it).
    let cookie = format!("fleet_ops_token={ops}");
    let page = http
        .get(format!("{base}/ops"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains(r#"data-access="granted""#)
    );
    let api = http
        .get(format!("{base}/ops/api/dlqs"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401, "the API ignores the cookie");
    let refused = http
        .get(format!("{base}/ops/api/whoami"))
        .bearer_auth(&plain)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert!(
        refused.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("fleet-ops")
    );
    let me: Value = http
        .get(format!("{base}/ops/api/whoami"))
        .bearer_auth(&ops)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me, json!({"sub": "olive", "groups": ["fleet-ops"]}));

    let first = poison(&stack, "poisoned-1").await;
    let second = poison(&stack, "poisoned-2").await;
    let dlq = stack.topology.names().dlq("simulation");
    let messages: Value = http
        .get(format!(
            "{base}/ops/api/dlqs/simulation-dlq/messages?limit=10"
        ))
        .bearer_auth(&ops)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = messages["messages"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{messages}");
    let one = listed
        .iter()
        .find(|m| m["message_id"] == first.as_str())
        .unwrap();
    assert_eq!(one["correlation_id"], "poisoned-1");
    assert_eq!(one["reason"]["kind"], "worker");
    assert_eq!(one["reason"]["error"], "Worker.InvalidTask");

    let redrive = |token: &str, body: Value| {
        http.post(format!("{base}/ops/api/dlqs/simulation-dlq/redrive"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    // Nothing moves without the group, or without the confirmation.
    assert_eq!(
        redrive(&plain, json!({"confirm": dlq}))
            .await
            .unwrap()
            .status(),
        403
    );
    let unconfirmed = redrive(&ops, json!({"messageId": first})).await.unwrap();
    assert_eq!(unconfirmed.status(), 400);
    assert_eq!(
        unconfirmed.json::<Value>().await.unwrap()["field"],
        "confirm"
    );
    assert_eq!(depth(&stack, &dlq).await, 2);

    let report: Value = redrive(
        &ops,
        json!({"messageId": first, "confirm": dlq, "rate": 50}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(report["redriven"], 1, "{report}");
    let progress: Value = http
        .get(format!("{base}/ops/api/dlqs/simulation-dlq/redrive"))
        .bearer_auth(&ops)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(progress, json!({"expected": 1, "sent": 1, "done": true}));
    let simulation = stack.topology.names().queue("simulation");
    assert_eq!(
        report["destinations"],
        json!({ format!("queue {simulation}"): 1 }),
        "{report}"
    );
    until(
        "the DLQ holds only the other message",
        Duration::from_secs(10),
        || async { (depth(&stack, &dlq).await == 1).then_some(()) },
    )
    .await;
    let copy = receive_one(&stack, &simulation).await;
    assert!(
        copy.contains("poisoned-1"),
        "the copy went back to its source queue: {copy}"
    );
    let left: Value = http
        .get(format!("{base}/ops/api/dlqs/simulation-dlq/messages"))
        .bearer_auth(&ops)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(left["messages"][0]["message_id"], second.as_str());

    // Bounds, each refused naming what is wrong.
    let too_many = http
        .get(format!(
            "{base}/ops/api/dlqs/simulation-dlq/messages?limit=1000"
        ))
        .bearer_auth(&ops)
        .send()
        .await
        .unwrap();
    assert_eq!(too_many.status(), 400);
    assert_eq!(too_many.json::<Value>().await.unwrap()["field"], "limit");
    let long_query = format!(
        "{base}/ops/api/runs?machine={}",
        "m".repeat(fleet::console::limits::MAX_QUERY_BYTES)
    );
    assert_eq!(
        http.get(long_query)
            .bearer_auth(&ops)
            .send()
            .await
            .unwrap()
            .status(),
        413
    );
    let fast = redrive(&ops, json!({"confirm": dlq, "rate": 1000}))
        .await
        .unwrap();
    assert_eq!(fast.status(), 400);
    assert_eq!(fast.json::<Value>().await.unwrap()["field"], "rate");
    let unknown = http
        .get(format!("{base}/ops/api/dlqs/nowhere/messages"))
        .bearer_auth(&ops)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
    assert!(
        unknown.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("simulation-dlq")
    );

    // Purge: only with the queue's full name as the confirmation.
    let purge = |confirm: &str| {
        http.post(format!("{base}/ops/api/dlqs/simulation-dlq/purge"))
            .bearer_auth(&ops)
            .json(&json!({ "confirm": confirm }))
            .send()
    };
    let wrong = purge("simulation-dlq").await.unwrap();
    assert_eq!(wrong.status(), 400);
    assert_eq!(wrong.json::<Value>().await.unwrap()["field"], "confirm");
    assert_eq!(depth(&stack, &dlq).await, 1);
    let purged: Value = purge(&dlq).await.unwrap().json().await.unwrap();
    assert_eq!(purged, json!({"queue": dlq, "purged": 1}));
    until(
        "the purge empties the DLQ",
        Duration::from_secs(10),
        || async { (depth(&stack, &dlq).await == 0).then_some(()) },
    )
    .await;

    stack.stop().await;
}

/// No worker runs, so a submitted job waits on its task token: the console lists it in
/// flight and among the waiting tokens, fails it for the worker, and shows the run's
/// timeline ending in the failure.
#[tokio::test]
async fn the_console_fails_a_waiting_task_and_shows_the_run_s_timeline() {
    let stack = stack().await;
    let base = format!("http://{}", stack.http_addr);
    let http = reqwest::Client::new();
    let ops = ops_token(&stack, "olive");
    let get = |path: String| {
        let request = http.get(format!("{base}/ops/api{path}")).bearer_auth(&ops);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let api = fleet::api::Api::new(&base, plain_token(&stack, "alice"));
    let job = api
        .submit("spin", &json!({"durationMs": 10}), None)
        .await
        .unwrap();

    let task = until(
        "the job waits on its task token",
        Duration::from_secs(30),
        || async {
            let (_, tasks) = get("/tokens?machine=simulation-job".to_owned()).await;
            tasks
                .as_array()
                .and_then(|t| t.iter().find(|t| t["execution"] == job.as_str()).cloned())
        },
    )
    .await;
    let (status, live) = get("/live".to_owned()).await;
    assert_eq!(status, 200, "{live}");
    assert!(
        live["jobs_in_flight"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == job.as_str()),
        "{live}"
    );
    let (status, bad) = get("/runs?status=broken".to_owned()).await;
    assert_eq!(
        (status.as_u16(), &bad["field"]),
        (400, &json!("status")),
        "{bad}"
    );

    let failed = http
        .post(format!("{base}/ops/api/tokens/fail"))
        .bearer_auth(&ops)
        .json(&json!({"token": task["token"], "error": "Model.Failed", "cause": "failed from the ops console"}))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 200);
    let run = until("the run fails", Duration::from_secs(30), || async {
        let (_, runs) = get("/runs?machine=simulation-job&status=FAILED".to_owned()).await;
        runs.as_array()
            .and_then(|r| r.iter().find(|r| r["name"] == job.as_str()).cloned())
    })
    .await;
    let (status, detail) = get(format!("/runs/{}", run["arn"].as_str().unwrap())).await;
    assert_eq!(status, 200, "{detail}");
    let steps = detail["steps"].as_array().unwrap();
    assert!(
        steps.iter().any(|s| s["error"] == "Model.Failed"),
        "the timeline shows the error the console sent: {detail}"
    );
    let (status, by_job) = get(format!("/runs/{job}")).await;
    assert_eq!(
        (status.as_u16(), &by_job["status"]),
        (200, &json!("FAILED"))
    );
    stack.stop().await;
}

#[tokio::test]
async fn an_ops_user_redrives_a_poisoned_message_from_the_console_and_others_get_403() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let Some(browser) = Browser::find(&root, "ops.mjs") else {
        return;
    };
    let stack = stack().await;
    let base = format!("http://{}", stack.http_addr);
    poison(&stack, "poisoned-in-browser").await;
    let dlq = stack.topology.names().dlq("simulation");
    let plain = plain_token(&stack, "alice");

    let screenshot = root.join("target/ops.png");
    let (status, stdout, stderr) = browser
        .run(
            &[base.as_ref(), dlq.as_ref(), screenshot.as_os_str()],
            &[("FLEET_NON_OPS_TOKEN", &plain)],
            BROWSER_DEADLINE,
        )
        .await;
    println!("{stdout}");
    eprintln!("{stderr}");
    let left = depth(&stack, &dlq).await;
    stack.stop().await;
    assert!(
        status.success(),
        "tests/browser/ops.mjs failed ({status}); its output is above"
    );
    assert_eq!(left, 0, "the page's redrive emptied the DLQ");
}

fn ops_token(stack: &Stack, sub: &str) -> String {
    stack
        .issuer
        .issue_with_groups(sub, &[fleet::console::OPS_GROUP], Duration::from_secs(600))
        .unwrap()
}

fn plain_token(stack: &Stack, sub: &str) -> String {
    stack.issuer.issue(sub, Duration::from_secs(600)).unwrap()
}

/// Dead-letters a message the worker could never handle (no task token), as the worker
/// does: with its `fleet.*` reason attributes. Returns its message id.
async fn poison(stack: &Stack, job: &str) -> String {
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let names = stack.topology.names();
    let dlq = queue_url(&sqs, &names.dlq("simulation")).await;
    let source = queue_url(&sqs, &names.queue("simulation")).await;
    let text = |v: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(v)
            .build()
            .unwrap()
    };
    sqs.send_message()
        .queue_url(dlq)
        .message_body(json!({"jobId": job, "model": "sir", "params": {}}).to_string())
        .message_attributes(sqs_worker::attributes::ERROR, text("Worker.InvalidTask"))
        .message_attributes(
            sqs_worker::attributes::REASON,
            text("the body is not a SimulationTask: missing field `taskToken`"),
        )
        .message_attributes(sqs_worker::attributes::SOURCE_QUEUE, text(&source))
        .send()
        .await
        .unwrap()
        .message_id
        .unwrap()
}

async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.get_queue_url()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

/// Visible plus in flight.
async fn depth(stack: &Stack, name: &str) -> u64 {
    let ops = fleet_ops::Ops::new(stack.topology.clone(), &stack.sdk);
    let url = fleet_ops::dlq::queue_url(&ops, name).await.unwrap();
    let (visible, in_flight) = fleet_ops::dlq::depth(&ops, &url).await.unwrap();
    visible + in_flight
}

async fn receive_one(stack: &Stack, name: &str) -> String {
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let url = queue_url(&sqs, name).await;
    let received = sqs
        .receive_message()
        .queue_url(url)
        .wait_time_seconds(5)
        .send()
        .await
        .unwrap();
    received.messages()[0].body().unwrap_or_default().to_owned()
}
