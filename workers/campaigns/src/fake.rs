//! A fake email provider for local runs and tests: `POST /campaigns` answers `201` with a
//! new campaign id (or, for a `reference` it has seen, `200` with that campaign's id and
//! nothing more, as the contract asks), then reports the campaign's progress to the
//! webhook, signed as a real provider would (`contracts::callbacks::signature`), one
//! delivery per status of its script (`pending`, `pending`, `sent` by default). Like real
//! providers it retries a delivery until it gets a 2xx (a 404 means the flow has not
//! registered its task token yet), and sends the next status only after the previous one
//! was accepted.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use backon::{ExponentialBuilder, Retryable};
use contracts::callbacks::{WebhookDelivery, signature};
use contracts::campaigns::{ProviderCampaign, ProviderCampaignCreated};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// The provider name in the webhook path (`/callbacks/<provider>`).
    pub provider: String,
    /// The shared webhook secret.
    pub secret: Vec<u8>,
    /// The statuses reported for each campaign, in order (see also
    /// [`FakeProvider::set_script`]).
    pub script: Vec<String>,
    /// Where to listen (port 0: a free one).
    pub addr: SocketAddr,
    /// How long one delivery is retried before the fake gives up on it.
    pub give_up_after: Duration,
}

impl FakeConfig {
    pub fn new(provider: &str, secret: &[u8]) -> FakeConfig {
        FakeConfig {
            provider: provider.to_string(),
            secret: secret.to_vec(),
            script: ["pending", "pending", "sent"].map(String::from).to_vec(),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            give_up_after: Duration::from_secs(120),
        }
    }
}

/// One webhook call the fake made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub delivery_id: String,
    pub campaign_id: String,
    pub status: String,
    /// The HTTP status the webhook answered; `None` when the call failed.
    pub answered: Option<u16>,
}

struct Shared {
    config: FakeConfig,
    /// The script for campaigns accepted from now on (starts as `config.script`).
    script: RwLock<Vec<String>>,
    webhook: RwLock<Option<String>>,
    /// Campaign ids by `reference`, in the order they were created.
    campaigns: Mutex<Vec<(String, String)>>,
    attempts: Mutex<Vec<Attempt>>,
    http: reqwest::Client,
    deliveries: Mutex<JoinSet<()>>,
    shutdown: CancellationToken,
}

/// The running fake provider.
pub struct FakeProvider {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl FakeProvider {
    /// Binds and serves. Set the webhook with [`FakeProvider::set_webhook`] before the
    /// first campaign arrives (it is known only once the local host listens).
    pub async fn start(config: FakeConfig) -> std::io::Result<FakeProvider> {
        let listener = tokio::net::TcpListener::bind(config.addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            script: RwLock::new(config.script.clone()),
            config,
            webhook: RwLock::new(None),
            campaigns: Mutex::new(Vec::new()),
            attempts: Mutex::new(Vec::new()),
            http: reqwest::Client::new(),
            deliveries: Mutex::new(JoinSet::new()),
            shutdown: CancellationToken::new(),
        });
        let app = Router::new()
            .route("/campaigns", post(create))
            .with_state(shared.clone());
        let stop = shared.shutdown.clone();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "the fake provider stopped with an error");
            }
        });
        tracing::info!(%addr, "fake email provider listening");
        Ok(FakeProvider {
            shared,
            addr,
            server,
        })
    }

    /// The provider API's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes the statuses reported for campaigns accepted from now on, e.g.
    /// `["pending", "failed"]`.
    pub fn set_script(&self, script: &[&str]) {
        if let Ok(mut s) = self.shared.script.write() {
            *s = script.iter().map(|s| (*s).to_string()).collect();
        }
    }

    /// The webhook secret it signs with (tests sign their own deliveries with it).
    pub fn secret(&self) -> &[u8] {
        &self.shared.config.secret
    }

    pub fn set_webhook(&self, url: impl Into<String>) {
        if let Ok(mut w) = self.shared.webhook.write() {
            *w = Some(url.into());
        }
    }

    /// The ids of the campaigns it created, oldest first.
    pub fn campaigns(&self) -> Vec<String> {
        self.shared
            .campaigns
            .lock()
            .map(|c| c.iter().map(|(_, id)| id.clone()).collect())
            .unwrap_or_default()
    }

    /// Every webhook call so far.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.shared
            .attempts
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    /// Stops serving and abandons the deliveries in flight; waits for all of them.
    pub async fn stop(self) {
        self.shared.shutdown.cancel();
        let mut deliveries = match self.shared.deliveries.lock() {
            Ok(mut d) => std::mem::take(&mut *d),
            Err(_) => JoinSet::new(),
        };
        deliveries.abort_all();
        while deliveries.join_next().await.is_some() {}
        let _ = self.server.await;
    }
}

async fn create(
    State(shared): State<Arc<Shared>>,
    axum::Json(campaign): axum::Json<ProviderCampaign>,
) -> (StatusCode, axum::Json<ProviderCampaignCreated>) {
    let id = {
        let Ok(mut campaigns) = shared.campaigns.lock() else {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(ProviderCampaignCreated { id: String::new() }),
            );
        };
        let known = campaigns.iter().find(|(r, _)| *r == campaign.reference);
        if let Some((_, id)) = known {
            tracing::info!(campaign_id = %id, reference = %campaign.reference, "fake provider already has this campaign");
            return (
                StatusCode::OK,
                axum::Json(ProviderCampaignCreated { id: id.clone() }),
            );
        }
        let id = format!("fake-{}", uuid::Uuid::now_v7().simple());
        campaigns.push((campaign.reference.clone(), id.clone()));
        id
    };
    tracing::info!(campaign_id = %id, reference = %campaign.reference, recipients = campaign.recipients.len(), "fake provider accepted a campaign");
    let script = shared.script.read().map(|s| s.clone()).unwrap_or_default();
    let task = deliver_script(shared.clone(), id.clone(), script);
    if let Ok(mut deliveries) = shared.deliveries.lock() {
        deliveries.spawn(task);
    }
    (
        StatusCode::CREATED,
        axum::Json(ProviderCampaignCreated { id }),
    )
}

async fn deliver_script(shared: Arc<Shared>, campaign_id: String, script: Vec<String>) {
    for (n, status) in script.iter().enumerate() {
        let delivery = WebhookDelivery {
            delivery_id: format!("{campaign_id}-{n}"),
            external_id: campaign_id.clone(),
            status: status.clone(),
            data: None,
        };
        let deliver = || deliver_once(&shared, &delivery);
        let retried = deliver
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(1))
                    .with_total_delay(Some(shared.config.give_up_after))
                    .without_max_times(),
            )
            .await;
        if let Err(e) = retried {
            tracing::warn!(campaign_id = %campaign_id, status = %status, error = %e, "fake provider gave up on a delivery");
            return;
        }
    }
}

/// One signed POST; an error for anything but a 2xx, so the caller retries.
async fn deliver_once(shared: &Shared, delivery: &WebhookDelivery) -> Result<(), String> {
    let url = shared
        .webhook
        .read()
        .ok()
        .and_then(|w| w.clone())
        .ok_or_else(|| "no webhook URL set yet".to_string())?;
    let body = serde_json::to_vec(delivery).map_err(|e| e.to_string())?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let header = signature::sign(&shared.config.secret, now, &body);
    let answer = shared
        .http
        .post(&url)
        .header(signature::HEADER, header)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let answered = answer.as_ref().ok().map(|r| r.status().as_u16());
    if let Ok(mut attempts) = shared.attempts.lock() {
        attempts.push(Attempt {
            delivery_id: delivery.delivery_id.clone(),
            campaign_id: delivery.external_id.clone(),
            status: delivery.status.clone(),
            answered,
        });
    }
    let response = answer.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("the webhook answered {}", response.status()));
    }
    Ok(())
}
