//! The host's settings: where the HTTP API listens, and the timings AWS fixes but a local
//! loop wants shorter, and the WebSocket gateway's limits.

use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::time::Duration;

/// API Gateway WebSocket APIs' largest message, in either direction (128 KB): the default
/// of [`WebSocketConfig::max_message_bytes`].
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// How the host runs. [`Config::default`] suits `fleet dev` and the tests.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the HTTP API listens; port 0 picks a free port ([`crate::RunningHost::http_addr`]
    /// tells which). `None` serves no HTTP at all.
    pub http_addr: Option<SocketAddr>,
    /// The pause before each retry of a failed asynchronous invocation; its length is the
    /// number of retries. Lambda's default is two retries, about 1 and 2 minutes after
    /// the failures ([`Config::AWS_RETRY_DELAYS`]); locally they are shortened.
    pub async_retry_delays: Vec<Duration>,
    /// How many events (asynchronous functions) or batches (SQS functions) one function
    /// handles at once.
    pub concurrency: NonZeroUsize,
    /// At most this many invocations of one function run at once, whatever invoked them
    /// (Lambda's concurrency limit, scaled to one machine); more wait for a free instance.
    /// Every function calls the same emulator, which thousands of calls at once would
    /// stall for everyone.
    pub function_instances: NonZeroUsize,
    /// How long one receive waits for messages (SQS long polling, whole seconds, at most
    /// 20). It also bounds how long [`crate::RunningHost::shutdown`] waits for a poller.
    pub poll_wait: Duration,
    /// The pause after a failed SQS or SNS call before the next attempt.
    pub error_backoff: Duration,
    /// How often the items of the topology's TTL tables whose TTL has passed are deleted
    /// (DynamoDB Time to Live; AWS deletes them within a few days, with no set period).
    /// Each sweep scans the whole table, so it stays rare: five minutes by default.
    pub ttl_sweep_interval: Duration,
    /// The local WebSocket gateway (API Gateway WebSocket APIs, `@connections`, SSE).
    pub websocket: WebSocketConfig,
    /// Faults to inject into invocations (fault-injection runs only; none by default).
    pub invocation_faults: crate::faults::InvocationFaults,
}

/// The local WebSocket gateway's paths and limits. The defaults are API Gateway's quotas;
/// tests shorten the timings.
#[derive(Debug, Clone)]
pub struct WebSocketConfig {
    /// Where clients open WebSocket connections (`ws://<http_addr><path>`).
    pub path: String,
    /// Where the Server-Sent Events fallback is served.
    pub sse_path: String,
    /// A connection without a message from its client for this long is closed (API
    /// Gateway: 10 minutes).
    pub idle_timeout: Duration,
    /// A connection is closed this long after it opened, active or not (API Gateway: 2
    /// hours).
    pub max_duration: Duration,
    /// The largest message a client may send and the largest `@connections` payload
    /// (API Gateway: 128 KB). A bigger client message closes the connection with 1009.
    pub max_message_bytes: usize,
    /// How often the gateway pings each WebSocket client (and writes a comment line to
    /// each SSE client).
    pub keep_alive_interval: Duration,
    /// How many keep-alive intervals may pass without any frame from a client (a pong
    /// included) before its connection is dropped as half-open.
    pub keep_alive_misses: u32,
    /// How many frames may wait for one slow SSE client; a `POST @connections` finding
    /// the queue full waits up to a second, then answers 429 `LimitExceededException`.
    /// (A WebSocket's frames wait in its socket's buffer: a post waits up to a second for
    /// the write ahead of it, then answers 429.)
    pub outbound_queue: usize,
    /// When the host shuts down, how long the connections' `$disconnect` invocations may
    /// wait for a free instance; those still waiting then are not made. API Gateway
    /// invokes `$disconnect` on a best-effort basis, and without this bound a host with
    /// thousands of connections would take one invocation per connection, in turns of
    /// [`Config::function_instances`], to stop.
    pub shutdown_disconnect_wait: Duration,
}

impl WebSocketConfig {
    /// How long a client may stay silent before it counts as gone.
    pub(crate) fn keep_alive_window(&self) -> Duration {
        self.keep_alive_interval
            .saturating_mul(self.keep_alive_misses.max(1))
    }
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            path: "/ws".to_owned(),
            sse_path: "/sse".to_owned(),
            idle_timeout: Duration::from_secs(10 * 60),
            max_duration: Duration::from_secs(2 * 60 * 60),
            max_message_bytes: MAX_MESSAGE_BYTES,
            keep_alive_interval: Duration::from_secs(30),
            keep_alive_misses: 2,
            outbound_queue: 32,
            shutdown_disconnect_wait: Duration::from_secs(3),
        }
    }
}

impl Config {
    /// Lambda's own retry delays for asynchronous invocations (approximately).
    pub const AWS_RETRY_DELAYS: [Duration; 2] = [Duration::from_secs(60), Duration::from_secs(120)];

    /// The default [`Config::function_instances`].
    pub const DEFAULT_FUNCTION_INSTANCES: NonZeroUsize = NonZeroUsize::new(64).unwrap();

    /// The default HTTP address, `127.0.0.1:8080`.
    pub const DEFAULT_HTTP_ADDR: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

    /// The receive wait in SQS's unit, clamped to what SQS accepts.
    pub(crate) fn poll_wait_seconds(&self) -> i32 {
        // `min(20)` keeps the value within i32 and within SQS's limit.
        self.poll_wait.as_secs().min(20) as i32
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http_addr: Some(Self::DEFAULT_HTTP_ADDR),
            async_retry_delays: vec![Duration::from_millis(200), Duration::from_millis(400)],
            concurrency: NonZeroUsize::new(4).unwrap_or(NonZeroUsize::MIN),
            function_instances: Self::DEFAULT_FUNCTION_INSTANCES,
            poll_wait: Duration::from_secs(1),
            error_backoff: Duration::from_secs(1),
            ttl_sweep_interval: Duration::from_secs(300),
            websocket: WebSocketConfig::default(),
            invocation_faults: crate::faults::InvocationFaults::default(),
        }
    }
}
