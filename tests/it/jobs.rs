//! A job's whole life on the local stack `fleet dev` runs (in-process here): HTTP API or
//! upstream event → state machine → worker → result → events → job view.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use contracts::jobs::{JobRequested, JobStatus};
use contracts::{Envelope, JobEvent, JobId};
use emulator::testing;
use serde_json::{Value, json};

use crate::support::Local;

impl Local {
    /// A queue receiving every `fleet.jobs` event of `detail_types` on the stage's bus.
    async fn capture(&self, detail_types: &[&str]) -> String {
        crate::support::capture(
            &self.stack,
            json!({"source": ["fleet.jobs"], "detail-type": detail_types}),
        )
        .await
    }

    /// Events in a capture queue until `done` says enough, or a deadline.
    async fn drain(&self, url: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        testing::collect_until(&self.stack.sdk, url, Duration::from_secs(60), done).await
    }
}

fn job_ids(events: &[Value], detail_type: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["detail-type"] == detail_type)
        .filter_map(|e| e["detail"]["jobId"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn jobs_from_the_api_and_from_an_upstream_event_both_run_to_success() {
    let local = Local::start().await;
    let captured = local.capture(&["JobSucceeded"]).await;

    let alice = local.api("alice");
    let from_api = alice
        .submit("spin", &json!({"durationMs": 300}), None)
        .await
        .unwrap();

    // An upstream service puts JobRequested straight on the bus, with requestedBy.
    let job_id = JobId::generate();
    let request = JobRequested {
        model: "sir".into(),
        params: json!({"population": 2000, "initialInfected": 5, "beta": 0.4, "gamma": 0.1, "days": 60, "runs": 10, "seed": 3})
            .as_object()
            .unwrap()
            .clone(),
        job_id: Some(job_id.clone()),
        idempotency_key: None,
        requested_by: Some("billing".into()),
    };
    let publisher = bus::Publisher::from_sdk(&local.stack.sdk, local.bus());
    publisher
        .publish(&Envelope::new(JobEvent::from(request), "billing"))
        .await
        .unwrap();

    let view = alice
        .wait(&from_api, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(view.status, JobStatus::Succeeded, "{view:?}");
    assert_eq!(view.result.unwrap().summary["spunMs"], 300);

    let billing = local.api("billing");
    let view = billing
        .wait(job_id.as_str(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(view.status, JobStatus::Succeeded, "{view:?}");
    let result = view.result.unwrap();
    assert!(result.summary["peakDay"].is_number(), "{}", result.summary);
    assert!(result.location.key.contains(job_id.as_str()));

    // Both outcomes were announced on the bus.
    let events = local
        .drain(&captured, |seen| job_ids(seen, "JobSucceeded").len() >= 2)
        .await;
    let succeeded = job_ids(&events, "JobSucceeded");
    assert!(
        succeeded.contains(&from_api) && succeeded.contains(&job_id.to_string()),
        "{succeeded:?}"
    );
    local.stop().await;
}

#[tokio::test]
async fn a_model_failure_ends_in_job_failed_with_the_error() {
    let local = Local::start().await;
    let captured = local.capture(&["JobFailed"]).await;
    let api = local.api("carol");
    let job = api
        .submit("spin", &json!({"durationMs": 50, "mode": "fail"}), None)
        .await
        .unwrap();
    let view = api.wait(&job, Duration::from_secs(60)).await.unwrap();
    assert_eq!(view.status, JobStatus::Failed);
    assert_eq!(view.error.unwrap().error, "Model.Failed");
    let events = local.drain(&captured, |seen| !seen.is_empty()).await;
    assert_eq!(job_ids(&events, "JobFailed"), vec![job]);
    local.stop().await;
}

#[tokio::test]
async fn the_same_job_requested_twice_starts_one_execution() {
    let local = Local::start().await;
    let captured = local.capture(&["JobSucceeded"]).await;
    let job_id = JobId::generate();
    let request = JobRequested {
        model: "spin".into(),
        params: json!({"durationMs": 100}).as_object().unwrap().clone(),
        job_id: Some(job_id.clone()),
        idempotency_key: None,
        requested_by: Some("dora".into()),
    };
    let publisher = bus::Publisher::from_sdk(&local.stack.sdk, local.bus());
    let envelope = Envelope::new(JobEvent::from(request), "upstream");
    publisher.publish(&envelope).await.unwrap();
    publisher.publish(&envelope).await.unwrap();

    let view = local
        .api("dora")
        .wait(job_id.as_str(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(view.status, JobStatus::Succeeded);
    let sfn = aws_sdk_sfn::Client::new(&local.stack.sdk);
    let machine = local
        .stack
        .report
        .state_machine_arn("simulation-job")
        .unwrap();
    let executions = sfn
        .list_executions()
        .state_machine_arn(machine)
        .send()
        .await
        .unwrap();
    let runs = executions
        .executions()
        .iter()
        .filter(|e| e.name() == job_id.as_str())
        .count();
    assert_eq!(runs, 1);
    // One result: a single JobSucceeded for the job, even after the duplicate.
    let events = local.drain(&captured, |seen| !seen.is_empty()).await;
    assert_eq!(job_ids(&events, "JobSucceeded"), vec![job_id.to_string()]);
    local.stop().await;
}

#[tokio::test]
async fn the_api_refuses_strangers_other_users_and_bad_bodies() {
    let local = Local::start().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = &local.api_base;

    let anonymous = http
        .post(format!("{base}/jobs"))
        .json(&json!({"model": "spin", "params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let forged = http
        .get(format!("{base}/jobs"))
        .bearer_auth("eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    let erin = local.api("erin");
    let job = erin
        .submit("spin", &json!({"durationMs": 10}), None)
        .await
        .unwrap();
    let frank = local.api("frank");
    let err = frank.status(&job).await.unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
    assert!(erin.status(&job).await.is_ok());

    let token = local
        .stack
        .issuer
        .issue("erin", Duration::from_secs(60))
        .unwrap();
    let bad = http
        .post(format!("{base}/jobs"))
        .bearer_auth(&token)
        .json(&json!({"model": "sir", "params": "not an object"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("params"), "{body}");
    local.stop().await;
}

#[tokio::test]
async fn an_event_the_handler_always_fails_on_ends_in_the_failures_queue_with_lambdas_attributes() {
    let local = Local::start().await;
    // A JobRequested whose params are not an object: jobs-requested fails on it every time.
    let detail = json!({"model": "sir", "params": [1, 2, 3], "requestedBy": "gina"});
    let entry = contracts::Entry::new("acme.upstream", "JobRequested", &detail).unwrap();
    let publisher = bus::Publisher::from_sdk(&local.stack.sdk, local.bus());
    let event_id = publisher.put_one(entry).await.unwrap();

    let failures = local
        .stack
        .report
        .queue_url("failures")
        .unwrap()
        .to_string();
    // The failed event reaches the failures queue.
    let (envelope, original) =
        testing::receive_until(&local.stack.sdk, &failures, Duration::from_secs(60), |m| {
            let envelope: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            let original: Value =
                serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
            (original["id"] == event_id.as_str()).then_some((envelope, original))
        })
        .await;
    assert_eq!(original["detail"], detail, "the body is the original event");
    let attributes = &envelope["MessageAttributes"];
    for name in ["RequestID", "ErrorCode", "ErrorMessage"] {
        assert!(
            attributes[name]["Value"].is_string(),
            "{name} missing: {attributes}"
        );
    }
    assert!(
        attributes["ErrorMessage"]["Value"]
            .as_str()
            .unwrap()
            .contains("params")
    );
    local.stop().await;
}

#[tokio::test]
async fn listing_jobs_follows_every_page() {
    let local = Local::start().await;
    // Pages of two, so five jobs take three pages.
    let gina = local.api("gina").with_page_size(2);
    let mut submitted = BTreeSet::new();
    for _ in 0..5 {
        let job = gina
            .submit("spin", &json!({"durationMs": 10}), None)
            .await
            .unwrap();
        submitted.insert(job);
    }
    // The listing is a projection of `JobRequested`: wait for all five to be in it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed: Vec<String> = gina
            .list(None)
            .await
            .unwrap()
            .into_iter()
            .map(|view| view.job_id.to_string())
            .collect();
        let distinct: BTreeSet<String> = listed.iter().cloned().collect();
        assert_eq!(
            distinct.len(),
            listed.len(),
            "a job listed twice: {listed:?}"
        );
        assert!(distinct.is_subset(&submitted), "{listed:?} not all gina's");
        if distinct == submitted {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "listed {listed:?} of {submitted:?} after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    local.stop().await;
}

/// The in-flight and waiting messages of the simulation queue and its DLQ.
async fn simulation_queue_depths(local: &Local) -> (i64, i64) {
    let sqs = aws_sdk_sqs::Client::new(&local.stack.sdk);
    let mut depths = Vec::new();
    let queue = local
        .stack
        .report
        .queue_url("simulation")
        .unwrap()
        .to_string();
    let dlq = local
        .stack
        .report
        .dlq_url("simulation")
        .unwrap()
        .to_string();
    for url in [queue, dlq] {
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
            .send()
            .await
            .unwrap();
        let count = |name| {
            attributes
                .attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or_default()
        };
        depths.push(
            count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                + count(
                    aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                ),
        );
    }
    (depths[0], depths[1])
}

#[tokio::test]
async fn a_cancelled_job_ends_cancelled_its_worker_stops_and_takes_the_next_job() {
    let local = Local::start().await;
    let captured = local.capture(&["JobCancelled", "JobStarted"]).await;
    let api = local.api("dave");
    // Far longer than the test: only the cancel ends it.
    let long = api
        .submit("spin", &json!({"durationMs": 3_600_000}), None)
        .await
        .unwrap();
    let running =
        crate::support::until("the long job running", Duration::from_secs(60), || async {
            let view = api.status(&long).await.ok()?;
            (view.status == JobStatus::Running).then_some(view)
        })
        .await;
    assert_eq!(running.status, JobStatus::Running);
    let watcher = {
        let api = local.api("dave");
        let long = long.clone();
        tokio::spawn(async move {
            fleet::watch::watch(&api, &long, Duration::from_secs(60), |_| {}).await
        })
    };

    let cancelled = api.cancel(&long).await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert_eq!(
        api.cancel(&long).await.unwrap().status,
        JobStatus::Cancelled
    );
    let (outcome, _) = watcher.await.unwrap().unwrap();
    assert_eq!(
        outcome,
        fleet::watch::Outcome::Cancelled { by: "dave".into() }
    );
    let events = local
        .drain(&captured, |seen| {
            job_ids(seen, "JobCancelled").len() == 1 && job_ids(seen, "JobStarted").len() == 1
        })
        .await;
    assert_eq!(job_ids(&events, "JobCancelled"), vec![long.clone()]);
    let worker_of = |events: &[Value], job: &str| -> Option<String> {
        events
            .iter()
            .find(|e| e["detail-type"] == "JobStarted" && e["detail"]["jobId"] == job)
            .and_then(|e| e["detail"]["worker"].as_str().map(str::to_string))
    };
    let worker = worker_of(&events, &long).expect("the long job's worker");

    // The worker learns of it from its next heartbeat, stops the model and acknowledges
    // the message: nothing is retried, nothing dead-lettered.
    crate::support::until(
        "the simulation queue empty",
        Duration::from_secs(30),
        || async { (simulation_queue_depths(&local).await == (0, 0)).then_some(()) },
    )
    .await;
    // Both workers are free: two jobs of 2 s each run at once and succeed, one of them
    // on the cancelled job's worker.
    let params = json!({"durationMs": 2000});
    let mut next = Vec::new();
    for _ in 0..2 {
        next.push(api.submit("spin", &params, None).await.unwrap());
    }
    for job in &next {
        let view = api.wait(job, Duration::from_secs(60)).await.unwrap();
        assert_eq!(view.status, JobStatus::Succeeded, "{view:?}");
    }
    let events = local
        .drain(&captured, |seen| job_ids(seen, "JobStarted").len() == 2)
        .await;
    let workers: BTreeSet<String> = next
        .iter()
        .filter_map(|job| worker_of(&events, job))
        .collect();
    assert!(
        workers.contains(&worker),
        "the cancelled job's worker {worker} ran none of the next jobs: {workers:?}"
    );
    let shown = api.status(&long).await.unwrap();
    assert_eq!(shown.status, JobStatus::Cancelled, "{shown:?}");
    local.stop().await;
}

#[tokio::test]
async fn a_job_cancelled_while_queued_never_runs() {
    let local = Local::start().await;
    let captured = local.capture(&["JobStarted", "JobCancelled"]).await;
    let api = local.api("erin");
    // Both workers busy, so the third job waits in the queue.
    let params = json!({"durationMs": 3_600_000});
    let mut busy = Vec::new();
    for _ in 0..2 {
        busy.push(api.submit("spin", &params, None).await.unwrap());
    }
    for job in &busy {
        crate::support::until("both workers busy", Duration::from_secs(60), || async {
            (api.status(job).await.ok()?.status == JobStatus::Running).then_some(())
        })
        .await;
    }
    let queued = api
        .submit("spin", &json!({"durationMs": 200}), None)
        .await
        .unwrap();
    assert_eq!(
        api.cancel(&queued).await.unwrap().status,
        JobStatus::Cancelled
    );
    for job in &busy {
        api.cancel(job).await.unwrap();
    }
    // The workers come free and take the queued job's message: they acknowledge it unrun.
    crate::support::until(
        "the simulation queue empty",
        Duration::from_secs(30),
        || async { (simulation_queue_depths(&local).await == (0, 0)).then_some(()) },
    )
    .await;
    let events = local.drain(&captured, |seen| seen.len() >= 5).await;
    assert!(
        !job_ids(&events, "JobStarted").contains(&queued),
        "the cancelled queued job started: {events:?}"
    );
    assert_eq!(
        api.status(&queued).await.unwrap().status,
        JobStatus::Cancelled
    );
    local.stop().await;
}
