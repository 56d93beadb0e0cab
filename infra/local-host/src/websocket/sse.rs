//! The Server-Sent Events fallback: one channel's frames for clients whose proxies block
//! WebSocket, `GET <sse_path>?channel=..&since=..&token=..`.
//!
//! It is a gateway connection over another transport, so the WebSocket API's functions
//! serve it unchanged: the request gets a connection id; `$connect` is invoked with its
//! headers and query string (a non-2xx status refuses it with that status); then the
//! route `subscribe` selects (or `$default`) is invoked with the body
//! `{"action":"subscribe","channel":..,"since":..}`, `since` being the `Last-Event-ID`
//! header when EventSource reconnects, else the `since` parameter. Every
//! `POST @connections/{id}` becomes an event, `data: <payload>`, with `id: <offset>` when
//! the payload is a JSON object with a numeric `offset`, so a reconnecting EventSource
//! resumes where it stopped. The subscription's route response, if any, is an event too;
//! one with `"type":"error"` (or a gateway error such as `Forbidden`) is sent as
//! `event: error` and ends the stream: the client should then close its EventSource
//! rather than let it reconnect. A comment line goes out every keep-alive interval, which
//! also reveals a client that is gone; then `$disconnect` runs. The maximum duration
//! applies; the idle timeout does not, since an SSE client never sends.
//!
//! On AWS this transport would be a separate streaming endpoint (e.g. a Lambda function
//! URL with response streaming) in front of the same notifier; it is not built.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse as _, Response};
use http::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Admission, Inbound, Reply, Shared};

/// How many events may wait for a slow SSE client.
const EVENT_QUEUE: usize = 8;

/// `GET <sse_path>`.
pub(super) async fn serve(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    let query: Vec<(String, String)> =
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|q| q.0)
            .unwrap_or_default();
    let param = |name: &str| {
        query
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let Some(channel) = param("channel").filter(|c| !c.is_empty()) else {
        return super::status_response(
            StatusCode::BAD_REQUEST,
            json!({ "message": "the channel parameter is required" }).to_string(),
        );
    };
    let last_event_id = parts
        .headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let since = last_event_id.or_else(|| param("since"));

    let info = Arc::new(super::socket::describe(super::connection_id(), &parts));
    if let Admission::Refused(response) = shared.connect(&info, &parts).await {
        return response;
    }
    let (sender, outbound) = mpsc::channel(shared.config.outbound_queue.max(1));
    shared
        .connections
        .insert(Arc::clone(&info), super::connections::Outlet::Queue(sender));
    tracing::info!(connection_id = %info.id, channel = %channel, "SSE connected");

    let mut subscribe = json!({ "action": "subscribe", "channel": channel });
    if let Some(since) = since {
        subscribe["since"] = match since.trim().parse::<u64>() {
            Ok(n) => json!(n),
            Err(_) => Value::String(since),
        };
    }
    let (events, stream) = mpsc::channel(EVENT_QUEUE);
    shared.tracker.spawn(run(
        Arc::clone(&shared),
        info,
        subscribe.to_string(),
        outbound,
        events,
    ));
    let stream = futures::stream::unfold(stream, |mut rx: mpsc::Receiver<Event>| async move {
        rx.recv()
            .await
            .map(|event| (Ok::<_, Infallible>(event), rx))
    });
    Sse::new(stream).into_response()
}

async fn run(
    shared: Arc<Shared>,
    info: Arc<super::ConnectionInfo>,
    subscribe: String,
    mut outbound: mpsc::Receiver<Bytes>,
    events: mpsc::Sender<Event>,
) {
    let config = &shared.config;
    let window = config.keep_alive_window();
    let shutdown = shared.shutdown.clone();
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    let closes = tokio::time::sleep(config.max_duration);
    tokio::pin!(closes);
    let mut keep_alive = tokio::time::interval_at(
        Instant::now() + config.keep_alive_interval,
        config.keep_alive_interval,
    );
    let subscription = {
        let shared = Arc::clone(&shared);
        let info = Arc::clone(&info);
        async move { shared.message(&info, Inbound::Text(subscribe)).await }
    };
    tokio::pin!(subscription);
    let mut subscribed = false;

    let (code, reason) = loop {
        tokio::select! {
            () = &mut cancelled => break (1001, "Going away"),
            () = &mut closes => break (1001, "Going away"),
            () = events.closed() => break (1006, "Going away"),
            reply = &mut subscription, if !subscribed => {
                subscribed = true;
                let (event, last) = match reply {
                    Reply::None => continue,
                    Reply::Frame(body) if !is_error(&body) => (data_event(&body), false),
                    Reply::Frame(body) | Reply::Gateway(body) => {
                        (Event::default().event("error").data(sanitize(&body)), true)
                    }
                };
                if !deliver(&events, event, window).await {
                    break (1006, "Going away");
                }
                if last {
                    break (1000, "Subscription refused");
                }
            }
            posted = outbound.recv() => match posted {
                Some(data) => {
                    if !deliver(&events, data_event(&String::from_utf8_lossy(&data)), window).await {
                        break (1006, "Going away");
                    }
                }
                None => break (1000, "Connection deleted"),
            },
            _ = keep_alive.tick() => {
                if !deliver(&events, Event::default().comment("keep-alive"), window).await {
                    break (1006, "Going away");
                }
            }
        }
    };
    shared.connections.remove(&info.id);
    drop(events);
    if !subscribed {
        let _ = subscription.await;
    }
    shared.disconnect(&info, code, reason).await;
}

/// Queues an event for the client; false when the client is gone or does not take it
/// within the keep-alive window.
async fn deliver(events: &mpsc::Sender<Event>, event: Event, window: Duration) -> bool {
    matches!(
        tokio::time::timeout(window, events.send(event)).await,
        Ok(Ok(()))
    )
}

/// `data: <payload>`, with `id: <offset>` for a JSON object with a numeric `offset`.
fn data_event(payload: &str) -> Event {
    let event = Event::default().data(sanitize(payload));
    match offset(payload) {
        Some(offset) => event.id(offset.to_string()),
        None => event,
    }
}

fn offset(payload: &str) -> Option<u64> {
    serde_json::from_str::<Value>(payload)
        .ok()?
        .get("offset")?
        .as_u64()
}

fn is_error(body: &str) -> bool {
    serde_json::from_str::<Value>(body)
        .ok()
        .is_some_and(|v| v.get("type").and_then(Value::as_str) == Some("error"))
}

/// SSE lines end at CR or LF: carriage returns become line feeds so that every line of
/// the payload stays a `data:` line.
fn sanitize(payload: &str) -> String {
    payload.replace("\r\n", "\n").replace('\r', "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_with_an_offset_carry_it_as_their_event_id() {
        assert_eq!(offset(r#"{"channel":"job:1","offset":7}"#), Some(7));
        assert_eq!(offset(r#"{"offset":"7"}"#), None);
        assert_eq!(offset("plain text"), None);
        assert!(is_error(r#"{"type":"error","message":"no"}"#));
        assert!(!is_error(r#"{"type":"subscribed"}"#));
        assert_eq!(sanitize("a\r\nb\rc"), "a\nb\nc");
    }
}
