//! `fleet bench notifier`: how the notifier and the local WebSocket gateway hold many
//! connections and broadcast to them.
//!
//! The stack runs in a child `fleet dev` process (its own emulator, no workers), so its
//! resident memory can be read on its own and each process stays within its
//! open-files limit. The bench opens N WebSocket connections, subscribes each to one
//! channel (`user:bench`), reads the gateway's memory, then publishes job events on the
//! bus and times each frame from `PutEvents` to its arrival on every connection: the
//! whole path (EventBridge → local host → `notifier-events` → DynamoDB → N
//! `@connections` posts → WebSocket).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use contracts::frames::{ClientMessage, Frame, kinds};
use contracts::jobs::{JobProgress, JobRequested};
use contracts::{Envelope, JobEvent, JobId};
use futures::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// How long the clients' thread rests between reading batches of frames.
const CLIENT_REST: Duration = Duration::from_micros(500);

/// Each client's read buffer (a frame is a few hundred bytes; larger ones still fit).
const CLIENT_READ_BUFFER_BYTES: usize = 4096;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub connections: usize,
    /// Events broadcast (and timed) after a warm-up one.
    pub rounds: usize,
    /// Connections being opened at once.
    pub open_concurrency: usize,
    pub home: PathBuf,
    /// The `fleet` binary that runs the stack.
    pub exe: PathBuf,
}

/// The numbers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BenchReport {
    pub connections: usize,
    pub rounds: usize,
    /// Seconds to open and subscribe every connection.
    pub connect_seconds: f64,
    pub deliveries: usize,
    /// The first delivery of a round: the path's fixed part (bus, queue, store).
    pub latency_min_ms: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    /// The slowest `PutEvents` call of the timed rounds (part of every latency).
    pub publish_max_ms: f64,
    /// The gateway process's resident memory growth per idle subscribed connection.
    pub bytes_per_connection: f64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// CPU time per delivery over the timed rounds: the stack process (local host,
    /// notifier, gateway), the emulator (moto, its child) and the bench's own clients.
    pub stack_cpu_us_per_delivery: f64,
    pub emulator_cpu_us_per_delivery: f64,
    pub clients_cpu_us_per_delivery: f64,
    pub target_p99_ms: f64,
    pub target_bytes_per_connection: f64,
}

/// Raises this process's open-files limit to its hard limit (each connection is a file).
pub fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let Some(max) = limit.maximum {
        let raised = rustix::process::Rlimit {
            current: Some(max),
            maximum: Some(max),
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "could not raise the open-files limit");
        }
    }
}

pub async fn run(config: &BenchConfig) -> anyhow::Result<BenchReport> {
    raise_open_files_limit();
    let http_port = crate::dev::free_port()?;
    let emulator_port = crate::dev::free_port()?;
    let stage = format!("b{}", &uuid::Uuid::new_v4().simple().to_string()[..7]);
    eprintln!("bench: starting the stack (stage {stage}) in a child process");
    let mut child = tokio::process::Command::new(&config.exe)
        .args(["--stage", &stage, "dev", "--workers", "0"])
        .args(["--http-port", &http_port.to_string()])
        .args(["--emulator-port", &emulator_port.to_string()])
        .arg("--home")
        .arg(&config.home)
        .stdout(Stdio::null())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", config.exe.display()))?;
    let pid = child.id().context("the child has no pid")?;
    let outcome = measure(config, &stage, http_port, emulator_port, pid).await;
    // SIGTERM: `fleet dev` stops what it started (its emulator included).
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).context("pid")?,
        rustix::process::Signal::TERM,
    );
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    outcome
}

async fn measure(
    config: &BenchConfig,
    stage: &str,
    http_port: u16,
    emulator_port: u16,
    pid: u32,
) -> anyhow::Result<BenchReport> {
    let base = format!("http://127.0.0.1:{http_port}");
    wait_ready(&base).await?;
    let issuer = crate::local::dev_issuer(&config.home)?;
    let token = issuer
        .issue("bench", Duration::from_secs(3600))
        .context("issuing the bench's token")?;
    let url = crate::watch::websocket_url(&base, &token)?;
    let rss_before = rss_kib(pid)?;

    eprintln!("bench: opening {} connections", config.connections);
    let started = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Arrival>>();
    let clients = ClientThread::start(tx)?;
    let opened: Vec<anyhow::Result<()>> = futures::stream::iter(0..config.connections)
        .map(|client| {
            let url = url.clone();
            let arrivals = clients.arrivals.clone();
            let handle = clients.handle.clone();
            async move {
                handle
                    .spawn(async move { open(&url, client, arrivals).await })
                    .await
                    .context("a client task ended abnormally")?
            }
        })
        .buffer_unordered(config.open_concurrency.max(1))
        .collect()
        .await;
    let failures = opened.iter().filter(|r| r.is_err()).count();
    if let Some(Err(e)) = opened.into_iter().find(|r| r.is_err()) {
        bail!("{failures} connections failed to open; the first: {e:#}");
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "bench: {} connections subscribed in {connect_seconds:.1} s",
        config.connections
    );
    let rss_after = rss_kib(pid)?;

    let sdk = emulator::sdk_config_for(&format!("http://127.0.0.1:{emulator_port}"));
    let names = topology::Names::new(&topology::Stage::new(stage).map_err(anyhow::Error::msg)?);
    let publisher = bus::Publisher::from_sdk(&sdk, names.bus());
    let job = JobId::generate();
    let requested = JobRequested {
        model: "spin".into(),
        params: serde_json::Map::new(),
        job_id: Some(job.clone()),
        idempotency_key: None,
        requested_by: Some("bench".into()),
    };
    let mut latencies = Vec::new();
    let mut cpu_before = Cpu::default();
    let mut publish_max = Duration::ZERO;
    for round in 0..=config.rounds {
        if round == 1 {
            cpu_before = Cpu::read(pid)?;
        }
        let event = if round == 0 {
            JobEvent::from(requested.clone())
        } else {
            JobEvent::from(JobProgress {
                job_id: job.clone(),
                progress: round as f64 / config.rounds.max(1) as f64,
                message: Some(format!("{ROUND_MARK}{round}")),
            })
        };
        let sent = Instant::now();
        publisher
            .publish(&Envelope::new(event, "bench"))
            .await
            .context("publishing the bench's event")?;
        if round > 0 {
            publish_max = publish_max.max(sent.elapsed());
        }
        let deadline = sent + Duration::from_secs(120);
        let mut received = 0;
        let mut got = vec![false; config.connections];
        let (mut first, mut last) = (Duration::MAX, Duration::ZERO);
        while received < config.connections {
            let batch = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .with_context(|| {
                    format!(
                        "round {round}: only {received} of {} connections got the frame within 120 s",
                        config.connections
                    )
                })?
                .context("the clients' thread stopped")?;
            for arrival in batch {
                // Each connection counts once per round, with the first copy of the
                // round's own frame: a late frame of an earlier round or a repeat is no
                // delivery.
                if arrival.round != round || got[arrival.client] {
                    continue;
                }
                got[arrival.client] = true;
                received += 1;
                // Round 0 warms up (first pushes, connection pools); it is not timed.
                let latency = arrival.at.duration_since(sent);
                (first, last) = (first.min(latency), last.max(latency));
                if round > 0 {
                    latencies.push(latency);
                }
            }
        }
        if round > 0 {
            eprintln!(
                "bench: round {round}/{} delivered to all: first {:.1} ms, last {:.1} ms",
                config.rounds,
                first.as_secs_f64() * 1000.0,
                last.as_secs_f64() * 1000.0
            );
        }
    }
    let cpu = Cpu::read(pid)?.since(&cpu_before);
    latencies.sort();
    let per_delivery = |seconds: f64| seconds * 1e6 / latencies.len().max(1) as f64;
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[index].as_secs_f64() * 1000.0
    };
    let grown = rss_after.saturating_sub(rss_before) as f64 * 1024.0;
    Ok(BenchReport {
        connections: config.connections,
        rounds: config.rounds,
        connect_seconds,
        deliveries: latencies.len(),
        latency_min_ms: percentile(0.0),
        latency_p50_ms: percentile(0.50),
        latency_p99_ms: percentile(0.99),
        latency_max_ms: percentile(1.0),
        publish_max_ms: publish_max.as_secs_f64() * 1000.0,
        bytes_per_connection: grown / config.connections.max(1) as f64,
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
        stack_cpu_us_per_delivery: per_delivery(cpu.stack),
        emulator_cpu_us_per_delivery: per_delivery(cpu.emulator),
        clients_cpu_us_per_delivery: per_delivery(cpu.clients),
        target_p99_ms: 200.0,
        target_bytes_per_connection: 20.0 * 1024.0,
    })
}

/// Opens one connection, subscribes it to `user:bench`, then forwards the round and
/// arrival time of every stream frame until the connection ends.
///
/// The handshake and the subscribe go through tungstenite. The frames after them are
/// read by [`read_frames`], which does only what a client must do on this path: take
/// unmasked server frames off the socket, answer pings and stop at a close. The clients
/// share the machine's cores with the stack they measure, so every microsecond they
/// spend per frame shows up in the latencies.
async fn open(url: &str, client: usize, arrivals: Arrivals) -> anyhow::Result<()> {
    let uri: tokio_tungstenite::tungstenite::http::Uri =
        url.parse().context("the bench's WebSocket URL")?;
    let authority = uri
        .authority()
        .context("the bench's WebSocket URL has no host")?
        .as_str()
        .to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&authority)
        .await
        .with_context(|| format!("connecting to {authority}"))?;
    tcp.set_nodelay(true)?;
    {
        let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER_BYTES);
        let (mut socket, _) =
            tokio_tungstenite::client_async_with_config(url, &mut tcp, Some(config))
                .await
                .context("the WebSocket handshake")?;
        let subscribe = ClientMessage::Subscribe {
            channel: "user:bench".into(),
            since: None,
        };
        socket
            .send(Message::text(serde_json::to_string(&subscribe)?))
            .await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let message = tokio::time::timeout_at(deadline, socket.next())
                .await
                .context("no answer to subscribe within 60 s")?
                .context("closed before subscribing")??;
            let Message::Text(text) = message else {
                continue;
            };
            let frame: Frame = serde_json::from_str(&text)?;
            match frame.kind.as_str() {
                kinds::SUBSCRIBED => break,
                kinds::ERROR => bail!("subscribe refused: {}", frame.data),
                _ => {}
            }
        }
        // Only a keep-alive ping can have come in behind the answer: see `read_frames`.
    }
    tokio::spawn(async move {
        if let Err(e) = read_frames(tcp, client, arrivals).await {
            tracing::debug!(error = %e, "a bench client's connection failed");
        }
    });
    Ok(())
}

const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Reads WebSocket frames (RFC 6455 5.2) off an open connection and forwards each text
/// frame's round with the time its bytes arrived.
async fn read_frames(
    mut tcp: tokio::net::TcpStream,
    client: usize,
    arrivals: Arrivals,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // A ping that came in with the subscribe's answer was read, and dropped, with the
    // handshake's buffer; an unsolicited pong (RFC 6455 5.5.3) stands for its answer, so
    // the gateway's keep-alive does not count the client as silent.
    tcp.write_all(&pong(b"")).await?;
    let mut buf = vec![0u8; CLIENT_READ_BUFFER_BYTES];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        // A short read also makes tokio forget the socket's readiness: no second read
        // that would block.
        let read = tcp.read(&mut buf[filled..]).await?;
        if read == 0 {
            return Ok(());
        }
        let at = Instant::now();
        filled += read;
        let mut start = 0;
        while let Some(frame) = next_frame(&buf[start..filled]) {
            match frame.opcode {
                OP_TEXT => {
                    if let Some(round) = round_of(frame.payload) {
                        arrivals.record(Arrival { client, round, at });
                    }
                }
                OP_PING => tcp.write_all(&pong(frame.payload)).await?,
                OP_CLOSE => return Ok(()),
                _ => {}
            }
            start += frame.len;
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
    }
}

struct RawFrame<'a> {
    opcode: u8,
    payload: &'a [u8],
    /// The whole frame's length, header included.
    len: usize,
}

/// The first whole frame in `bytes`, if they hold one.
fn next_frame(bytes: &[u8]) -> Option<RawFrame<'_>> {
    let (&first, &second) = (bytes.first()?, bytes.get(1)?);
    let (payload_len, mut header) = match second & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?)),
            4,
        ),
        127 => (u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?), 10),
        short => (u64::from(short), 2),
    };
    if second & 0x80 != 0 {
        // A masking key (servers do not mask; skipped if one ever does).
        header += 4;
    }
    let len = header + usize::try_from(payload_len).ok()?;
    Some(RawFrame {
        opcode: first & 0x0f,
        payload: bytes.get(header..len)?,
        len,
    })
}

/// One frame of a round, as a client saw it.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    client: usize,
    round: usize,
    at: Instant,
}

/// The arrivals the clients recorded since the clients' thread last handed them on.
#[derive(Debug, Clone, Default)]
struct Arrivals(std::sync::Arc<std::sync::Mutex<Vec<Arrival>>>);

impl Arrivals {
    fn record(&self, arrival: Arrival) {
        self.lock().push(arrival);
    }

    fn take(&self) -> Vec<Arrival> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arrival>> {
        // A `Vec` of plain records stays whole whatever panicked while holding it.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What the bench's `JobProgress` messages start with; the round number follows.
const ROUND_MARK: &str = "bench round ";

/// The round a frame belongs to, found without parsing the rest of its JSON: the number
/// after [`ROUND_MARK`] (`JobProgress`), or 0 for the warm-up's `JobRequested`.
fn round_of(payload: &[u8]) -> Option<usize> {
    let find = |needle: &[u8]| payload.windows(needle.len()).position(|w| w == needle);
    let Some(at) = find(ROUND_MARK.as_bytes()) else {
        return find(br#""type":"JobRequested""#).map(|_| 0);
    };
    let rest = &payload[at + ROUND_MARK.len()..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// The pong answering a ping: a client frame, so masked (RFC 6455 5.3).
fn pong(payload: &[u8]) -> Vec<u8> {
    const MASK: [u8; 4] = [0x5a, 0x1c, 0x93, 0x2e];
    // Control frames carry at most 125 bytes.
    let payload = &payload[..payload.len().min(125)];
    let mut frame = Vec::with_capacity(6 + payload.len());
    frame.push(0x80 | OP_PONG);
    frame.push(0x80 | payload.len() as u8);
    frame.extend_from_slice(&MASK);
    frame.extend(payload.iter().zip(MASK.iter().cycle()).map(|(b, m)| b ^ m));
    frame
}

/// The clients' own single-threaded runtime on a thread of its own: epoll hands it many
/// ready sockets at once and it reads them in turn, without waking the other worker
/// threads for each frame, so the clients take less of the CPU the stack needs.
///
/// The thread also rests [`CLIENT_REST`] between turns instead of waiting in epoll: a
/// frame that arrives while it rests is queued without waking it, so the stack's writes
/// do not pay for a wake-up each, and the clients read what arrived in one batch. An
/// arrival is timed when its batch is read, so a latency is at most that much late,
/// never early. The arrivals of a turn go to the bench together (`batches`), which wakes
/// the bench's own thread once per turn instead of once per frame.
struct ClientThread {
    handle: tokio::runtime::Handle,
    arrivals: Arrivals,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ClientThread {
    fn start(batches: mpsc::UnboundedSender<Vec<Arrival>>) -> anyhow::Result<ClientThread> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the clients' runtime")?;
        let handle = runtime.handle().clone();
        let arrivals = Arrivals::default();
        let turns = arrivals.clone();
        handle.spawn(async move {
            loop {
                // Blocks the clients' thread on purpose (see above).
                std::thread::sleep(CLIENT_REST);
                let batch = turns.take();
                if !batch.is_empty() && batches.send(batch).is_err() {
                    return;
                }
                tokio::task::yield_now().await;
            }
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("bench-clients".into())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            })
            .context("starting the clients' thread")?;
        Ok(ClientThread {
            handle,
            arrivals,
            stop: Some(stop),
        })
    }
}

impl Drop for ClientThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// CPU seconds (user + system) used so far.
#[derive(Debug, Default)]
struct Cpu {
    stack: f64,
    emulator: f64,
    clients: f64,
}

impl Cpu {
    /// The stack process `pid`, its descendants (the emulator) and this process.
    fn read(pid: u32) -> anyhow::Result<Cpu> {
        let mut emulator = 0.0;
        let mut pending = children(pid);
        while let Some(child) = pending.pop() {
            // A descendant may end between listing and reading: it counts as nothing.
            emulator += cpu_seconds(&child.to_string()).unwrap_or(0.0);
            pending.extend(children(child));
        }
        Ok(Cpu {
            stack: cpu_seconds(&pid.to_string())?,
            emulator,
            clients: cpu_seconds("self")?,
        })
    }

    fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            stack: self.stack - before.stack,
            emulator: self.emulator - before.emulator,
            clients: self.clients - before.clients,
        }
    }
}

/// `utime + stime` of `/proc/<pid>/stat`, in seconds.
fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat (Linux only)"))?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("no CPU time in /proc/{pid}/stat"))
    };
    // Fields 14 and 15 of stat(5) (utime, stime) are the 12th and 13th after the name.
    Ok((ticks(11)? + ticks(12)?) / rustix::param::clock_ticks_per_second() as f64)
}

/// The direct children of `pid`, from every thread's `children` file.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

async fn wait_ready(base: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let ready = http
            .get(format!("{base}/.well-known/jwks.json"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the stack did not come up at {base} within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A process's resident memory, from `/proc/<pid>/status`.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (Linux only)"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/<pid>/status")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => frame.push(n as u8),
            n => {
                frame.push(126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        frame.extend_from_slice(payload);
        frame
    }

    #[test]
    fn frames_are_read_whole_whatever_their_length_and_rounds_found() {
        let long = format!(
            r#"{{"channel":"user:bench","offset":9,"type":"JobProgress","data":{{"message":"bench round 1234","pad":"{}"}}}}"#,
            "x".repeat(300)
        );
        let mut bytes = server_frame(OP_TEXT, long.as_bytes());
        bytes.extend(server_frame(OP_PING, b"hi"));
        let first = next_frame(&bytes).expect("a whole frame");
        assert_eq!(first.opcode, OP_TEXT);
        assert_eq!(round_of(first.payload), Some(1234));
        let second = next_frame(&bytes[first.len..]).expect("the ping");
        assert_eq!((second.opcode, second.payload), (OP_PING, &b"hi"[..]));
        assert_eq!(first.len + second.len, bytes.len());
        // A frame cut anywhere is not read until the rest arrives.
        for cut in 0..first.len {
            assert!(next_frame(&bytes[..cut]).is_none(), "cut at {cut}");
        }
        assert_eq!(round_of(br#"{"type":"subscribed"}"#), None);
        assert_eq!(round_of(br#"{"offset":1,"type":"JobRequested"}"#), Some(0));
    }

    #[test]
    fn a_pong_is_masked_and_carries_the_ping_payload() {
        let frame = pong(b"keep");
        assert_eq!(frame[0], 0x80 | OP_PONG);
        assert_eq!(frame[1], 0x80 | 4);
        let mask = &frame[2..6];
        let unmasked: Vec<u8> = frame[6..]
            .iter()
            .zip(mask.iter().cycle())
            .map(|(b, m)| b ^ m)
            .collect();
        assert_eq!(unmasked, b"keep");
    }
}
