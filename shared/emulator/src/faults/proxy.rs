//! The proxy itself: an HTTP/1 server on loopback that forwards every request to the
//! emulator and injects what the plan decides.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aws_config::SdkConfig;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::{request, response};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::protocol::{self, Call, Injected, Protocol};
use super::{Decision, Failure, FaultKind, FaultPlan, FaultReport, decide};
use crate::EmulatorError;

/// A running fault proxy on `127.0.0.1`. Dropping it stops it too; [`stop`](Self::stop)
/// also waits until it has.
pub struct FaultProxy {
    endpoint: String,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`
    /// (`http://127.0.0.1:5000`, e.g. [`Emulator::endpoint`](crate::Emulator::endpoint)).
    /// Faults are enabled from the start.
    pub async fn start(upstream: &str, plan: FaultPlan) -> Result<FaultProxy, EmulatorError> {
        let upstream = upstream.trim_end_matches('/').to_string();
        let valid = upstream.starts_with("http://")
            && format!("{upstream}/")
                .parse::<Uri>()
                .is_ok_and(|u| u.authority().is_some() && u.path() == "/");
        if !valid {
            return Err(EmulatorError::Configure(format!(
                "the fault proxy's upstream {upstream:?} is not an http://host:port URL"
            )));
        }
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| EmulatorError::Listen { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| EmulatorError::Listen { addr, source })?;
        let shared = Arc::new(Shared {
            upstream,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(plan.seed)),
            plan,
            enabled: AtomicBool::new(true),
            report: Mutex::new(FaultReport::default()),
            client: Client::builder(TokioExecutor::new()).build_http(),
        });
        let (shutdown, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, Arc::clone(&shared), stopped));
        Ok(FaultProxy {
            endpoint: format!("http://{local}"),
            shared,
            shutdown,
            task,
        })
    }

    /// `http://127.0.0.1:<port>`: the endpoint to give every client instead of moto's.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// An SDK config for the proxy, as [`sdk_config_for`](crate::sdk_config_for) makes
    /// one for the emulator.
    pub fn sdk_config(&self) -> SdkConfig {
        crate::sdk_config_for(&self.endpoint)
    }

    /// Off, the proxy only forwards (for a test's setup and its checks); calls are still
    /// counted.
    pub fn set_enabled(&self, on: bool) {
        self.shared.enabled.store(on, Ordering::SeqCst);
    }

    pub fn is_enabled(&self) -> bool {
        self.shared.enabled.load(Ordering::SeqCst)
    }

    pub fn plan(&self) -> &FaultPlan {
        &self.shared.plan
    }

    /// What the proxy has seen and injected so far.
    pub fn report(&self) -> FaultReport {
        self.shared.report().clone()
    }

    /// Stops listening, closes open connections and waits until the proxy has stopped.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "the fault proxy's task failed");
        }
    }
}

/// The closing of a connection without an answer: hyper ends a connection whose service
/// returns an error without writing anything.
#[derive(Debug, thiserror::Error)]
#[error("the fault proxy dropped the connection")]
struct Dropped;

struct Shared {
    upstream: String,
    plan: FaultPlan,
    enabled: AtomicBool,
    // A std mutex: it is never held across an await.
    rng: Mutex<ChaCha8Rng>,
    report: Mutex<FaultReport>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// Accepts connections until told to stop or the proxy is dropped; each connection is a
/// task of a set this loop owns, so none outlives it.
async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            // A send or the sender's drop: either way, stop.
            _ = stopped.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = Arc::clone(&shared);
                    connections.spawn(async move {
                        let service = service_fn(move |request| {
                            let shared = Arc::clone(&shared);
                            async move { shared.handle(request).await }
                        });
                        let served = http1::Builder::new()
                            .keep_alive(true)
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                        if let Err(e) = served {
                            tracing::trace!(error = %e, "a fault proxy connection ended");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors, typically: give connections time to close.
                    tracing::warn!(error = %e, "the fault proxy could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

impl Shared {
    async fn handle(&self, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Dropped> {
        let (parts, body) = request.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                tracing::debug!(error = %e, "the fault proxy could not read a request body");
                return Err(Dropped);
            }
        };
        let call = protocol::identify(&parts, &body);
        let decision = self.decide(&call);
        if let Some(latency) = decision.latency {
            tokio::time::sleep(latency).await;
        }
        match decision.failure {
            Some(Failure::Throttle) => {
                return Ok(protocol::error_response(&call, Injected::Throttle));
            }
            Some(Failure::ServerError { unavailable }) => {
                let error = match unavailable {
                    true => Injected::ServiceUnavailable,
                    false => Injected::InternalFailure,
                };
                return Ok(protocol::error_response(&call, error));
            }
            Some(Failure::Drop { after_forwarding }) => {
                if after_forwarding {
                    let _ = self
                        .forward(&parts.method, &parts.uri, &parts.headers, body)
                        .await;
                }
                return Err(Dropped);
            }
            None => {}
        }
        let (answer, answer_body) = match self
            .forward(&parts.method, &parts.uri, &parts.headers, body.clone())
            .await
        {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(upstream = %self.upstream, error = %e, "the fault proxy could not reach the emulator");
                let mut response = Response::new(Full::new(Bytes::from_static(
                    b"the fault proxy could not reach the emulator",
                )));
                *response.status_mut() = StatusCode::BAD_GATEWAY;
                return Ok(response);
            }
        };
        let receive = call.service == "sqs"
            && call.operation == "ReceiveMessage"
            && matches!(call.protocol, Protocol::AwsJson { .. });
        self.record_sizes(&call, &body, &answer_body, receive);
        if answer.status.is_success() && receive {
            self.duplicate_receives(&call, &parts, &body, &answer_body)
                .await;
        }
        Ok(Response::from_parts(answer, Full::new(answer_body)))
    }

    /// Counts the call and, when enabled, rolls its faults and counts those.
    fn decide(&self, call: &Call) -> Decision {
        let key = call.key();
        self.report().record_call(&key);
        if !self.enabled.load(Ordering::SeqCst) {
            return Decision::default();
        }
        let decision = decide(&self.plan, &mut *self.rng(), &call.service, &call.operation);
        let kinds = decision
            .latency
            .map(|_| FaultKind::Latency)
            .into_iter()
            .chain(decision.failure.map(Failure::kind));
        for kind in kinds {
            self.report().record_fault(&key, kind);
            tracing::debug!(
                service = %call.service,
                operation = %call.operation,
                kind = ?kind,
                latency_ms = decision.latency.map(|l| l.as_millis() as u64),
                failure = ?decision.failure,
                "fault injected"
            );
        }
        decision
    }

    /// Adds an answered call's sizes to the report, and to its queue's for SQS.
    fn record_sizes(&self, call: &Call, body: &[u8], answer: &[u8], receive: bool) {
        let queue = (call.service == "sqs")
            .then(|| serde_json::from_slice::<Value>(body).ok())
            .flatten()
            .and_then(|v| {
                let url = v.get("QueueUrl")?.as_str()?;
                Some(url.rsplit('/').next().unwrap_or(url).to_string())
            });
        let empty_receive = receive
            && serde_json::from_slice::<Value>(answer)
                .ok()
                .and_then(|v| v.get("Messages")?.as_array().map(Vec::is_empty))
                .unwrap_or(true);
        self.report().record_sizes(
            &call.key(),
            queue.as_deref(),
            body.len(),
            answer.len(),
            empty_receive,
        );
    }

    /// Makes each message a `ReceiveMessage` returned visible again at the rule's rate,
    /// with a `ChangeMessageVisibility` to 0 shaped like the receive it follows (moto
    /// checks no signature, so the receive's `Authorization` serves).
    async fn duplicate_receives(
        &self,
        call: &Call,
        receive: &request::Parts,
        receive_body: &[u8],
        answer: &[u8],
    ) {
        let rate = self
            .plan
            .rate(FaultKind::DuplicateReceive, &call.service, &call.operation);
        if rate <= 0.0 || !self.enabled.load(Ordering::SeqCst) {
            return;
        }
        let queue_url = serde_json::from_slice::<Value>(receive_body)
            .ok()
            .and_then(|v| v.get("QueueUrl")?.as_str().map(str::to_string));
        let Some(queue_url) = queue_url else {
            return;
        };
        let handles: Vec<String> = serde_json::from_slice::<Value>(answer)
            .ok()
            .and_then(|v| v.get("Messages")?.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|m| m.get("ReceiptHandle")?.as_str().map(str::to_string))
            .collect();
        let chosen: Vec<String> = {
            let mut rng = self.rng();
            handles
                .into_iter()
                .filter(|_| rng.random::<f64>() < rate)
                .collect()
        };
        let mut headers = HeaderMap::new();
        for name in [
            header::HOST,
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("x-amz-date"),
        ] {
            if let Some(value) = receive.headers.get(&name) {
                headers.insert(name, value.clone());
            }
        }
        headers.insert(
            HeaderName::from_static("x-amz-target"),
            HeaderValue::from_static("AmazonSQS.ChangeMessageVisibility"),
        );
        for handle in chosen {
            let body = serde_json::json!({
                "QueueUrl": queue_url,
                "ReceiptHandle": handle,
                "VisibilityTimeout": 0,
            });
            let body = Bytes::from(body.to_string());
            match self
                .forward(&Method::POST, &Uri::from_static("/"), &headers, body)
                .await
            {
                Ok((answer, _)) if answer.status.is_success() => {
                    self.report()
                        .record_fault(&call.key(), FaultKind::DuplicateReceive);
                    tracing::debug!(
                        service = %call.service,
                        operation = %call.operation,
                        kind = ?FaultKind::DuplicateReceive,
                        queue_url = %queue_url,
                        "fault injected"
                    );
                }
                Ok((answer, _)) => {
                    tracing::warn!(status = %answer.status, queue_url = %queue_url, "the fault proxy's ChangeMessageVisibility was refused");
                }
                Err(e) => {
                    tracing::warn!(error = %e, queue_url = %queue_url, "the fault proxy's ChangeMessageVisibility failed");
                }
            }
        }
    }

    /// Sends a request to the emulator as it came, less hop-by-hop headers (the bodies
    /// are whole, so hyper frames them anew), and reads the whole answer.
    async fn forward(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<(response::Parts, Bytes), Box<dyn std::error::Error + Send + Sync>> {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method.clone();
        *request.uri_mut() = format!("{}{path}", self.upstream).parse()?;
        *request.headers_mut() = without_hop_by_hop(headers);
        let answer = self.client.request(request).await?;
        let (mut parts, body) = answer.into_parts();
        let body = body.collect().await?.to_bytes();
        parts.headers = without_hop_by_hop(&parts.headers);
        Ok((parts, body))
    }

    fn rng(&self) -> MutexGuard<'_, ChaCha8Rng> {
        // A panic while rolling leaves the generator as usable as before.
        self.rng.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn report(&self) -> MutexGuard<'_, FaultReport> {
        self.report.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `headers` without those that describe one connection rather than the message.
/// `Content-Length` stays: the body is forwarded whole, and a `HEAD` answer needs it.
fn without_hop_by_hop(headers: &HeaderMap) -> HeaderMap {
    let mut kept = headers.clone();
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::EXPECT,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        kept.remove(name);
    }
    kept
}
