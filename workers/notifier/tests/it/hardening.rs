//! Hostile and unlucky input, as a publisher on the bus or a WebSocket client sends it:
//! spoofed ownership, an event retried across its own write, frames too large for the
//! gateway, subscribes to made-up jobs, and a channel whose history and head expired.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use aws_sdk_dynamodb::types::AttributeValue;
use contracts::frames::{Frame, MAX_CHANNELS_PER_CONNECTION, MAX_FRAME_BYTES, kinds};
use contracts::{BusEvent, JobId};
use notifier::store::{Appended, Store};
use notifier::{Deps, NotifierConfig};
use serde_json::{Value, json};

use crate::{Posts, connections_api, table};

type Seen = Arc<std::sync::Mutex<Posts>>;

/// Handlers over a fresh table, pushing to a stand-in `@connections` API.
async fn deps(config: NotifierConfig) -> (Deps, Seen) {
    let (endpoint, posts) = connections_api().await;
    let (_, table) = table().await;
    let sdk = emulator::test_emulator().await.sdk_config();
    (Deps::new(&sdk, table, &endpoint, config), posts)
}

/// A job event as EventBridge delivers it, put with `source`.
fn bus_event(source: &str, detail_type: &str, detail: Value) -> BusEvent {
    serde_json::from_value(json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": detail_type,
        "source": source,
        "time": "2024-01-01T00:00:00Z",
        "detail": detail,
    }))
    .unwrap()
}

fn requested(job: &JobId, by: &str, params: Value) -> Value {
    json!({ "model": "spin", "params": params, "jobId": job, "requestedBy": by })
}

/// What a WebSocket client's message reaches `notifier-ws` as.
async fn ws(deps: &Deps, connection_id: &str, body: Value) -> Frame {
    let route = body["action"].as_str().unwrap_or("$default").to_owned();
    let mut request = ApiGatewayWebsocketProxyRequest::default();
    request.request_context.connection_id = Some(connection_id.to_owned());
    request.request_context.route_key = Some(route);
    request.body = Some(body.to_string());
    // Message routes verify no token: a verifier whose keys are never fetched.
    let verifier = auth::Verifier::new(auth::VerifierConfig {
        issuer: "unused".into(),
        audience: "unused".into(),
        jwks: auth::Jwks::from_url("http://127.0.0.1:9/unused").unwrap(),
    });
    let ws = deps.clone().with_verifier(verifier);
    let answer: ApiGatewayProxyResponse = notifier::handle_ws(request, &ws).await.unwrap();
    match answer.body {
        Some(Body::Text(text)) => serde_json::from_str(&text).unwrap(),
        other => panic!("a message route answers a frame, got {other:?}"),
    }
}

async fn subscribe(deps: &Deps, connection_id: &str, channel: &str, since: Option<u64>) -> Frame {
    ws(
        deps,
        connection_id,
        json!({ "action": "subscribe", "channel": channel, "since": since }),
    )
    .await
}

/// The frames posted to a connection (refused posts included), as JSON.
fn posted(posts: &Seen, connection_id: &str) -> Vec<Value> {
    let posts = posts.lock().unwrap();
    posts
        .seen
        .get(connection_id)
        .map(|bodies| {
            bodies
                .iter()
                .map(|b| serde_json::from_slice(b).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_spoofed_job_requested_does_not_hand_alices_job_to_bob() {
    let (deps, _) = deps(NotifierConfig::default()).await;
    let job = JobId::generate();
    let channel = format!("job:{job}");
    notifier::handle_event(
        bus_event(
            "fleet.jobs",
            "JobRequested",
            requested(&job, "alice", json!({})),
        ),
        &deps,
    )
    .await
    .unwrap();
    // Bob claims the job: once with the jobs service's source (a publisher IAM did not
    // stop), once with his own.
    for source in ["fleet.jobs", "bob.tools"] {
        let spoofed = bus_event(
            source,
            "JobRequested",
            requested(&job, "bob", json!({"x": 1})),
        );
        let outcome = notifier::handle_event(spoofed, &deps).await;
        let outcome = outcome.expect("a refused claim is no error to retry");
        assert!(outcome.channels.is_empty(), "{source}: {outcome:?}");
    }
    assert_eq!(
        deps.store.owner(&job.to_string()).await.unwrap().as_deref(),
        Some("alice")
    );
    // A second instance, with nothing remembered, reads the same.
    let cold = Store::new(
        aws_sdk_dynamodb::Client::new(&emulator::test_emulator().await.sdk_config()),
        deps.store.table(),
        NotifierConfig::default(),
    );
    assert_eq!(
        cold.owner(&job.to_string()).await.unwrap().as_deref(),
        Some("alice")
    );
    assert_eq!(
        deps.store.head(&channel).await.unwrap(),
        1,
        "no spoofed frame"
    );

    deps.store.put_connection("bob-conn", "bob").await.unwrap();
    let refused = subscribe(&deps, "bob-conn", &channel, Some(0)).await;
    assert_eq!(
        (refused.kind.as_str(), refused.data["code"].as_str()),
        (kinds::ERROR, Some("forbidden"))
    );
    assert!(deps.store.subscribers(&channel).await.unwrap().is_empty());
    deps.store
        .put_connection("alice-conn", "alice")
        .await
        .unwrap();
    let own = subscribe(&deps, "alice-conn", &channel, None).await;
    assert_eq!(own.kind, kinds::SUBSCRIBED, "{own:?}");

    // A job nobody requested yet cannot be claimed from outside the jobs service either.
    let fresh = JobId::generate();
    notifier::handle_event(
        bus_event(
            "bob.tools",
            "JobRequested",
            requested(&fresh, "bob", json!({})),
        ),
        &deps,
    )
    .await
    .unwrap();
    assert_eq!(deps.store.owner(&fresh.to_string()).await.unwrap(), None);
    let refused = subscribe(&deps, "bob-conn", &format!("job:{fresh}"), Some(0)).await;
    assert_eq!(refused.kind, kinds::ERROR, "{refused:?}");
}

/// Fails the answer of the first request that writes a frame item, after DynamoDB has
/// applied it: a timeout, or a crash, between the write and everything after it.
#[derive(Debug, Default)]
struct LoseFirstFrameWrite {
    armed: AtomicBool,
    failing: AtomicBool,
}

impl aws_sdk_dynamodb::config::Intercept for LoseFirstFrameWrite {
    fn name(&self) -> &'static str {
        "LoseFirstFrameWrite"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let body = context.request().body().bytes().unwrap_or_default();
        let writes_frame = String::from_utf8_lossy(body).contains("frame#");
        if writes_frame && self.armed.swap(false, Ordering::SeqCst) {
            self.failing.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    fn read_before_deserialization(
        &self,
        _: &aws_sdk_dynamodb::config::interceptors::BeforeDeserializationInterceptorContextRef<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if self.failing.swap(false, Ordering::SeqCst) {
            return Err("the answer was lost after the write".into());
        }
        Ok(())
    }
}

/// The frames of `channel` that carry `event` (by their `data.event`).
async fn frames_of(store: &Store, channel: &str, event: &str) -> Vec<u64> {
    let history = store.history(channel, 0).await.unwrap();
    history
        .frames
        .iter()
        .filter(|f| f.data["event"] == event)
        .map(|f| f.offset)
        .collect()
}

#[tokio::test]
async fn an_event_retried_after_its_write_was_lost_keeps_its_one_offset() {
    let (_, table) = table().await;
    let sdk = emulator::test_emulator().await.sdk_config();
    let fault = Arc::new(LoseFirstFrameWrite::default());
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(aws_sdk_dynamodb::config::SharedInterceptor::new(FaultRef(
            fault.clone(),
        )))
        .build();
    let store = Store::new(
        aws_sdk_dynamodb::Client::from_conf(config),
        table,
        NotifierConfig::default(),
    );
    store
        .append("job:w", "e0", "JobProgress", json!({"event": "e0"}), None)
        .await
        .unwrap();
    fault.armed.store(true, Ordering::SeqCst);
    // The first delivery: written, but the answer lost (the SDK may retry it itself).
    let first = store
        .append("job:w", "e1", "JobProgress", json!({"event": "e1"}), None)
        .await;
    assert!(!fault.armed.load(Ordering::SeqCst), "the fault was hit");
    // EventBridge delivers it again.
    let again = store
        .append("job:w", "e1", "JobProgress", json!({"event": "e1"}), None)
        .await
        .unwrap();
    assert_eq!(again.frame().offset, 2, "{first:?} then {again:?}");
    if let Ok(first) = first {
        assert_eq!(first.frame().offset, 2);
    }
    assert!(matches!(again, Appended::Duplicate(_)), "{again:?}");
    assert_eq!(frames_of(&store, "job:w", "e1").await, [2]);
    let next = store
        .append("job:w", "e2", "JobProgress", json!({"event": "e2"}), None)
        .await
        .unwrap();
    assert_eq!(next.frame().offset, 3, "no offset skipped");
}

/// Shares one fault between the test and the client.
#[derive(Debug)]
struct FaultRef(Arc<LoseFirstFrameWrite>);

impl aws_sdk_dynamodb::config::Intercept for FaultRef {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        components: &aws_sdk_dynamodb::config::RuntimeComponents,
        cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0.read_before_transmit(context, components, cfg)
    }

    fn read_before_deserialization(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeDeserializationInterceptorContextRef<'_>,
        components: &aws_sdk_dynamodb::config::RuntimeComponents,
        cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0.read_before_deserialization(context, components, cfg)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_taking_one_event_at_once_append_it_once() {
    let (client, table) = table().await;
    // Two warm instances: nothing in process serializes them.
    let one = Store::new(client.clone(), table.clone(), NotifierConfig::default());
    let two = Store::new(client, table, NotifierConfig::default());
    for round in 0..10 {
        let channel = format!("job:dup{round}");
        let append = |store: Store, channel: String| {
            tokio::spawn(async move {
                store
                    .append(&channel, "e1", "JobProgress", json!({"event": "e1"}), None)
                    .await
                    .unwrap()
            })
        };
        let (a, b) = futures::join!(
            append(one.clone(), channel.clone()),
            append(two.clone(), channel.clone())
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.frame(), b.frame(), "round {round}");
        assert_eq!(frames_of(&one, &channel, "e1").await, [1], "round {round}");
        assert_eq!(one.head(&channel).await.unwrap(), 1, "round {round}");
    }
}

#[tokio::test]
async fn a_job_event_too_large_for_the_gateway_arrives_as_a_reference() {
    let (deps, posts) = deps(NotifierConfig::default()).await;
    let job = JobId::generate();
    let channel = format!("job:{job}");
    deps.store
        .set_owner(&job.to_string(), Some("alice"))
        .await
        .unwrap();
    deps.store
        .put_connection("alice-live", "alice")
        .await
        .unwrap();
    assert_eq!(
        subscribe(&deps, "alice-live", &channel, None).await.kind,
        kinds::SUBSCRIBED
    );
    let progress = bus_event(
        "fleet.jobs",
        "JobProgress",
        json!({ "jobId": job, "progress": 0.5 }),
    );
    notifier::handle_event(progress, &deps).await.unwrap();
    // A crash log as the cause: ~140 KB, over the gateway's 128 KB message.
    let failed = bus_event(
        "fleet.jobs",
        "JobFailed",
        json!({ "jobId": job, "error": "Crashed", "cause": "x".repeat(140 * 1024) }),
    );
    let outcome = notifier::handle_event(failed, &deps).await.unwrap();
    assert_eq!(outcome.pushed.delivered, 1, "{outcome:?}");
    assert_eq!(outcome.pushed.failed, 0, "{outcome:?}");
    let live = posted(&posts, "alice-live");
    let offsets: Vec<u64> = live.iter().map(|f| f["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, [1, 2]);
    let frame = &live[1];
    assert_eq!(frame["type"], "JobFailed");
    assert_eq!(frame["data"], Value::Null);
    assert_eq!(frame["dataRef"]["href"], format!("/jobs/{job}"));
    assert!(frame["dataRef"]["bytes"].as_u64().unwrap() > 140 * 1024);
    // The history keeps it bounded too, on both channels.
    for name in [channel.clone(), "user:alice".to_owned()] {
        let history = deps.store.history(&name, 0).await.unwrap();
        let last = history.frames.last().unwrap();
        assert_eq!(last.kind, "JobFailed", "{name}");
        assert!(last.encoded_len() <= MAX_FRAME_BYTES, "{name}");
        assert!(last.data_ref.is_some(), "{name}");
    }
}

#[tokio::test]
async fn a_replay_goes_past_a_frame_the_gateway_refuses_as_too_large() {
    let (deps, posts) = deps(NotifierConfig::default()).await;
    let job = JobId::generate();
    let channel = format!("job:{job}");
    deps.store
        .set_owner(&job.to_string(), Some("alice"))
        .await
        .unwrap();
    // Offset 1: a frame an older deployment wrote whole, over the gateway's limit.
    let oversized = json!({
        "channel": channel, "offset": 1, "type": "JobRequested",
        "data": { "jobId": job, "params": { "blob": "y".repeat(140 * 1024) } }
    });
    let (client, table) = (
        aws_sdk_dynamodb::Client::new(&emulator::test_emulator().await.sdk_config()),
        deps.store.table().to_owned(),
    );
    client
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S(format!("chan#{channel}")))
        .item("sk", AttributeValue::S(format!("frame#{:020}", 1)))
        .item("frame", AttributeValue::S(oversized.to_string()))
        .send()
        .await
        .unwrap();
    // Offset 2 fits the notifier's bound but not a stricter gateway's (16 KiB for the
    // `-small` connection); offset 3 fits everywhere.
    let medium = json!({ "jobId": job, "message": "z".repeat(40 * 1024) });
    let two = deps
        .store
        .append(&channel, "e2", "JobProgress", medium, None)
        .await
        .unwrap();
    assert_eq!(two.frame().offset, 2);
    deps.store
        .append(&channel, "e3", "JobProgress", json!({ "jobId": job }), None)
        .await
        .unwrap();

    for (connection, limit) in [
        ("alice-replay", contracts::frames::GATEWAY_MESSAGE_BYTES),
        ("alice-replay-small", 16 * 1024),
    ] {
        deps.store
            .put_connection(connection, "alice")
            .await
            .unwrap();
        let answer = subscribe(&deps, connection, &channel, Some(0)).await;
        assert_eq!(answer.kind, kinds::SUBSCRIBED, "{connection}: {answer:?}");
        assert_eq!(answer.data["replayed"], 3, "{connection}: {answer:?}");
        let delivered: Vec<Value> = posted(&posts, connection)
            .into_iter()
            .filter(|f| serde_json::to_vec(f).unwrap().len() <= limit)
            .collect();
        let offsets: Vec<u64> = delivered
            .iter()
            .map(|f| f["offset"].as_u64().unwrap())
            .collect();
        assert_eq!(offsets, [1, 2, 3], "{connection}");
        assert_eq!(delivered[0]["dataRef"]["href"], format!("/jobs/{job}"));
        assert_eq!(delivered[0]["data"], Value::Null);
    }
    let small = posted(&posts, "alice-replay-small");
    assert_eq!(
        small.len(),
        4,
        "offset 2 was refused once, then sent by reference"
    );
    assert_eq!(small[2]["dataRef"]["href"], format!("/jobs/{job}"));
}

#[tokio::test]
async fn a_subscribe_to_a_made_up_job_is_refused_at_once() {
    let (deps, _) = deps(NotifierConfig::default()).await;
    deps.store
        .put_connection("mallory", "mallory")
        .await
        .unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let job = JobId::generate();
        let answer = subscribe(&deps, "mallory", &format!("job:{job}"), Some(0)).await;
        let took = started.elapsed();
        // The configured short wait and a few reads: not seconds per made-up id.
        let wait = NotifierConfig::default()
            .subscribe_owner_wait
            .min(notifier::MAX_SUBSCRIBE_OWNER_WAIT);
        assert!(took <= wait + Duration::from_millis(500), "took {took:?}");
        assert_eq!(answer.data["code"], "forbidden", "{answer:?}");
        let message = answer.data["message"].as_str().unwrap();
        assert!(message.contains("unknown or not yours"), "{message}");
    }
}

#[tokio::test]
async fn a_connection_holds_a_bounded_number_of_channels() {
    let (deps, _) = deps(NotifierConfig::default()).await;
    deps.store
        .put_connection("hoarder", "hoarder")
        .await
        .unwrap();
    let jobs: Vec<JobId> = (0..=MAX_CHANNELS_PER_CONNECTION)
        .map(|_| JobId::generate())
        .collect();
    for job in &jobs {
        deps.store
            .set_owner(&job.to_string(), Some("hoarder"))
            .await
            .unwrap();
    }
    for job in &jobs[..MAX_CHANNELS_PER_CONNECTION] {
        let answer = subscribe(&deps, "hoarder", &format!("job:{job}"), None).await;
        assert_eq!(answer.kind, kinds::SUBSCRIBED, "{answer:?}");
    }
    let last = format!("job:{}", jobs[MAX_CHANNELS_PER_CONNECTION]);
    let refused = subscribe(&deps, "hoarder", &last, None).await;
    assert_eq!(refused.data["code"], "too_many_channels", "{refused:?}");
    assert!(deps.store.subscribers(&last).await.unwrap().is_empty());
    // Subscribing again to one it holds is fine; after an unsubscribe there is room.
    let again = subscribe(&deps, "hoarder", &format!("job:{}", jobs[0]), None).await;
    assert_eq!(again.kind, kinds::SUBSCRIBED, "{again:?}");
    let gone = ws(
        &deps,
        "hoarder",
        json!({ "action": "unsubscribe", "channel": format!("job:{}", jobs[0]) }),
    )
    .await;
    assert_eq!(gone.kind, kinds::UNSUBSCRIBED);
    assert_eq!(
        subscribe(&deps, "hoarder", &last, None).await.kind,
        kinds::SUBSCRIBED
    );
}

#[tokio::test]
async fn offsets_go_on_after_a_quiet_day_expired_the_history() {
    let (client, table) = table().await;
    let store = Store::new(client.clone(), table.clone(), NotifierConfig::default());
    let channel = "user:quiet";
    for i in 1..=3 {
        let event = format!("old{i}");
        store
            .append(
                channel,
                &event,
                "JobProgress",
                json!({ "event": event }),
                None,
            )
            .await
            .unwrap();
    }
    // A day and more later, DynamoDB's TTL has deleted everything of the channel that
    // had expired by then.
    let later = time::OffsetDateTime::now_utc().unix_timestamp() + 2 * 24 * 3600;
    let items = client
        .query()
        .table_name(&table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(format!("chan#{channel}")))
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    for item in items {
        let expires = item
            .get("expiresAt")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok());
        if expires.is_some_and(|at| at <= later) {
            client
                .delete_item()
                .table_name(&table)
                .key("pk", item["pk"].clone())
                .key("sk", item["sk"].clone())
                .send()
                .await
                .unwrap();
        }
    }
    assert!(store.history(channel, 0).await.unwrap().frames.is_empty());
    for i in 1..=5 {
        let event = format!("new{i}");
        store
            .append(
                channel,
                &event,
                "JobProgress",
                json!({ "event": event }),
                None,
            )
            .await
            .unwrap();
    }
    // A client that had seen offset 3 before the quiet day resumes: it gets every new
    // frame, none passed off as one it already had.
    let resumed = store.history(channel, 3).await.unwrap();
    assert_eq!(resumed.discontinuity(channel, 3), None);
    let events: Vec<&str> = resumed
        .frames
        .iter()
        .map(|f| f.data["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["new1", "new2", "new3", "new4", "new5"]);
    let offsets: Vec<u64> = resumed.frames.iter().map(|f| f.offset).collect();
    assert_eq!(offsets, [4, 5, 6, 7, 8]);
    // One that resumes from before the quiet day is told what it lost.
    let old = store.history(channel, 1).await.unwrap();
    let lost = old
        .discontinuity(channel, 1)
        .expect("offsets 2 and 3 expired");
    assert_eq!(lost.offset, 3);
}

/// Found by `fleet chaos`: when a job's `JobRequested` reached the notifier late (a
/// redelivery after a lost receive), the job's other events had waited for its owner,
/// given up, and gone to `job:<id>` only, so the owner's `user:` channel never showed
/// the job's outcome. The owner's channel now catches up when its owner becomes known.
#[tokio::test]
async fn events_that_came_before_their_jobs_owner_reach_the_owners_channel_once_it_is_known() {
    let config = NotifierConfig {
        owner_wait: Duration::from_millis(50),
        ..NotifierConfig::default()
    };
    let (deps, posts) = deps(config).await;
    let job = JobId::generate();
    let user = format!("user:{}", uuid::Uuid::new_v4().simple());
    let owner = user.trim_start_matches("user:").to_owned();
    deps.store.put_connection("watcher", &owner).await.unwrap();
    let answer = subscribe(&deps, "watcher", &user, Some(0)).await;
    assert_eq!(answer.kind, kinds::SUBSCRIBED, "{answer:?}");

    let started = bus_event(
        "fleet.jobs",
        "JobStarted",
        json!({"jobId": job, "worker": "w1", "attempt": 1}),
    );
    let succeeded = bus_event(
        "fleet.jobs",
        "JobSucceeded",
        json!({"jobId": job, "summary": {}, "result": {"bucket": "b", "key": "k", "bytes": 1}}),
    );
    for event in [started, succeeded.clone()] {
        let outcome = notifier::handle_event(event, &deps).await.unwrap();
        assert_eq!(
            outcome.channels,
            [format!("job:{job}")],
            "the owner is not known yet"
        );
    }
    let requested = bus_event(
        "fleet.jobs",
        "JobRequested",
        requested(&job, &owner, json!({})),
    );
    notifier::handle_event(requested.clone(), &deps)
        .await
        .unwrap();

    let history = deps.store.history(&user, 0).await.unwrap();
    let kinds_seen: Vec<&str> = history.frames.iter().map(|f| f.kind.as_str()).collect();
    assert_eq!(kinds_seen, ["JobRequested", "JobStarted", "JobSucceeded"]);
    let pushed: Vec<String> = posted(&posts, "watcher")
        .iter()
        .map(|f| f["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        pushed,
        ["JobRequested", "JobStarted", "JobSucceeded"],
        "pushed live, once each"
    );

    // Redeliveries change nothing: every event is on the owner's channel once.
    notifier::handle_event(requested, &deps).await.unwrap();
    notifier::handle_event(succeeded, &deps).await.unwrap();
    assert_eq!(deps.store.history(&user, 0).await.unwrap().head, 3);
}

/// Found by `fleet chaos`: a job another service requested on the bus has no owner, and
/// every one of its events waited the whole [`NotifierConfig::owner_wait`] for one that
/// would never come, holding a function instance each time. With a few such jobs the
/// notifier fell minutes behind every other job. Its `JobRequested` now says there is no
/// owner, and its events go to `job:<id>` at once.
#[tokio::test]
async fn events_of_a_job_nobody_owns_do_not_wait_for_an_owner() {
    let config = NotifierConfig {
        // Longer than the test's deadline: an event that waits for an owner fails it.
        owner_wait: Duration::from_secs(600),
        ..NotifierConfig::default()
    };
    let (endpoint, _posts) = connections_api().await;
    let (_, table) = table().await;
    let sdk = emulator::test_emulator().await.sdk_config();
    let deps = Deps::new(&sdk, table.clone(), &endpoint, config.clone());
    let job = JobId::generate();
    let ownerless = bus_event(
        "fleet.jobs",
        "JobRequested",
        json!({ "model": "spin", "params": {}, "jobId": job }),
    );
    notifier::handle_event(ownerless, &deps).await.unwrap();

    // Another instance, which has seen nothing of the job, takes its next events.
    let other = Deps::new(&sdk, table, &endpoint, config);
    for event in [
        bus_event(
            "fleet.jobs",
            "JobStarted",
            json!({"jobId": job, "worker": "w1", "attempt": 1}),
        ),
        bus_event(
            "fleet.jobs",
            "JobSucceeded",
            json!({"jobId": job, "summary": {}, "result": {"bucket": "b", "key": "k", "bytes": 1}}),
        ),
    ] {
        let outcome = tokio::time::timeout(
            Duration::from_secs(30),
            notifier::handle_event(event, &other),
        )
        .await
        .expect("an event of a job nobody owns waited for an owner")
        .unwrap();
        assert_eq!(outcome.channels, [format!("job:{job}")]);
    }
    let history = deps.store.history(&format!("job:{job}"), 0).await.unwrap();
    assert_eq!(history.head, 3);

    // Nobody can take the job over later, either.
    let claimed = bus_event(
        "fleet.jobs",
        "JobRequested",
        requested(&job, "mallory", json!({})),
    );
    let outcome = notifier::handle_event(claimed, &other).await.unwrap();
    assert!(outcome.channels.is_empty(), "{outcome:?}");
}
