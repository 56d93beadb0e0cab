//! The open connections and the `@connections` management API over them.
//!
//! The table maps a connection id to what describes the connection and where a posted
//! frame goes. A WebSocket `POST` writes the frame to the socket itself, so a broadcast
//! costs no task wake-up per connection; an SSE stream's `POST` is a send to the bounded
//! queue its task drains. Removing an entry ends the connection once the posts in flight
//! are done: a WebSocket's task is told and closes after the writes ahead of it; an SSE
//! queue ends when its last sender is dropped.

use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderValue, StatusCode};
use serde_json::json;
use tokio::sync::mpsc;

use super::Shared;
use super::socket::{Posted, Writer};

/// How long a `POST` waits for a slow client (the writes ahead of it on a WebSocket, room
/// in an SSE queue) before answering 429.
const POST_WAIT: Duration = Duration::from_secs(1);

/// What API Gateway knows about a connection.
#[derive(Debug)]
pub(crate) struct ConnectionInfo {
    pub(crate) id: String,
    /// Milliseconds since the Unix epoch.
    pub(crate) connected_at_ms: i64,
    pub(crate) source_ip: String,
    pub(crate) user_agent: String,
    /// The `Host` the client connected to, standing in for the API's domain name.
    pub(crate) domain: String,
    /// When the client last sent a message, in milliseconds since the Unix epoch.
    last_active_ms: AtomicI64,
}

impl ConnectionInfo {
    pub(crate) fn new(id: String, source_ip: String, user_agent: String, domain: String) -> Self {
        let now = now_ms();
        ConnectionInfo {
            id,
            connected_at_ms: now,
            source_ip,
            user_agent,
            domain,
            last_active_ms: AtomicI64::new(now),
        }
    }

    /// Records a message from the client.
    pub(crate) fn touch(&self) {
        self.last_active_ms.store(now_ms(), Ordering::Relaxed);
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
}

/// How many independently locked parts the table has: posts from several threads (a
/// broadcast's pushing tasks) then rarely wait for each other's lookups.
const TABLE_SHARDS: usize = 64;

/// The open connections, by id.
pub(crate) struct Table {
    shards: [Mutex<HashMap<String, Entry>>; TABLE_SHARDS],
    hasher: std::hash::RandomState,
}

impl Default for Table {
    fn default() -> Self {
        Table {
            shards: std::array::from_fn(|_| Mutex::default()),
            hasher: std::hash::RandomState::new(),
        }
    }
}

#[derive(Clone)]
struct Entry {
    info: Arc<ConnectionInfo>,
    outlet: Outlet,
}

/// Where the frames posted to a connection go.
#[derive(Clone)]
pub(crate) enum Outlet {
    /// A WebSocket: the post writes the frame.
    Socket(Arc<Writer>),
    /// An SSE stream's queue, which its task turns into events.
    Queue(mpsc::Sender<Bytes>),
}

impl Table {
    pub(crate) fn insert(&self, info: Arc<ConnectionInfo>, outlet: Outlet) {
        self.lock(&info.id)
            .insert(info.id.clone(), Entry { info, outlet });
    }

    /// Forgets a connection; whether it was open.
    pub(crate) fn remove(&self, id: &str) -> bool {
        self.lock(id).remove(id).is_some()
    }

    /// Forgets a connection and ends it (`DELETE @connections`); whether it was open.
    fn delete(&self, id: &str) -> bool {
        let Some(entry) = self.lock(id).remove(id) else {
            return false;
        };
        match entry.outlet {
            Outlet::Socket(writer) => writer.delete(),
            // Its task sees the queue end once the posts in flight drop their senders.
            Outlet::Queue(sender) => drop(sender),
        }
        true
    }

    fn get(&self, id: &str) -> Option<Entry> {
        self.lock(id).get(id).cloned()
    }

    /// The part of the table that holds `id`, locked.
    fn lock(&self, id: &str) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        let shard = &self.shards[self.hasher.hash_one(id) as usize % TABLE_SHARDS];
        // The map stays consistent whatever panicked while holding it: every change is
        // one insert or remove.
        shard.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `POST @connections/{id}`: the body becomes one frame to the client.
pub(super) async fn post_to_connection(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let limit = shared.config.max_message_bytes;
    let Ok(data) = axum::body::to_bytes(body, limit).await else {
        return management_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            &format!("Message too long; the limit is {limit} bytes"),
        );
    };
    let Some(entry) = shared.connections.get(&id) else {
        return gone(&id);
    };
    let sender = match entry.outlet {
        Outlet::Socket(writer) => {
            return match writer.post(data, POST_WAIT).await {
                Posted::Written => empty(StatusCode::OK),
                Posted::Gone => gone(&id),
                Posted::Busy => too_slow(&id),
            };
        }
        Outlet::Queue(sender) => sender,
    };
    // A queue with room (the usual case) takes the frame without arming a timer.
    let data = match sender.try_send(data) {
        Ok(()) => return empty(StatusCode::OK),
        Err(mpsc::error::TrySendError::Closed(_)) => return gone(&id),
        Err(mpsc::error::TrySendError::Full(data)) => data,
    };
    match tokio::time::timeout(POST_WAIT, sender.send(data)).await {
        Ok(Ok(())) => empty(StatusCode::OK),
        Ok(Err(_)) => gone(&id),
        Err(_) => too_slow(&id),
    }
}

fn too_slow(id: &str) -> Response {
    tracing::warn!(connection_id = %id, "the client does not keep up; post refused");
    management_error(
        StatusCode::TOO_MANY_REQUESTS,
        "LimitExceededException",
        "Rate exceeded",
    )
}

/// `GET @connections/{id}`: when the connection opened, who opened it, when it was last
/// active (ISO 8601, as the SDK parses them).
pub(super) async fn get_connection(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    let Some(entry) = shared.connections.get(&id) else {
        return gone(&id);
    };
    let info = &entry.info;
    let body = json!({
        "connectedAt": iso8601(info.connected_at_ms),
        "identity": { "sourceIp": info.source_ip, "userAgent": info.user_agent },
        "lastActiveAt": iso8601(info.last_active_ms.load(Ordering::Relaxed)),
    });
    let mut response = Response::new(Body::from(body.to_string()));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `DELETE @connections/{id}`: closes the connection; `$disconnect` follows.
pub(super) async fn delete_connection(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    if shared.connections.delete(&id) {
        tracing::info!(connection_id = %id, "connection deleted through @connections");
        empty(StatusCode::NO_CONTENT)
    } else {
        gone(&id)
    }
}

fn iso8601(ms: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_default()
}

fn gone(id: &str) -> Response {
    management_error(
        StatusCode::GONE,
        "GoneException",
        &format!("The connection {id} is gone"),
    )
}

fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

/// An error as the restJson1 protocol carries it: the type in `x-amzn-ErrorType`, the
/// message in the body.
fn management_error(status: StatusCode, error_type: &'static str, message: &str) -> Response {
    let mut response = Response::new(Body::from(json!({ "message": message }).to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("x-amzn-errortype", HeaderValue::from_static(error_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_iso8601_in_utc() {
        assert_eq!(iso8601(1_707_502_303_419), "2024-02-09T18:11:43.419Z");
    }
}
