//! The notifier end to end: browsers' WebSocket sessions on the local gateway, fed by the
//! job events of real jobs run by in-process workers.

use std::time::Duration;

use contracts::frames::{Cursor, Frame, kinds};
use contracts::jobs::{JobProgress, JobRequested, JobStatus};
use contracts::{Envelope, JobEvent, JobId};
use emulator::testing::wait_until;
use futures::{SinkExt as _, StreamExt as _};
use notifier::store::Store;
use notifier::{Channel, NotifierConfig};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::support::Local;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client of the local gateway.
struct Client {
    socket: Socket,
}

impl Client {
    /// Connects with `token` (or none); a refused handshake gives its HTTP status.
    async fn connect(local: &Local, token: Option<&str>) -> Result<Client, u16> {
        let mut url = format!("ws://{}/ws", local.stack.http_addr);
        if let Some(token) = token {
            url.push_str(&format!("?token={token}"));
        }
        match tokio_tungstenite::connect_async(&url).await {
            Ok((socket, _)) => Ok(Client { socket }),
            Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
            Err(e) => panic!("connecting to {url}: {e}"),
        }
    }

    async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
    }

    /// The next frame, within `deadline`.
    async fn frame(&mut self, deadline: Instant) -> Frame {
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .expect("a frame before the deadline")
                .expect("the connection stays open")
                .unwrap();
            if let Message::Text(text) = message {
                return serde_json::from_str(&text).unwrap();
            }
        }
    }

    /// Subscribes; returns the frames up to and including the `subscribed` or `error`
    /// answer.
    async fn subscribe(&mut self, channel: &str, since: Option<u64>) -> Vec<Frame> {
        self.send(json!({ "action": "subscribe", "channel": channel, "since": since }))
            .await;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut frames = Vec::new();
        loop {
            let frame = self.frame(deadline).await;
            let done = frame.kind == kinds::SUBSCRIBED || frame.kind == kinds::ERROR;
            frames.push(frame);
            if done {
                return frames;
            }
        }
    }

    /// Feeds frames through `cursor` until `until` says the stream is complete.
    async fn stream_until(
        &mut self,
        cursor: &mut Cursor,
        delivered: &mut Vec<Frame>,
        until: impl Fn(&[Frame]) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !until(delivered) {
            let frame = self.frame(deadline).await;
            delivered.extend(cursor.accept(frame).into_iter().filter(Frame::is_stream));
        }
    }
}

fn kinds_of(frames: &[Frame]) -> Vec<&str> {
    frames.iter().map(|f| f.kind.as_str()).collect()
}

fn has(kind: &'static str) -> impl Fn(&[Frame]) -> bool {
    move |frames| frames.iter().any(|f| f.kind == kind)
}

/// Offsets `first..first+n`, each once.
fn assert_consecutive(frames: &[Frame], first: u64) {
    let offsets: Vec<u64> = frames.iter().map(|f| f.offset).collect();
    let expected: Vec<u64> = (first..first + frames.len() as u64).collect();
    assert_eq!(offsets, expected, "{:?}", kinds_of(frames));
}

/// A short `spin` job requested by `sub` through the bus, as an upstream service would.
fn upstream_request(job: &JobId, sub: &str) -> Envelope<JobEvent> {
    let requested = JobRequested {
        model: "spin".into(),
        params: json!({"durationMs": 1}).as_object().unwrap().clone(),
        job_id: Some(job.clone()),
        idempotency_key: None,
        requested_by: Some(sub.into()),
    };
    Envelope::new(JobEvent::from(requested), "upstream")
}

fn store(local: &Local) -> Store {
    Store::new(
        aws_sdk_dynamodb::Client::new(&local.stack.sdk),
        local.stack.topology.names().table("notifier"),
        NotifierConfig::default(),
    )
}

#[tokio::test]
async fn a_subscriber_gets_its_jobs_frames_in_order_and_no_token_means_no_connection() {
    let local = Local::start().await;
    assert_eq!(Client::connect(&local, None).await.err(), Some(401));
    assert_eq!(
        Client::connect(&local, Some("not-a-jwt")).await.err(),
        Some(401)
    );

    let alice = local.api("alice");
    let job = alice
        .submit("spin", &json!({"durationMs": 2500}), None)
        .await
        .unwrap();
    let mut client = Client::connect(&local, Some(&local.token("alice")))
        .await
        .unwrap();
    let channel = format!("job:{job}");
    let mut cursor = Cursor::new(0);
    let mut delivered = Vec::new();
    for frame in client.subscribe(&channel, Some(0)).await {
        delivered.extend(cursor.accept(frame).into_iter().filter(Frame::is_stream));
    }
    client
        .stream_until(&mut cursor, &mut delivered, has("JobSucceeded"))
        .await;

    assert_consecutive(&delivered, 1);
    let mut lifecycle: Vec<&str> = kinds_of(&delivered);
    lifecycle.dedup();
    assert_eq!(
        lifecycle,
        ["JobRequested", "JobStarted", "JobProgress", "JobSucceeded"],
        "frames arrive in lifecycle order"
    );
    assert!(delivered.iter().all(|f| f.channel == channel));
    assert!(
        delivered.iter().all(|f| f.data["jobId"] == job.as_str()),
        "{delivered:?}"
    );
    let succeeded = delivered.last().unwrap();
    assert_eq!(succeeded.correlation_id.as_deref(), Some(job.as_str()));
    assert!(succeeded.data["summary"].is_object(), "{succeeded:?}");
    local.stop().await;
}

#[tokio::test]
async fn a_dropped_client_resumes_with_since_and_gets_every_missed_frame_once() {
    let local = Local::start().await;
    let bob = local.api("bob");
    let job = bob
        .submit("spin", &json!({"durationMs": 3000}), None)
        .await
        .unwrap();
    let channel = format!("job:{job}");
    let mut cursor = Cursor::new(0);
    let mut delivered = Vec::new();

    let mut first = Client::connect(&local, Some(&local.token("bob")))
        .await
        .unwrap();
    for frame in first.subscribe(&channel, Some(0)).await {
        delivered.extend(cursor.accept(frame).into_iter().filter(Frame::is_stream));
    }
    first
        .stream_until(&mut cursor, &mut delivered, has("JobProgress"))
        .await;
    // The network goes away mid-job: no close frame, the socket is just gone.
    drop(first);
    let before = cursor.since();

    // The job finishes while the client is away.
    wait_until("the job to finish", Duration::from_secs(60), || async {
        bob.status(&job).await.unwrap().status == JobStatus::Succeeded
    })
    .await;

    let mut second = Client::connect(&local, Some(&local.token("bob")))
        .await
        .unwrap();
    let replayed = second.subscribe(&channel, Some(before)).await;
    assert!(
        replayed.iter().all(|f| f.kind != kinds::DISCONTINUITY),
        "the history reaches back: {replayed:?}"
    );
    let resumed_at = delivered.len();
    for frame in replayed {
        delivered.extend(cursor.accept(frame).into_iter().filter(Frame::is_stream));
    }
    second
        .stream_until(&mut cursor, &mut delivered, has("JobSucceeded"))
        .await;

    assert!(
        delivered.len() > resumed_at,
        "frames were missed and replayed"
    );
    assert_eq!(delivered[resumed_at].offset, before + 1);
    assert_consecutive(&delivered, 1);
    assert_eq!(delivered.last().unwrap().kind, "JobSucceeded");
    local.stop().await;
}

#[tokio::test]
async fn a_since_older_than_the_history_gets_a_discontinuity_first() {
    let local = Local::start().await;
    let publisher = bus::Publisher::from_sdk(&local.stack.sdk, local.bus());
    let job = JobId::generate();
    // An upstream request, then more progress than a channel keeps.
    publisher
        .publish(&upstream_request(&job, "carol"))
        .await
        .unwrap();
    let kept = NotifierConfig::default().history_len;
    let entries: Vec<_> = (0..kept + 5)
        .map(|i| {
            Envelope::new(
                JobEvent::from(JobProgress {
                    job_id: job.clone(),
                    progress: 0.5,
                    message: Some(format!("step {i}")),
                }),
                "simulation",
            )
            .to_entry()
        })
        .collect();
    let outcome = publisher.put(entries).await;
    assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    let channel = Channel::job(&job).to_string();
    let store = store(&local);
    wait_until("the frames to arrive", Duration::from_secs(90), || async {
        store.history(&channel, 0).await.unwrap().head > kept + 1
    })
    .await;

    let mut client = Client::connect(&local, Some(&local.token("carol")))
        .await
        .unwrap();
    let frames = client.subscribe(&channel, Some(1)).await;
    // Live frames of events still arriving may come before the replay: the cursor
    // orders them, and the discontinuity comes out first.
    let mut cursor = Cursor::new(1);
    let mut delivered: Vec<Frame> = frames
        .into_iter()
        .flat_map(|f| cursor.accept(f))
        .filter(Frame::is_stream)
        .collect();
    let lost = delivered.remove(0);
    assert_eq!(lost.kind, kinds::DISCONTINUITY, "{lost:?}");
    assert_eq!(lost.data["since"], 1);
    // The whole kept history follows (and, maybe, live frames of the running job).
    assert!(delivered.len() as u64 >= kept, "{}", delivered.len());
    assert_consecutive(&delivered, lost.offset + 1);
    local.stop().await;
}

#[tokio::test]
async fn another_users_channels_cannot_be_subscribed() {
    let local = Local::start().await;
    let job = local
        .api("dave")
        .submit("spin", &json!({"durationMs": 10}), None)
        .await
        .unwrap();
    let mut eve = Client::connect(&local, Some(&local.token("eve")))
        .await
        .unwrap();
    for channel in [format!("job:{job}"), "user:dave".to_owned()] {
        let answer = eve.subscribe(&channel, Some(0)).await;
        let refusal = answer.last().unwrap();
        assert_eq!(refusal.kind, kinds::ERROR, "{answer:?}");
        assert_eq!(refusal.data["code"], "forbidden");
        assert!(
            answer.iter().all(|f| f.kind == kinds::ERROR),
            "no frame of {channel} leaks: {answer:?}"
        );
    }
    let own = eve.subscribe("user:eve", Some(0)).await;
    assert_eq!(own.last().unwrap().kind, kinds::SUBSCRIBED);
    local.stop().await;
}

#[tokio::test]
async fn a_push_to_a_gone_connection_removes_it() {
    let local = Local::start().await;
    let store = store(&local);
    // A connection whose $disconnect never ran: its rows are still there.
    let ghost = format!("ghost{}", JobId::generate());
    store.put_connection(&ghost, "frank").await.unwrap();
    store
        .subscribe(&ghost, &Channel::user("frank"))
        .await
        .unwrap();

    local
        .api("frank")
        .submit("spin", &json!({"durationMs": 10}), None)
        .await
        .unwrap();
    wait_until(
        "the gone connection to be removed",
        Duration::from_secs(60),
        || async { store.connection(&ghost).await.unwrap().is_none() },
    )
    .await;
    let subscribers = store.subscribers("user:frank").await.unwrap();
    assert!(!subscribers.contains(&ghost), "{subscribers:?}");
    local.stop().await;
}

#[tokio::test]
async fn fleet_jobs_watch_follows_a_job_to_its_outcome() {
    let local = Local::start().await;
    let api = local.api("grace");
    let good = api
        .submit("spin", &json!({"durationMs": 1500}), None)
        .await
        .unwrap();
    let mut progress = Vec::new();
    let (outcome, seen) = fleet::watch::watch(&api, &good, Duration::from_secs(90), |frame| {
        if frame.kind == "JobProgress" {
            progress.push(frame.data["progress"].as_f64().unwrap());
        }
    })
    .await
    .unwrap();
    assert!(
        matches!(outcome, fleet::watch::Outcome::Succeeded { ref summary } if summary.is_object()),
        "{outcome:?}"
    );
    assert!(!progress.is_empty(), "the progress bar moved");
    assert_consecutive(&seen.frames, 1);

    let bad = api
        .submit("spin", &json!({"durationMs": 10, "mode": "fail"}), None)
        .await
        .unwrap();
    let (outcome, _) = fleet::watch::watch(&api, &bad, Duration::from_secs(90), |_| {})
        .await
        .unwrap();
    assert!(
        matches!(outcome, fleet::watch::Outcome::Failed { ref error, .. } if !error.is_empty()),
        "{outcome:?}"
    );

    // Someone else's job is refused, not waited on forever.
    let refused = fleet::watch::watch(
        &local.api("mallory"),
        &good,
        Duration::from_secs(30),
        |_| {},
    )
    .await
    .expect_err("not mallory's job");
    assert!(refused.to_string().contains("forbidden"), "{refused:#}");
    local.stop().await;
}

/// Enough subscribers that the broadcast is split across push tasks: every one of them
/// gets the frame.
#[tokio::test]
async fn a_broadcast_to_many_subscribers_reaches_every_one() {
    const SUBSCRIBERS: usize = 300;
    let local = Local::start().await;
    let sub = emulator::unique_name("dora");
    let token = local.token(&sub);
    let channel = format!("user:{sub}");
    let mut clients = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut client = Client::connect(&local, Some(&token)).await.unwrap();
        let answer = client.subscribe(&channel, None).await;
        assert_eq!(
            answer.last().map(|f| f.kind.as_str()),
            Some(kinds::SUBSCRIBED)
        );
        clients.push(client);
    }
    let job = JobId::generate();
    bus::Publisher::from_sdk(&local.stack.sdk, local.bus())
        .publish(&upstream_request(&job, &sub))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    for client in &mut clients {
        let frame = client.frame(deadline).await;
        assert_eq!((frame.offset, frame.kind.as_str()), (1, "JobRequested"));
        assert_eq!(frame.data["jobId"], job.as_str());
    }
    local.stop().await;
}
