//! The notifier's table against the emulator: offsets, idempotent appends, resumable
//! history, sharded subscribers, connection cleanup; and broadcasts to a stand-in for the
//! `@connections` API.

#![allow(clippy::unwrap_used)]

mod hardening;

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::AttributeValue;
use emulator::testing::{self, TableKey};
use notifier::store::{Appended, Draft, Store};
use notifier::{Channel, NotifierConfig};
use serde_json::json;

pub(crate) async fn store(config: NotifierConfig) -> Store {
    let (client, table) = table().await;
    Store::new(client, table, config)
}

/// A fresh notifier table, and a client for it.
pub(crate) async fn table() -> (aws_sdk_dynamodb::Client, String) {
    let sdk = emulator::test_emulator().await.sdk_config();
    let table = testing::table(&sdk, "notifier", TableKey::with_sort("pk", "sk")).await;
    (aws_sdk_dynamodb::Client::new(&sdk), table)
}

#[tokio::test]
async fn concurrent_appends_get_consecutive_offsets_and_a_repeated_event_keeps_its_own() {
    let store = store(NotifierConfig::default()).await;
    let appends = (0..12).map(|i| {
        let store = store.clone();
        async move {
            store
                .append(
                    "job:a",
                    &format!("event-{i}"),
                    "JobProgress",
                    json!({ "i": i }),
                    None,
                )
                .await
                .unwrap()
        }
    });
    let frames = futures::future::join_all(appends).await;
    let offsets: BTreeSet<u64> = frames.iter().map(|a| a.frame().offset).collect();
    assert_eq!(offsets, (1..=12).collect(), "no gap, no offset used twice");
    let again = store
        .append("job:a", "event-3", "JobProgress", json!({ "i": 3 }), None)
        .await
        .unwrap();
    let first = frames
        .iter()
        .find(|a| a.frame().data["i"] == 3)
        .unwrap()
        .frame();
    assert_eq!(again, Appended::Duplicate(first.clone()));
    let history = store.history("job:a", 0).await.unwrap();
    assert_eq!(history.head, 12);
    let replayed: Vec<u64> = history.frames.iter().map(|f| f.offset).collect();
    assert_eq!(replayed, (1..=12).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_history_is_bounded_and_an_old_since_gets_a_discontinuity() {
    let store = store(NotifierConfig {
        history_len: 3,
        ..NotifierConfig::default()
    })
    .await;
    for i in 1..=5 {
        store
            .append("user:u", &format!("e{i}"), "JobProgress", json!({}), None)
            .await
            .unwrap();
    }
    let recent = store.history("user:u", 3).await.unwrap();
    assert_eq!(
        recent.frames.iter().map(|f| f.offset).collect::<Vec<_>>(),
        [4, 5]
    );
    assert_eq!(recent.discontinuity("user:u", 3), None);
    let old = store.history("user:u", 0).await.unwrap();
    assert_eq!(
        old.frames.iter().map(|f| f.offset).collect::<Vec<_>>(),
        [3, 4, 5]
    );
    let lost = old
        .discontinuity("user:u", 0)
        .expect("offsets 1 and 2 are gone");
    assert_eq!(lost.kind, "discontinuity");
    assert_eq!(lost.offset, 2);
}

#[tokio::test]
async fn subscribers_span_shards_and_a_removed_connection_leaves_every_channel() {
    let store = store(NotifierConfig {
        subscription_shards: 4,
        ..NotifierConfig::default()
    })
    .await;
    let channel = Channel::user("u");
    let job = Channel::job(contracts::JobId::generate());
    for i in 0..20 {
        let id = format!("conn-{i}");
        store.put_connection(&id, "u").await.unwrap();
        store.subscribe(&id, &channel).await.unwrap();
    }
    store.subscribe("conn-7", &job).await.unwrap();
    assert_eq!(
        store.subscribers(&channel.to_string()).await.unwrap().len(),
        20
    );
    let conn = store.connection("conn-7").await.unwrap().unwrap();
    assert_eq!(conn.sub, "u");
    assert_eq!(conn.channels.len(), 2);

    store.remove_connection("conn-7").await.unwrap();
    let left = store.subscribers(&channel.to_string()).await.unwrap();
    assert_eq!(left.len(), 19);
    assert!(!left.contains(&"conn-7".to_owned()));
    assert!(
        store
            .subscribers(&job.to_string())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.connection("conn-7").await.unwrap(), None);
    // Idempotent: a second removal (a late $disconnect after a 410) is fine.
    store.remove_connection("conn-7").await.unwrap();

    store.unsubscribe("conn-1", &channel).await.unwrap();
    assert_eq!(
        store.subscribers(&channel.to_string()).await.unwrap().len(),
        18
    );
}

#[tokio::test]
async fn a_channel_with_more_shards_than_one_batch_read_takes_has_every_subscriber() {
    // 150 shard keys: more than one `BatchGetItem` (100) takes.
    let store = store(NotifierConfig {
        subscription_shards: 150,
        ..NotifierConfig::default()
    })
    .await;
    let channel = Channel::user("u");
    let mut ids: Vec<String> = (0..30).map(|i| format!("conn-{i}")).collect();
    for id in &ids {
        store.put_connection(id, "u").await.unwrap();
        store.subscribe(id, &channel).await.unwrap();
    }
    for _ in 0..2 {
        // Cold, then warm (only the revisions are read).
        let mut got = store.subscribers(&channel.to_string()).await.unwrap();
        got.sort();
        ids.sort();
        assert_eq!(got, ids);
    }
}

#[tokio::test]
async fn an_append_steps_over_an_offset_taken_without_moving_the_head() {
    let store = store(NotifierConfig::default()).await;
    store
        .append("user:h", "e1", "JobProgress", json!({}), None)
        .await
        .unwrap();
    // A writer that stopped after claiming offset 2 and before advancing the head.
    let client = aws_sdk_dynamodb::Client::new(&emulator::test_emulator().await.sdk_config());
    let orphan = json!({"channel": "user:h", "offset": 2, "type": "JobProgress", "data": {}});
    client
        .put_item()
        .table_name(store.table())
        .item(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("chan#user:h".into()),
        )
        .item(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("frame#{:020}", 2)),
        )
        .item(
            "frame",
            aws_sdk_dynamodb::types::AttributeValue::S(orphan.to_string()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(store.head("user:h").await.unwrap(), 1);
    // A replay meanwhile still includes the claimed frame: it may already have been
    // broadcast, before the replaying subscriber was added.
    let replay = store.history("user:h", 0).await.unwrap();
    let offsets: Vec<u64> = replay.frames.iter().map(|f| f.offset).collect();
    assert_eq!((replay.head, offsets), (2, vec![1, 2]));
    let next = store
        .append("user:h", "e3", "JobProgress", json!({}), None)
        .await
        .unwrap();
    assert_eq!(next.frame().offset, 3, "offset 2 is taken, not reused");
    assert_eq!(store.head("user:h").await.unwrap(), 3);
    let offsets: Vec<u64> = store
        .history("user:h", 0)
        .await
        .unwrap()
        .frames
        .iter()
        .map(|f| f.offset)
        .collect();
    assert_eq!(offsets, [1, 2, 3]);
}

#[tokio::test]
async fn what_runs_on_a_new_frame_finds_it_in_the_history_and_a_repeat_finds_it_marked() {
    let store = store(NotifierConfig::default()).await;
    let draft = |event_id| Draft {
        channel: "user:t",
        event_id,
        kind: "JobProgress",
        data: json!({ "p": 1 }),
        correlation_id: None,
    };
    // The broadcast runs beside the rest of the append: a subscriber replaying the
    // history meanwhile must already find the frame, or it could miss it both ways.
    let (appended, replayed) = store
        .append_then(draft("e1"), |appended| async {
            let history = store.history("user:t", 0).await.unwrap();
            (appended, history.frames)
        })
        .await
        .unwrap();
    let Appended::New(frame) = appended else {
        panic!("a first append writes a new frame");
    };
    assert_eq!(replayed, vec![frame.clone()]);
    // Once it returns, the event's marker and the head are written too.
    let again = store
        .append_then(draft("e1"), |appended| async { appended })
        .await
        .unwrap();
    assert_eq!(again, Appended::Duplicate(frame));
    assert_eq!(store.head("user:t").await.unwrap(), 1);
}

#[tokio::test]
async fn a_warm_process_sees_subscribers_another_one_changed_and_shards_that_expired() {
    let (client, table) = table().await;
    let config = NotifierConfig {
        subscription_shards: 4,
        ..NotifierConfig::default()
    };
    // Two warm instances of the notifier over one table.
    let pushing = Store::new(client.clone(), table.clone(), config.clone());
    let routing = Store::new(client.clone(), table.clone(), config);
    let channel = Channel::user("u");
    let name = channel.to_string();
    let sorted = |ids: Vec<String>| ids.into_iter().collect::<BTreeSet<_>>();
    for i in 0..8 {
        routing.put_connection(&format!("c{i}"), "u").await.unwrap();
        routing.subscribe(&format!("c{i}"), &channel).await.unwrap();
    }
    let all: BTreeSet<String> = (0..8).map(|i| format!("c{i}")).collect();
    assert_eq!(sorted(pushing.subscribers(&name).await.unwrap()), all);
    // Read again unchanged: the same answer.
    assert_eq!(sorted(pushing.subscribers(&name).await.unwrap()), all);

    routing.put_connection("late", "u").await.unwrap();
    routing.subscribe("late", &channel).await.unwrap();
    routing.unsubscribe("c3", &channel).await.unwrap();
    let mut expected = all.clone();
    expected.insert("late".into());
    expected.remove("c3");
    assert_eq!(sorted(pushing.subscribers(&name).await.unwrap()), expected);

    // Every shard expires (as DynamoDB's TTL deletes them), and new subscribers come.
    for shard in 0..4 {
        client
            .delete_item()
            .table_name(&table)
            .key("pk", AttributeValue::S(format!("chan#{name}")))
            .key("sk", AttributeValue::S(format!("subs#{shard:03}")))
            .send()
            .await
            .unwrap();
    }
    assert!(pushing.subscribers(&name).await.unwrap().is_empty());
    routing.put_connection("fresh", "u").await.unwrap();
    routing.subscribe("fresh", &channel).await.unwrap();
    assert_eq!(
        pushing.subscribers(&name).await.unwrap(),
        vec!["fresh".to_owned()]
    );

    // A shard written before shards had revisions (an older deployment's row) counts,
    // read after read.
    let legacy = Channel::user("old");
    let legacy_name = legacy.to_string();
    client
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S(format!("chan#{legacy_name}")))
        .item("sk", AttributeValue::S("subs#000".into()))
        .item("conns", AttributeValue::Ss(vec!["before".into()]))
        .send()
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            pushing.subscribers(&legacy_name).await.unwrap(),
            vec!["before".to_owned()]
        );
    }
}

/// What the stand-in `@connections` API saw.
#[derive(Default)]
pub(crate) struct Posts {
    /// Connection id → the bodies posted to it.
    pub(crate) seen: std::collections::HashMap<String, Vec<Vec<u8>>>,
    in_flight: usize,
    most_in_flight: usize,
}

/// Serves `POST /@connections/{id}` on a local port: 410 for ids ending in `-gone`, 413
/// `PayloadTooLargeException` for a body over the gateway's limit (16 KiB for ids ending
/// in `-small`: a gateway stricter than the notifier assumes), 200 after a short hold
/// otherwise (so that posts overlap); records every post, refused ones too.
pub(crate) async fn connections_api() -> (String, std::sync::Arc<std::sync::Mutex<Posts>>) {
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    type Shared = std::sync::Arc<std::sync::Mutex<Posts>>;
    async fn post(
        State(posts): State<Shared>,
        Path(id): Path<String>,
        body: axum::body::Bytes,
    ) -> axum::response::Response {
        use axum::response::IntoResponse as _;
        {
            let mut p = posts.lock().unwrap();
            p.seen.entry(id.clone()).or_default().push(body.to_vec());
            p.in_flight += 1;
            p.most_in_flight = p.most_in_flight.max(p.in_flight);
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        posts.lock().unwrap().in_flight -= 1;
        let limit = if id.ends_with("-small") {
            16 * 1024
        } else {
            contracts::frames::GATEWAY_MESSAGE_BYTES
        };
        if body.len() > limit {
            let large = [("x-amzn-errortype", "PayloadTooLargeException")];
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                large,
                r#"{"message":"Message too long"}"#,
            )
                .into_response()
        } else if id.ends_with("-gone") {
            // As the Management API answers (restJson1: the error type in a header).
            let gone = [("x-amzn-errortype", "GoneException")];
            (StatusCode::GONE, gone, r#"{"message":"gone"}"#).into_response()
        } else {
            StatusCode::OK.into_response()
        }
    }
    let posts = Shared::default();
    let app = axum::Router::new()
        .route("/@connections/{id}", axum::routing::post(post))
        .with_state(posts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), posts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_split_over_pushing_tasks_reaches_each_subscriber_once_and_drops_gone_ones() {
    let (endpoint, posts) = connections_api().await;
    let (_, table) = table().await;
    let config = NotifierConfig {
        push_tasks: 3,
        push_concurrency: 8,
        ..NotifierConfig::default()
    };
    let sdk = emulator::test_emulator().await.sdk_config();
    let deps = notifier::Deps::new(&sdk, table, &endpoint, config);
    let channel = Channel::user("many");
    let mut ids: Vec<String> = (0..1_000).map(|i| format!("conn-{i}")).collect();
    let gone: Vec<String> = (0..5).map(|i| format!("conn-{i}-gone")).collect();
    for id in &gone {
        deps.store.put_connection(id, "many").await.unwrap();
        deps.store.subscribe(id, &channel).await.unwrap();
    }
    ids.extend(gone.iter().cloned());

    let report = notifier::push_all(&deps, ids.clone(), b"frame").await;

    assert_eq!(
        report,
        notifier::PushReport {
            delivered: 1_000,
            gone: 5,
            failed: 0
        }
    );
    {
        let posts = posts.lock().unwrap();
        assert_eq!(posts.seen.len(), ids.len(), "every subscriber got a post");
        assert!(
            posts
                .seen
                .values()
                .all(|bodies| bodies == &[b"frame".to_vec()]),
            "each exactly once, with the frame"
        );
        // 1,005 subscribers make three tasks of eight posts in flight each.
        assert!(
            posts.most_in_flight > 8,
            "one task's limit was never passed: {}",
            posts.most_in_flight
        );
    }
    assert_eq!(
        deps.store.subscribers(&channel.to_string()).await.unwrap(),
        Vec::<String>::new(),
        "gone connections leave the channel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_subscribes_to_a_channel_all_land() {
    // One shard that does not exist yet: every subscribe races to create it.
    let store = store(NotifierConfig {
        subscription_shards: 1,
        ..NotifierConfig::default()
    })
    .await;
    for round in 0..20 {
        let channel = Channel::user(format!("race-{round}"));
        let mut ids: Vec<String> = (0..16).map(|i| format!("conn-{round}-{i}")).collect();
        let subscribes = ids.iter().map(|id| {
            let (store, channel) = (store.clone(), channel.clone());
            let id = id.clone();
            tokio::spawn(async move {
                store.put_connection(&id, "race").await.unwrap();
                store.subscribe(&id, &channel).await.unwrap()
            })
        });
        for subscribe in futures::future::join_all(subscribes).await {
            subscribe.unwrap();
        }
        let mut got = store.subscribers(&channel.to_string()).await.unwrap();
        got.sort();
        ids.sort();
        assert_eq!(got, ids, "round {round}: a subscription was lost");
    }
}
