//! `fleet jobs watch ID`: a job's frames from the notifier's WebSocket, as a progress
//! bar; the outcome decides the exit code.
//!
//! The client resumes as a browser would: it keeps a [`Cursor`] on `job:<id>`, and after
//! a dropped connection reconnects (with backoff) and resubscribes with `since`, so no
//! frame is missed or shown twice. A `discontinuity` (the history no longer reaches back)
//! falls back to the jobs API for the job's state.

use std::time::Duration;

use anyhow::{Context as _, bail};
use contracts::frames::{ClientMessage, Cursor, Frame, kinds};
use contracts::jobs::JobStatus;
use futures::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;

use crate::api::Api;

/// How a watched job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded {
        summary: serde_json::Value,
    },
    Failed {
        error: String,
        cause: String,
    },
    /// Its owner cancelled it.
    Cancelled {
        by: String,
    },
}

/// What the watcher saw, for callers that check it (tests) rather than print it.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The channel's frames, once each, in order.
    pub frames: Vec<Frame>,
    /// Successful WebSocket connections (more than one after a reconnect).
    pub connections: usize,
}

/// How often the watcher pings: API Gateway closes connections idle for 10 minutes.
const PING_EVERY: Duration = Duration::from_secs(60);

/// Watches `job_id` until it succeeds or fails, or `timeout` passes. `on_frame` sees
/// every delivered frame (the CLI draws its progress bar there).
pub async fn watch(
    api: &Api,
    job_id: &str,
    timeout: Duration,
    mut on_frame: impl FnMut(&Frame),
) -> anyhow::Result<(Outcome, Seen)> {
    let channel = format!("job:{job_id}");
    let url = websocket_url(&api.base, &api.token)?;
    let mut cursor = Cursor::new(0);
    let mut seen = Seen::default();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut backoff = Duration::from_millis(200);
    loop {
        let attempt = tokio::time::timeout_at(
            deadline,
            session(&url, &channel, &mut cursor, &mut seen, api, &mut on_frame),
        )
        .await
        .with_context(|| format!("job {job_id} did not finish within {timeout:?}"))?;
        match attempt {
            Ok(outcome) => return Ok((outcome, seen)),
            Err(Session::Refused(message)) => bail!("{message}"),
            Err(Session::Dropped(reason)) => {
                tracing::info!(reason = %reason, since = cursor.since(), "connection lost; resuming");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

enum Session {
    /// The server said no: retrying will not help.
    Refused(String),
    /// The connection went away: reconnect and resume.
    Dropped(String),
}

async fn session(
    url: &str,
    channel: &str,
    cursor: &mut Cursor,
    seen: &mut Seen,
    api: &Api,
    on_frame: &mut impl FnMut(&Frame),
) -> Result<Outcome, Session> {
    let (socket, _) = match tokio_tungstenite::connect_async(url).await {
        Ok(ok) => ok,
        Err(tokio_tungstenite::tungstenite::Error::Http(response))
            if response.status().as_u16() == 401 || response.status().as_u16() == 403 =>
        {
            return Err(Session::Refused(format!(
                "the WebSocket refused the token ({}): get one with `fleet auth token`",
                response.status()
            )));
        }
        Err(e) => return Err(Session::Dropped(e.to_string())),
    };
    seen.connections += 1;
    let (mut tx, mut rx) = socket.split();
    let subscribe = ClientMessage::Subscribe {
        channel: channel.to_owned(),
        since: Some(cursor.since()),
    };
    let text = serde_json::to_string(&subscribe).map_err(|e| Session::Refused(e.to_string()))?;
    tx.send(Message::text(text))
        .await
        .map_err(|e| Session::Dropped(e.to_string()))?;
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        let message = tokio::select! {
            message = rx.next() => message,
            _ = ping.tick() => {
                let text = serde_json::to_string(&ClientMessage::Ping).unwrap_or_default();
                tx.send(Message::text(text)).await.map_err(|e| Session::Dropped(e.to_string()))?;
                continue;
            }
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                return Err(Session::Dropped(format!("closed by the server: {frame:?}")));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(Session::Dropped(e.to_string())),
            None => return Err(Session::Dropped("the connection ended".into())),
        };
        let Ok(frame) = serde_json::from_str::<Frame>(&text) else {
            tracing::warn!(message = %text, "not a frame; ignored");
            continue;
        };
        if frame.kind == kinds::ERROR {
            let message = frame.data["message"].as_str().unwrap_or_default();
            return Err(Session::Refused(format!(
                "cannot watch {channel}: {} ({message})",
                frame.data["code"].as_str().unwrap_or("error")
            )));
        }
        for frame in cursor.accept(frame) {
            if !frame.is_stream() {
                continue;
            }
            on_frame(&frame);
            seen.frames.push(frame.clone());
            if let Some(outcome) = outcome_of(&frame) {
                return Ok(outcome);
            }
            if frame.kind == kinds::DISCONTINUITY {
                // Frames were lost for good: the jobs API knows whether it is over.
                if let Ok(view) = api.status(frame.channel.trim_start_matches("job:")).await {
                    match view.status {
                        JobStatus::Succeeded => {
                            let summary = view.result.map(|r| r.summary).unwrap_or_default();
                            return Ok(Outcome::Succeeded { summary });
                        }
                        JobStatus::Failed => {
                            let (error, cause) =
                                view.error.map(|e| (e.error, e.cause)).unwrap_or_default();
                            return Ok(Outcome::Failed { error, cause });
                        }
                        JobStatus::Cancelled => {
                            let by = view.error.map(|e| e.cause).unwrap_or_default();
                            return Ok(Outcome::Cancelled { by });
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

fn outcome_of(frame: &Frame) -> Option<Outcome> {
    let text = |key: &str| frame.data[key].as_str().unwrap_or_default().to_owned();
    match frame.kind.as_str() {
        "JobSucceeded" => Some(Outcome::Succeeded {
            summary: frame.data["summary"].clone(),
        }),
        "JobFailed" => Some(Outcome::Failed {
            error: text("error"),
            cause: text("cause"),
        }),
        "JobCancelled" => Some(Outcome::Cancelled {
            by: text("cancelledBy"),
        }),
        _ => None,
    }
}

/// `http://host:port` → `ws://host:port/ws?token=...` (`https` → `wss`).
pub fn websocket_url(base: &str, token: &str) -> anyhow::Result<String> {
    let rest = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        bail!("the API address {base:?} must start with http:// or https://")
    };
    let token: String =
        percent_encoding::utf8_percent_encode(token, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    Ok(format!("{}/ws?token={token}", rest.trim_end_matches('/')))
}
