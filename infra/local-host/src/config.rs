//! The host's settings: where the HTTP API listens, and the timings AWS fixes but a local
//! loop wants shorter.

use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::time::Duration;

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
    /// How long one receive waits for messages (SQS long polling, whole seconds, at most
    /// 20). It also bounds how long [`crate::RunningHost::shutdown`] waits for a poller.
    pub poll_wait: Duration,
    /// The pause after a failed SQS or SNS call before the next attempt.
    pub error_backoff: Duration,
}

impl Config {
    /// Lambda's own retry delays for asynchronous invocations (approximately).
    pub const AWS_RETRY_DELAYS: [Duration; 2] = [Duration::from_secs(60), Duration::from_secs(120)];

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
            poll_wait: Duration::from_secs(1),
            error_backoff: Duration::from_secs(1),
        }
    }
}
