//! The harness's subscribers: WebSocket and SSE clients that follow their channels as a
//! browser does, drop their connection without a close frame at random, resume with
//! `since`, and record every frame that arrives for the checks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use contracts::frames::{ClientMessage, Cursor, Frame, Subscribed, kinds};
use futures::{SinkExt as _, StreamExt as _};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

/// How a subscriber reaches the notifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    WebSocket,
    Sse,
}

/// One subscriber to follow.
#[derive(Debug, Clone)]
pub struct Spec {
    pub base: String,
    pub token: String,
    pub channel: String,
    pub transport: Transport,
    /// The chance, after each stream frame, that the connection drops.
    pub drop_rate: f64,
    /// Resume with `since` after a drop (off only to show the checks catch gaps).
    pub resume_with_since: bool,
    /// The jobs whose outcome this channel must show before the subscriber stops.
    pub outcomes: Outcomes,
    pub seed: u64,
}

/// Job ids whose outcome frame a subscriber waits for, filled as jobs are submitted.
#[derive(Debug, Clone, Default)]
pub struct Outcomes(Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>);

impl Outcomes {
    pub fn insert(&self, job_id: &str) {
        if let Ok(mut ids) = self.0.lock() {
            ids.insert(job_id.to_owned());
        }
    }

    /// Whether `stream` holds an outcome frame for every job expected.
    fn all_in(&self, stream: &[Frame]) -> bool {
        let Ok(ids) = self.0.lock() else {
            return true;
        };
        ids.iter().all(|id| {
            stream.iter().any(|f| {
                (f.kind == contracts::jobs::SUCCEEDED || f.kind == contracts::jobs::FAILED)
                    && f.data["jobId"].as_str() == Some(id.as_str())
            })
        })
    }
}

/// What one subscriber saw.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub channel: String,
    pub transport: Option<Transport>,
    /// Every stream frame as it arrived, replays and duplicates included.
    pub arrivals: Vec<Frame>,
    /// The channel's stream after the cursor: what an application sees.
    pub stream: Vec<Frame>,
    /// The cursor's position at the end, and whether frames were still waiting on a gap.
    pub since: u64,
    pub gap_open: bool,
    /// The channel's head the last `subscribed` reported.
    pub head: u64,
    pub connections: u64,
    /// Connections this subscriber dropped on purpose.
    pub drops: u64,
    /// Set when the subscriber could not catch up with the head before the end.
    pub incomplete: Option<String>,
}

/// Counts shared by every subscriber, for the report.
#[derive(Debug, Default)]
pub struct Counters {
    pub drops: AtomicU64,
    pub resumes: AtomicU64,
}

/// Follows `spec.channel` until `finish` turns true and the stream has reached the
/// channel's head (or `catch_up` passes after that).
pub async fn follow(
    spec: Spec,
    mut finish: watch::Receiver<bool>,
    counters: Arc<Counters>,
    catch_up: Duration,
) -> Record {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut record = Record {
        channel: spec.channel.clone(),
        transport: Some(spec.transport),
        ..Record::default()
    };
    let mut cursor = Cursor::new(0);
    let mut finishing_since: Option<tokio::time::Instant> = None;
    loop {
        if finishing_since.is_none() && *finish.borrow() {
            finishing_since = Some(tokio::time::Instant::now());
        }
        if let Some(at) = finishing_since
            && at.elapsed() > catch_up
        {
            record.incomplete = Some(format!(
                "at offset {} of head {} after {} s of catching up",
                cursor.since(),
                record.head,
                catch_up.as_secs()
            ));
            break;
        }
        // A client that forgets its position resubscribes without `since`: live frames only.
        let since = (spec.resume_with_since || record.connections == 0).then(|| cursor.since());
        let session = Session {
            subscribed: false,
            spec: &spec,
            since,
            rng: &mut rng,
            record: &mut record,
            cursor: &mut cursor,
            finish: &mut finish,
        };
        let ended = match spec.transport {
            Transport::WebSocket => session.websocket().await,
            Transport::Sse => session.sse().await,
        };
        match ended {
            Ended::Done => break,
            Ended::Dropped => {
                counters.drops.fetch_add(1, Ordering::Relaxed);
                record.drops += 1;
            }
            Ended::Lost => {}
        }
        counters.resumes.fetch_add(1, Ordering::Relaxed);
        let pause = Duration::from_millis(rng.random_range(20..300));
        tokio::time::sleep(pause).await;
    }
    record.since = cursor.since();
    record.gap_open = cursor.has_gap();
    record
}

/// How a session ended.
enum Ended {
    /// Finished and caught up.
    Done,
    /// Dropped on purpose.
    Dropped,
    /// The connection went away (or was refused for now).
    Lost,
}

/// While finishing, how often a subscriber resubscribes to look at the history.
const RESYNC: Duration = Duration::from_secs(10);

/// How long a subscriber waits for `subscribed` before it tries again.
const SUBSCRIBE_ANSWER: Duration = Duration::from_secs(5);

struct Session<'a> {
    /// Whether this session's subscription was answered.
    subscribed: bool,
    spec: &'a Spec,
    since: Option<u64>,
    rng: &'a mut ChaCha8Rng,
    record: &'a mut Record,
    cursor: &'a mut Cursor,
    finish: &'a mut watch::Receiver<bool>,
}

/// What one arriving frame means for the session.
enum Step {
    Continue,
    Drop,
    Done,
    Lost,
}

impl Session<'_> {
    /// Takes one frame: records it, advances the cursor, and decides whether to drop.
    fn take(&mut self, frame: Frame) -> Step {
        if frame.kind == kinds::SUBSCRIBED {
            self.subscribed = true;
            if let Ok(subscribed) = serde_json::from_value::<Subscribed>(frame.data.clone()) {
                self.record.head = self.record.head.max(subscribed.head);
                if self.since.is_none() {
                    // Live from here: whatever came meanwhile is skipped.
                    *self.cursor = Cursor::new(subscribed.head.max(self.cursor.since()));
                }
            }
            return self.caught_up();
        }
        if frame.kind == kinds::ERROR {
            // e.g. `forbidden` while the notifier does not know the job's owner yet.
            return Step::Lost;
        }
        if !frame.is_stream() {
            return Step::Continue;
        }
        self.record.head = self.record.head.max(frame.offset);
        self.record.arrivals.push(frame.clone());
        let delivered = self.cursor.accept(frame);
        let fresh = !delivered.is_empty();
        self.record.stream.extend(delivered);
        if let Step::Done = self.caught_up() {
            return Step::Done;
        }
        if fresh && self.rng.random_bool(self.spec.drop_rate.clamp(0.0, 1.0)) {
            return Step::Drop;
        }
        Step::Continue
    }

    fn caught_up(&self) -> Step {
        let finished = *self.finish.borrow();
        if finished
            && self.cursor.since() >= self.record.head
            && !self.cursor.has_gap()
            && self.spec.outcomes.all_in(&self.record.stream)
        {
            Step::Done
        } else {
            Step::Continue
        }
    }

    async fn websocket(mut self) -> Ended {
        let Ok(url) = crate::watch::websocket_url(&self.spec.base, &self.spec.token) else {
            return Ended::Done;
        };
        let Ok((socket, _)) = tokio_tungstenite::connect_async(&url).await else {
            return Ended::Lost;
        };
        self.record.connections += 1;
        let (mut tx, mut rx) = socket.split();
        let subscribe = ClientMessage::Subscribe {
            channel: self.spec.channel.clone(),
            since: self.since,
        };
        let Ok(text) = serde_json::to_string(&subscribe) else {
            return Ended::Done;
        };
        if tx.send(Message::text(text)).await.is_err() {
            return Ended::Lost;
        }
        let mut finish = self.finish.clone();
        let finishing = *finish.borrow_and_update();
        let answer_by = tokio::time::Instant::now() + SUBSCRIBE_ANSWER;
        loop {
            let message = tokio::select! {
                message = rx.next() => message,
                // A subscribe whose invocation failed is never answered: try again.
                _ = tokio::time::sleep_until(answer_by), if !self.subscribed => return Ended::Lost,
                // Once finishing, resubscribe to learn the head (a live push may never come).
                _ = finish.changed(), if !finishing => return Ended::Lost,
                // Once finishing, resubscribe now and then: a push that failed leaves its
                // frame in the history only.
                _ = tokio::time::sleep_until(answer_by + RESYNC), if finishing => return Ended::Lost,
            };
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Ended::Lost,
                Some(Ok(_)) => continue,
            };
            let Ok(frame) = serde_json::from_str::<Frame>(&text) else {
                continue;
            };
            match self.take(frame) {
                Step::Continue => {}
                // Dropping the halves ends the TCP connection without a close frame.
                Step::Drop => return Ended::Dropped,
                Step::Done => return Ended::Done,
                Step::Lost => return Ended::Lost,
            }
        }
    }

    async fn sse(mut self) -> Ended {
        let Ok(mut url) = reqwest::Url::parse(&format!("{}/sse", self.spec.base)) else {
            return Ended::Done;
        };
        url.query_pairs_mut()
            .append_pair("channel", &self.spec.channel)
            .append_pair("token", &self.spec.token);
        if let Some(since) = self.since {
            url.query_pairs_mut()
                .append_pair("since", &since.to_string());
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap_or_default();
        let Ok(mut response) = client.get(url).send().await else {
            return Ended::Lost;
        };
        if !response.status().is_success() {
            return Ended::Lost;
        }
        self.record.connections += 1;
        let mut buffer = String::new();
        let mut finish = self.finish.clone();
        let finishing = *finish.borrow_and_update();
        let answer_by = tokio::time::Instant::now() + SUBSCRIBE_ANSWER;
        loop {
            let chunk = tokio::select! {
                chunk = response.chunk() => chunk,
                _ = tokio::time::sleep_until(answer_by), if !self.subscribed => return Ended::Lost,
                _ = finish.changed(), if !finishing => return Ended::Lost,
                // Once finishing, resubscribe now and then: a push that failed leaves its
                // frame in the history only.
                _ = tokio::time::sleep_until(answer_by + RESYNC), if finishing => return Ended::Lost,
            };
            let chunk = match chunk {
                Ok(Some(chunk)) => chunk,
                Ok(None) | Err(_) => return Ended::Lost,
            };
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                let data: String = event
                    .lines()
                    .filter_map(|line| line.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect::<Vec<_>>()
                    .join("\n");
                if data.is_empty() {
                    continue;
                }
                let Ok(frame) = serde_json::from_str::<Frame>(&data) else {
                    continue;
                };
                match self.take(frame) {
                    Step::Continue => {}
                    Step::Drop => return Ended::Dropped,
                    Step::Done => return Ended::Done,
                    Step::Lost => return Ended::Lost,
                }
            }
        }
    }
}
