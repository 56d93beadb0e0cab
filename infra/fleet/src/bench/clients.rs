//! The bench's WebSocket clients: many connections on one thread of their own, each
//! reading the gateway's frames with as little work per frame as a client can do.

use std::time::Duration;

use anyhow::{Context as _, bail};
use contracts::frames::{ClientMessage, Frame, kinds};
use futures::{SinkExt as _, StreamExt as _};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// How long the clients' thread rests between reading batches of frames.
const CLIENT_REST: Duration = Duration::from_micros(500);

/// Each client's read buffer (a frame is a few hundred bytes; larger ones still fit).
const CLIENT_READ_BUFFER_BYTES: usize = 4096;

/// Opens one connection, subscribes it to `user:bench`, then forwards the round and
/// arrival time of every stream frame until the connection ends.
///
/// The handshake and the subscribe go through tungstenite. The frames after them are
/// read by [`read_frames`], which does only what a client must do on this path: take
/// unmasked server frames off the socket, answer pings and stop at a close. The clients
/// share the machine's cores with the stack they measure, so every microsecond they
/// spend per frame shows up in the latencies.
pub(super) async fn open(url: &str, client: usize, arrivals: Arrivals) -> anyhow::Result<()> {
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
pub(super) struct Arrival {
    pub(super) client: usize,
    pub(super) round: usize,
    pub(super) at: Instant,
}

/// The arrivals the clients recorded since the clients' thread last handed them on.
#[derive(Debug, Clone, Default)]
pub(super) struct Arrivals(std::sync::Arc<std::sync::Mutex<Vec<Arrival>>>);

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
pub(super) const ROUND_MARK: &str = "bench round ";

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
pub(super) struct ClientThread {
    pub(super) handle: tokio::runtime::Handle,
    pub(super) arrivals: Arrivals,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ClientThread {
    pub(super) fn start(
        batches: mpsc::UnboundedSender<Vec<Arrival>>,
    ) -> anyhow::Result<ClientThread> {
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
