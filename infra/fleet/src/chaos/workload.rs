//! The workload: which jobs to submit, how, and what each is expected to end as.

use std::time::Duration;

use anyhow::Context as _;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::checks::Expected;

/// How a job is submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `POST /jobs` with an `Idempotency-Key`, retried with the same key until answered.
    Http,
    /// The same, but sent twice on purpose, as a client that timed out would.
    HttpTwice,
    /// `JobRequested` on the bus from an upstream service's source, with its own job id.
    Bus,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Http => "http",
            Via::HttpTwice => "http-retried",
            Via::Bus => "bus",
        }
    }
}

/// One job of the plan.
#[derive(Debug, Clone)]
pub struct Planned {
    pub owner: String,
    pub model: &'static str,
    pub params: Value,
    pub expected: Expected,
    pub via: Via,
    /// Also followed on its own `job:` channel.
    pub followed: bool,
    /// When to submit it, from the start of its phase.
    pub at: Duration,
}

/// The mix: about half short `spin` jobs, a third small `sir` experiments, and one in six
/// meant to fail (`spin` told to fail, or `sir` with parameters its model refuses).
pub fn plan(jobs: usize, users: &[String], over: Duration, seed: u64) -> Vec<Planned> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let spacing = over
        .checked_div(u32::try_from(jobs.max(1)).unwrap_or(u32::MAX))
        .unwrap_or_default();
    (0..jobs)
        .map(|i| {
            let owner = users[i % users.len().max(1)].clone();
            let roll: f64 = rng.random();
            let (model, params, expected) = if roll < 0.5 {
                let ms: u64 = rng.random_range(100..2500);
                ("spin", json!({"durationMs": ms}), Expected::Succeeded)
            } else if roll < 0.83 {
                let params = json!({
                    "population": rng.random_range(1_000..20_000),
                    "initialInfected": rng.random_range(1..20),
                    "beta": rng.random_range(0.2..0.5),
                    "gamma": rng.random_range(0.05..0.2),
                    "days": rng.random_range(30..120),
                    "runs": rng.random_range(10..60),
                    "seed": rng.random::<u32>(),
                });
                ("sir", params, Expected::Succeeded)
            } else if roll < 0.93 {
                let ms: u64 = rng.random_range(100..1500);
                (
                    "spin",
                    json!({"durationMs": ms, "mode": "fail"}),
                    Expected::Failed {
                        error: "Model.Failed".into(),
                    },
                )
            } else {
                (
                    "sir",
                    json!({"population": 100, "initialInfected": 500, "beta": 0.3, "gamma": 0.1, "days": 30}),
                    Expected::Failed {
                        error: "Model.InvalidParams".into(),
                    },
                )
            };
            let via_roll: f64 = rng.random();
            // `POST /jobs` refuses invalid parameters of a built-in model at once (400), so
            // a job meant to fail in the worker with them comes from upstream, whose
            // events only the worker checks.
            let invalid = matches!(&expected, Expected::Failed { error } if error == "Model.InvalidParams");
            let via = if via_roll < 0.2 || invalid {
                Via::Bus
            } else if via_roll < 0.4 {
                Via::HttpTwice
            } else {
                Via::Http
            };
            let jitter = spacing.mul_f64(rng.random_range(0.0..1.0));
            Planned {
                owner,
                model,
                params,
                expected,
                via,
                // The notifier admits `job:` subscribers of jobs whose owner it knows from the
                // jobs service's events: not an upstream service's.
                followed: via != Via::Bus && rng.random_bool(0.2),
                at: spacing * u32::try_from(i).unwrap_or(u32::MAX) + jitter,
            }
        })
        .collect()
}

/// How the harness submits over HTTP.
#[derive(Debug, Clone)]
pub struct Submitter {
    pub base: String,
    pub http: reqwest::Client,
    /// Send `Idempotency-Key` (off only to show the checks catch duplicate jobs).
    pub idempotency: bool,
}

/// What a submission took.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    pub job_id: String,
    /// Requests sent (more than one after failed answers).
    pub attempts: u32,
}

impl Submitter {
    /// `POST /jobs` until it is answered 202, retrying failures (5xx, a dropped
    /// connection) with the same key, as a careful client does.
    pub async fn http(
        &self,
        token: &str,
        job: &Planned,
        key: &str,
        deadline: tokio::time::Instant,
    ) -> anyhow::Result<Submission> {
        let mut attempts = 0;
        let mut backoff = Duration::from_millis(100);
        loop {
            attempts += 1;
            let mut request = self
                .http
                .post(format!("{}/jobs", self.base))
                .bearer_auth(token)
                .json(&json!({"model": job.model, "params": job.params}));
            if self.idempotency {
                request = request.header("Idempotency-Key", key);
            }
            let outcome = request.send().await;
            let retry_reason = match outcome {
                Ok(response) if response.status().as_u16() == 202 => {
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    let job_id = body["jobId"]
                        .as_str()
                        .context("the API answered 202 without a jobId")?
                        .to_owned();
                    return Ok(Submission { job_id, attempts });
                }
                // 409: the first request with this key has not finished (or crashed and
                // its claim has not expired yet): the API says to retry.
                Ok(response)
                    if response.status().is_server_error()
                        || matches!(response.status().as_u16(), 409 | 429) =>
                {
                    format!("answered {}", response.status())
                }
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    anyhow::bail!("POST /jobs answered {status}: {text}");
                }
                Err(e) => format!("no answer: {e}"),
            };
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("POST /jobs kept failing ({retry_reason}) until the deadline");
            }
            tracing::debug!(attempt = attempts, reason = %retry_reason, "retrying a submission");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

/// Puts `JobRequested` on the bus as an upstream service would (its own source, its own
/// job id), retrying until the bus takes it.
pub async fn publish_upstream(
    events: &aws_sdk_eventbridge::Client,
    bus: &str,
    job: &Planned,
    job_id: &str,
    deadline: tokio::time::Instant,
) -> anyhow::Result<Submission> {
    let detail = json!({
        "model": job.model,
        "params": job.params,
        "jobId": job_id,
        "requestedBy": job.owner,
    });
    let mut attempts = 0;
    let mut backoff = Duration::from_millis(100);
    loop {
        attempts += 1;
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .event_bus_name(bus)
            .source(UPSTREAM_SOURCE)
            .detail_type(contracts::jobs::REQUESTED)
            .detail(detail.to_string())
            .build();
        let outcome = events.put_events().entries(entry).send().await;
        let failure = match outcome {
            Ok(out) if out.failed_entry_count() == 0 => {
                return Ok(Submission {
                    job_id: job_id.to_owned(),
                    attempts,
                });
            }
            Ok(out) => format!("{:?}", out.entries()),
            Err(e) => aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("PutEvents kept failing ({failure}) until the deadline");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// The `source` of the harness's upstream publisher.
pub const UPSTREAM_SOURCE: &str = "chaos.upstream";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_mixes_models_outcomes_and_paths_and_is_reproducible() {
        let users = vec!["a".to_owned(), "b".to_owned()];
        let plan1 = plan(200, &users, Duration::from_secs(100), 9);
        let plan2 = plan(200, &users, Duration::from_secs(100), 9);
        assert_eq!(
            plan1.iter().map(|p| p.params.clone()).collect::<Vec<_>>(),
            plan2.iter().map(|p| p.params.clone()).collect::<Vec<_>>()
        );
        let count = |f: &dyn Fn(&Planned) -> bool| plan1.iter().filter(|p| f(p)).count();
        assert!(count(&|p| p.model == "sir") > 40);
        assert!(count(&|p| p.model == "spin") > 60);
        assert!(count(&|p| p.expected != Expected::Succeeded) > 15);
        assert!(count(&|p| p.via == Via::Bus) > 20);
        assert!(
            plan1
                .iter()
                .filter(|p| p.params["initialInfected"] == 500)
                .all(|p| p.via == Via::Bus),
            "invalid parameters would be refused at submit"
        );
        assert!(count(&|p| p.via == Via::HttpTwice) > 20);
        assert!(plan1.iter().all(|p| p.at <= Duration::from_secs(100)));
    }
}
