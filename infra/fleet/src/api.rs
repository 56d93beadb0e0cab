//! The jobs HTTP API as a user calls it, with a bearer token: what `fleet jobs` uses.

use std::time::Duration;

use anyhow::{Context as _, bail};
use contracts::http::ErrorBody;
use contracts::jobs::{JobAccepted, JobPage, JobStatus, JobView};
use serde_json::{Value, json};

use crate::UsageError;

/// How to reach the API.
#[derive(Debug, Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    http: reqwest::Client,
    page_size: usize,
}

/// The most jobs `GET /jobs` returns at once.
const MAX_PAGE: usize = 100;

impl Api {
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Api {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .unwrap_or_default();
        Api {
            base: base.into().trim_end_matches('/').to_string(),
            token: token.into(),
            http,
            page_size: MAX_PAGE,
        }
    }

    /// `POST /jobs`; returns the job id.
    pub async fn submit(
        &self,
        model: &str,
        params: &Value,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<String> {
        let mut request = self
            .http
            .post(format!("{}/jobs", self.base))
            .bearer_auth(&self.token)
            .json(&json!({"model": model, "params": params}));
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("calling {}", self.base))?;
        let accepted: JobAccepted = serde_json::from_value(answer(response).await?)
            .context("the API answered without a jobId")?;
        Ok(accepted.job_id.to_string())
    }

    /// `GET /jobs/{id}`.
    pub async fn status(&self, job_id: &str) -> anyhow::Result<JobView> {
        let response = self
            .http
            .get(format!("{}/jobs/{job_id}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("calling {}", self.base))?;
        let body = answer(response).await?;
        serde_json::from_value(body).context("the API answered with an unexpected job shape")
    }

    /// `POST /jobs/{id}/cancel`: the job as it stands after the cancel (`CANCELLED`).
    pub async fn cancel(&self, job_id: &str) -> anyhow::Result<JobView> {
        let response = self
            .http
            .post(format!("{}/jobs/{job_id}/cancel", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("calling {}", self.base))?;
        let body = answer(response).await?;
        serde_json::from_value(body).context("the API answered with an unexpected job shape")
    }

    /// `GET /jobs/{id}/result`: the short-lived link of the job's result that the API
    /// redirects to, not followed (the link must not carry the bearer token).
    pub async fn result_link(&self, job_id: &str) -> anyhow::Result<String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building an HTTP client")?;
        let response = http
            .get(format!("{}/jobs/{job_id}/result", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("calling {}", self.base))?;
        if !response.status().is_redirection() {
            answer(response).await?;
            bail!("the API answered without a link to the result");
        }
        let link = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .context("the API redirected without a Location")?;
        Ok(link.to_owned())
    }

    /// The job's result: its link, then the bytes behind it, at most `limit` of them.
    pub async fn result(&self, job_id: &str, limit: u64) -> anyhow::Result<Vec<u8>> {
        let link = self.result_link(job_id).await?;
        let mut response = self
            .http
            .get(&link)
            .send()
            .await
            .context("downloading the result")?;
        let status = response.status();
        if !status.is_success() {
            bail!(
                "the result's link answered {status}; ask for a new one (links last a few minutes)"
            );
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.context("downloading the result")? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > limit {
                bail!("the result is larger than {limit} bytes (--max-bytes)");
            }
        }
        Ok(bytes)
    }

    /// Asks `GET /jobs` for pages of `size` jobs (1 to 100; the default is the API's
    /// largest, 100).
    pub fn with_page_size(mut self, size: usize) -> Api {
        self.page_size = size;
        self
    }

    /// Every one of the caller's jobs, newest first, optionally only those in `status`:
    /// `GET /jobs[?status=]`, following `nextToken` to the last page.
    pub async fn list(&self, status: Option<JobStatus>) -> anyhow::Result<Vec<JobView>> {
        let mut jobs = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut url = reqwest::Url::parse(&format!("{}/jobs", self.base))
                .with_context(|| format!("the API address `{}` is not a URL", self.base))?;
            {
                let mut query = url.query_pairs_mut();
                query.append_pair("limit", &self.page_size.to_string());
                if let Some(status) = status {
                    query.append_pair("status", status.as_str());
                }
                if let Some(token) = next.take() {
                    query.append_pair("nextToken", &token);
                }
            }
            let response = self
                .http
                .get(url)
                .bearer_auth(&self.token)
                .send()
                .await
                .with_context(|| format!("calling {}", self.base))?;
            let page: JobPage = serde_json::from_value(answer(response).await?)
                .context("the API answered with an unexpected list shape")?;
            jobs.extend(page.jobs);
            match page.next_token {
                Some(token) => next = Some(token),
                None => return Ok(jobs),
            }
        }
    }

    /// Polls until the job has ended (SUCCEEDED, FAILED or CANCELLED), or `timeout` passes.
    pub async fn wait(&self, job_id: &str, timeout: Duration) -> anyhow::Result<JobView> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let view = self.status(job_id).await?;
            if view.status.is_final() {
                return Ok(view);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "job {job_id} is still {} after {} s",
                    view.status.as_str(),
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

async fn answer(response: reqwest::Response) -> anyhow::Result<Value> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    let message = serde_json::from_value::<ErrorBody>(body)
        .map(|body| body.error)
        .unwrap_or_else(|_| "no details".to_string());
    match status.as_u16() {
        400 => Err(UsageError(format!("the API refused the request: {message}")).into()),
        401 => bail!(
            "unauthorized: pass a valid token with --token or FLEET_TOKEN (locally: `fleet auth token --sub NAME`)"
        ),
        404 => bail!("not found: no such job for this user"),
        409 => bail!("{message}"),
        _ => bail!("the API answered {status}: {message}"),
    }
}
