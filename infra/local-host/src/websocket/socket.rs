//! One WebSocket connection: the handshake behind `$connect`, then one task that reads the
//! client's messages (handing them to their routes one at a time), writes the routes'
//! replies, pings, and enforces the idle timeout, the maximum duration and the keep-alive
//! window with a single timer. What is posted to the connection is written by the post
//! itself, through the connection's [`Writer`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts as _, Request, State};
use axum::response::{IntoResponse as _, Response};
use futures::future::BoxFuture;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt as _, StreamExt as _};
use http::header::{HOST, USER_AGENT};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::connections::Outlet;
use super::{Admission, ConnectionInfo, Inbound, Reply, Shared};

/// How many client messages may wait while one is being handled; beyond that the
/// connection is not read until the queue drains (TCP pushes back on the client).
const MAX_PENDING: usize = 16;
/// The read buffer of each connection: small, since most connections are idle; it grows
/// for a large message.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// `GET <path>`: `$connect`, then the upgrade.
pub(super) async fn upgrade(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let info = Arc::new(describe(super::connection_id(), &parts));
    if let Admission::Refused(response) = shared.connect(&info, &parts).await {
        return response;
    }

    let max = shared.config.max_message_bytes;
    let on_failure = {
        let shared = Arc::clone(&shared);
        let info = Arc::clone(&info);
        let tracker = shared.tracker.clone();
        move |error: axum::Error| {
            tracing::warn!(connection_id = %info.id, error = %error, "the upgrade failed");
            tracker.spawn(async move {
                shared.disconnect(&info, 1006, "Upgrade failed").await;
            });
        }
    };
    let token = shared.tracker.token();
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        // Frames go out as they are written; the buffer grows only while a write stalls.
        .write_buffer_size(0)
        .max_message_size(max)
        .max_frame_size(max)
        .on_failed_upgrade(on_failure)
        .on_upgrade(move |socket| async move {
            // Posts reach the connection from here on (on AWS too, not from `$connect`).
            let (sink, stream) = socket.split();
            let writer = Arc::new(Writer::new(sink, shared.config.keep_alive_window()));
            shared
                .connections
                .insert(Arc::clone(&info), Outlet::Socket(Arc::clone(&writer)));
            tracing::info!(connection_id = %info.id, source_ip = %info.source_ip, "WebSocket connected");
            run(shared, info, writer, stream).await;
            drop(token);
        })
}

/// What API Gateway records about the client from its upgrade request.
pub(super) fn describe(id: String, parts: &http::request::Parts) -> ConnectionInfo {
    let source_ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    let header = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v: &http::HeaderValue| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    ConnectionInfo::new(id, source_ip, header(USER_AGENT), header(HOST))
}

/// Why a connection ended: the `$disconnect` code and reason, and the close frame to send
/// the client, if one can be sent.
#[derive(Clone)]
pub(super) struct Ending {
    code: u16,
    reason: String,
    close: Option<CloseFrame>,
}

impl Ending {
    fn closing(code: u16, reason: &str) -> Ending {
        Ending {
            code,
            reason: reason.to_owned(),
            close: Some(CloseFrame {
                code,
                reason: reason.into(),
            }),
        }
    }

    fn abrupt(reason: &str) -> Ending {
        Ending {
            code: 1006,
            reason: reason.to_owned(),
            close: None,
        }
    }
}

/// What became of a frame posted to a connection.
pub(super) enum Posted {
    /// Handed to the kernel for the client.
    Written,
    /// The connection has ended, or is ending.
    Gone,
    /// The writes ahead of it did not finish in time: the client is slow.
    Busy,
}

/// The writing half of a WebSocket connection, shared by its task (route replies, pings,
/// the close frame) and by every `POST @connections` to it. A post writes the frame itself,
/// in the caller's task: a broadcast's frames cost no wake-up of each connection's task.
/// The lock keeps each connection's frames whole and in order, and makes a post to a slow
/// client wait for the writes ahead of it.
pub(super) struct Writer {
    sink: tokio::sync::Mutex<SplitSink<WebSocket, Message>>,
    /// How long one write may take before the client counts as gone.
    window: Duration,
    /// Why the connection must end, once a post or `DELETE` decided it; its task is told
    /// through `ended` and closes the connection.
    ending: Mutex<Option<Ending>>,
    ended: Notify,
}

impl Writer {
    fn new(sink: SplitSink<WebSocket, Message>, window: Duration) -> Writer {
        Writer {
            sink: tokio::sync::Mutex::new(sink),
            window,
            ending: Mutex::new(None),
            ended: Notify::new(),
        }
    }

    /// Writes a posted body as one frame, after the writes ahead of it, waiting at most
    /// `wait` for them.
    pub(super) async fn post(&self, data: Bytes, wait: Duration) -> Posted {
        let mut sink = match self.sink.try_lock() {
            Ok(sink) => sink,
            Err(_) => match tokio::time::timeout(wait, self.sink.lock()).await {
                Ok(sink) => sink,
                Err(_) => return Posted::Busy,
            },
        };
        if self.ending().is_some() {
            return Posted::Gone;
        }
        match send(&mut sink, posted_message(data), self.window).await {
            Ok(()) => Posted::Written,
            Err(ending) => {
                self.end(ending);
                Posted::Gone
            }
        }
    }

    /// Ends the connection as `DELETE @connections` does, after the writes in flight.
    pub(super) fn delete(&self) {
        self.end(Ending::closing(1000, "Connection deleted"));
    }

    /// The task's own writes, after the posts ahead of them; none once the connection is
    /// ending (a post found the client gone while the task waited).
    async fn write(&self, message: Message) -> Result<(), Ending> {
        let mut sink = self.sink.lock().await;
        if let Some(ending) = self.ending() {
            return Err(ending);
        }
        send(&mut sink, message, self.window).await
    }

    /// The close frame, after the posts ahead of it, whatever ended the connection.
    async fn close(&self, frame: CloseFrame) {
        let mut sink = self.sink.lock().await;
        // Best effort: the client may already be gone.
        let _ = send(&mut sink, Message::Close(Some(frame)), self.window).await;
    }

    /// Records why the connection must end (the first reason stays) and tells its task.
    fn end(&self, ending: Ending) {
        self.lock_ending().get_or_insert(ending);
        self.ended.notify_one();
    }

    fn ending(&self) -> Option<Ending> {
        self.lock_ending().clone()
    }

    fn lock_ending(&self) -> std::sync::MutexGuard<'_, Option<Ending>> {
        // An `Option` set once stays consistent whatever panicked while holding it.
        self.ending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn run(
    shared: Arc<Shared>,
    info: Arc<ConnectionInfo>,
    writer: Arc<Writer>,
    mut stream: SplitStream<WebSocket>,
) {
    let config = &shared.config;
    let window = config.keep_alive_window();
    let opened = Instant::now();
    let closes_at = opened + config.max_duration;
    let mut last_heard = opened;
    let mut last_message = opened;
    let mut next_ping = opened + config.keep_alive_interval;
    let mut pending: VecDeque<Inbound> = VecDeque::new();
    let mut in_flight: Option<BoxFuture<'static, Reply>> = None;
    let shutdown = shared.shutdown.clone();
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    let timer = tokio::time::sleep_until(next_ping);
    tokio::pin!(timer);

    let ending = loop {
        if in_flight.is_none()
            && let Some(message) = pending.pop_front()
        {
            let shared = Arc::clone(&shared);
            let info = Arc::clone(&info);
            in_flight = Some(Box::pin(
                async move { shared.message(&info, message).await },
            ));
        }
        // A client is gone once the window has passed without a frame from it: checked
        // at that moment, not at the next ping, which could come an interval later.
        let deadline = next_ping
            .min(last_heard + window)
            .min(last_message + config.idle_timeout)
            .min(closes_at);
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        tokio::select! {
            () = &mut cancelled => break Ending::closing(1001, "Going away"),
            () = writer.ended.notified() => {
                break writer.ending().unwrap_or_else(|| Ending::abrupt("Going away"));
            }
            frame = stream.next(), if pending.len() < MAX_PENDING => {
                let now = Instant::now();
                match frame {
                    None => break Ending::abrupt("Connection closed without a close frame"),
                    Some(Err(error)) => break read_error(&error),
                    Some(Ok(message)) => {
                        last_heard = now;
                        match message {
                            Message::Text(text) => {
                                last_message = now;
                                info.touch();
                                pending.push_back(Inbound::Text(text.as_str().to_owned()));
                            }
                            Message::Binary(bytes) => {
                                last_message = now;
                                info.touch();
                                pending.push_back(Inbound::Binary(bytes.to_vec()));
                            }
                            // tungstenite answers pings itself.
                            Message::Ping(_) | Message::Pong(_) => {}
                            Message::Close(frame) => {
                                let (code, reason) = frame
                                    .map(|f| (f.code, f.reason.as_str().to_owned()))
                                    .unwrap_or((1005, String::new()));
                                // tungstenite replies to the close frame itself.
                                break Ending { code, reason, close: None };
                            }
                        }
                    }
                }
            }
            reply = async {
                match in_flight.as_mut() {
                    Some(future) => future.await,
                    None => std::future::pending().await,
                }
            }, if in_flight.is_some() => {
                in_flight = None;
                // As on API Gateway, what the route posted to the connection (a replay)
                // reaches the client before the route's response: every post that was
                // answered has been written.
                if let Reply::Frame(frame) | Reply::Gateway(frame) = reply
                    && let Err(ending) = writer.write(Message::Text(frame.into())).await
                {
                    break ending;
                }
            }
            () = &mut timer => {
                let now = Instant::now();
                if now >= closes_at {
                    break Ending::closing(1001, "Going away");
                }
                if now >= last_message + config.idle_timeout {
                    break Ending::closing(1001, "Going away");
                }
                if now >= last_heard + window {
                    tracing::info!(connection_id = %info.id, "no answer within the keep-alive window");
                    break Ending::abrupt("Going away");
                }
                if now >= next_ping {
                    if let Err(ending) = writer.write(Message::Ping(Bytes::new())).await {
                        break ending;
                    }
                    next_ping = now + config.keep_alive_interval;
                }
            }
        }
    };

    shared.connections.remove(&info.id);
    if let Some(frame) = ending.close {
        writer.close(frame).await;
    }
    // The socket closes once the posts still holding the writer are done.
    drop(stream);
    drop(writer);
    // The message being handled finishes, as its Lambda invocation would; its reply has
    // nowhere to go. Messages still waiting are dropped with the connection.
    if let Some(future) = in_flight {
        let _ = future.await;
    }
    if !pending.is_empty() {
        tracing::warn!(connection_id = %info.id, dropped = pending.len(), "messages dropped with the connection");
    }
    shared.disconnect(&info, ending.code, &ending.reason).await;
}

/// A posted body as a frame: text when it is UTF-8, as API Gateway sends it.
fn posted_message(data: Bytes) -> Message {
    // Without copying: the text shares the posted body's buffer.
    match axum::extract::ws::Utf8Bytes::try_from(data.clone()) {
        Ok(text) => Message::Text(text),
        Err(_) => Message::Binary(data),
    }
}

/// Writes one frame; a write that cannot finish within the keep-alive window means the
/// client is gone. A write that finishes at once (the usual case) arms no timer.
async fn send(
    sink: &mut SplitSink<WebSocket, Message>,
    message: Message,
    window: Duration,
) -> Result<(), Ending> {
    let mut sending = std::pin::pin!(sink.send(message));
    let sent = match futures::poll!(sending.as_mut()) {
        std::task::Poll::Ready(sent) => sent,
        std::task::Poll::Pending => match tokio::time::timeout(window, sending).await {
            Ok(sent) => sent,
            Err(_) => return Err(Ending::abrupt("Going away")),
        },
    };
    sent.map_err(|_| Ending::abrupt("Going away"))
}

/// The ending a failed read means: a message over the limit closes with 1009.
fn read_error(error: &axum::Error) -> Ending {
    let too_big = std::error::Error::source(error)
        .and_then(|e| e.downcast_ref::<tokio_tungstenite::tungstenite::Error>())
        .is_some_and(|e| matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_)));
    if too_big {
        Ending::closing(1009, "Message too big")
    } else {
        Ending::abrupt("Going away")
    }
}
