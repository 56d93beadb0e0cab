//! The WebSocket gateway on a real socket: `$connect` deciding the handshake, route
//! selection, two-way routes, `$disconnect` for every way a connection ends, the limits,
//! `@connections` through the real SDK, the SSE fallback, and a broadcast to many clients.

use std::time::{Duration, Instant};

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use futures::{SinkExt as _, StreamExt as _};
use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
use local_host::{Config, Functions, Host, RunningHost, WebSocketConfig};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use topology::{Function, Service, Topology};

use super::{DEADLINE, deployed, sdk, stage, topology};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Events = mpsc::UnboundedReceiver<ApiGatewayWebsocketProxyRequest>;

const ROUTES: &[&str] = &[
    "$connect",
    "$disconnect",
    "$default",
    "echo",
    "fail",
    "subscribe",
];

/// The test's WebSocket function, as its `main` would hand it to `lambda_runtime::run`:
/// `$connect` wants `token=good`; `echo` echoes the parsed body; `fail` fails; `subscribe`
/// refuses the channel `forbidden`; `$default` returns the raw body. Every event is
/// reported on the channel.
fn functions() -> (Functions, Events) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = service_fn(move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
        let tx = tx.clone();
        async move {
            let request = event.payload;
            let route = request
                .request_context
                .route_key
                .clone()
                .unwrap_or_default();
            let token_ok = request.query_string_parameters.first("token") == Some("good");
            let body = request.body.clone().unwrap_or_default();
            let _ = tx.send(request);
            let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let respond = |status: i64, body: Option<Value>| {
                let mut response = ApiGatewayProxyResponse::default();
                response.status_code = status;
                response.body = body.map(|b| Body::Text(b.to_string()));
                response
            };
            let response = match route.as_str() {
                "$connect" if token_ok => respond(200, None),
                "$connect" => respond(401, Some(json!({ "message": "Unauthorized" }))),
                "$disconnect" => respond(200, None),
                "echo" => respond(200, Some(json!({ "echo": parsed }))),
                "fail" => return Err(lambda_runtime::Error::from("boom")),
                "subscribe" if parsed["channel"] == "forbidden" => respond(
                    200,
                    Some(json!({ "type": "error", "message": "not yours" })),
                ),
                "subscribe" => respond(
                    200,
                    Some(json!({ "type": "subscribed", "channel": parsed["channel"] })),
                ),
                _ => respond(200, Some(json!({ "default": body }))),
            };
            Ok::<_, lambda_runtime::Error>(response)
        }
    });
    (Functions::new().lambda("socket", handler), rx)
}

fn ws_topology(routes: &[&str]) -> Topology {
    topology(
        &stage(),
        Service::new("probe").with(Function::websocket("socket", routes)),
    )
}

fn ws_config(websocket: WebSocketConfig) -> Config {
    Config {
        websocket,
        ..super::config()
    }
}

/// Deploys a topology with the test function serving `routes` and starts a host.
async fn start(routes: &[&str], websocket: WebSocketConfig) -> (RunningHost, Events, String) {
    let sdk = sdk().await;
    let topology = ws_topology(routes);
    let report = deployed(&topology, &sdk).await;
    let (functions, events) = functions();
    let host = match Host::new(ws_config(websocket), functions)
        .start(&topology, &report, &sdk)
        .await
    {
        Ok(host) => host,
        Err(e) => panic!("the host did not start: {e}"),
    };
    let addr = host.http_addr().expect("the host listens");
    (host, events, format!("{addr}"))
}

/// A host whose gateway pings every `interval` and drops a client silent for two.
async fn start_keeping_alive(interval: Duration) -> (RunningHost, Events, String) {
    let websocket = WebSocketConfig {
        keep_alive_interval: interval,
        keep_alive_misses: 2,
        ..WebSocketConfig::default()
    };
    start(ROUTES, websocket).await
}

async fn connect(addr: &str, query: &str) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
    tokio_tungstenite::connect_async(format!("ws://{addr}/ws{query}"))
        .await
        .map(|(client, _)| client)
}

/// The connection id of the next `$connect`.
async fn connected_id(events: &mut Events) -> String {
    event(events, "$connect")
        .await
        .request_context
        .connection_id
        .expect("an id")
}

/// The next event for `route_key`, skipping others, within the deadline.
async fn event(events: &mut Events, route_key: &str) -> ApiGatewayWebsocketProxyRequest {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(deadline.into(), events.recv()).await {
            Ok(Some(e)) if e.request_context.route_key.as_deref() == Some(route_key) => return e,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the function is gone"),
            Err(_) => panic!("no {route_key} event within {DEADLINE:?}"),
        }
    }
}

/// The next data or close frame from the gateway, within the deadline.
async fn receive(client: &mut Client) -> Message {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(deadline.into(), client.next()).await {
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(message))) => return message,
            Ok(Some(Err(e))) => panic!("the connection failed: {e}"),
            Ok(None) => panic!("the connection ended"),
            Err(_) => panic!("nothing arrived within {DEADLINE:?}"),
        }
    }
}

async fn receive_json(client: &mut Client) -> Value {
    match receive(client).await {
        Message::Text(text) => serde_json::from_str(text.as_str()).expect("a JSON frame"),
        other => panic!("not a text frame: {other:?}"),
    }
}

fn close_code(message: &Message) -> Option<u16> {
    match message {
        Message::Close(Some(frame)) => Some(u16::from(frame.code)),
        _ => None,
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client")
}

fn management(sdk: &aws_config::SdkConfig, addr: &str) -> aws_sdk_apigatewaymanagement::Client {
    let config = aws_sdk_apigatewaymanagement::config::Builder::from(sdk)
        .endpoint_url(format!("http://{addr}"))
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(config)
}

#[tokio::test]
async fn connect_decides_the_handshake_and_messages_reach_their_routes_in_order() {
    let (host, mut events, addr) = start(ROUTES, WebSocketConfig::default()).await;

    // Without a valid token the handshake is refused with $connect's status.
    match connect(&addr, "?token=bad").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a connection without a valid token"),
    }
    let refused = event(&mut events, "$connect").await;
    let mut client = connect(&addr, "?token=good&x=1&x=2")
        .await
        .expect("a connection with a valid token");
    let connected = event(&mut events, "$connect").await;
    let context = &connected.request_context;
    let id = context.connection_id.clone().expect("a connection id");
    assert_eq!(id.len(), 16, "{id}");
    assert_ne!(
        refused.request_context.connection_id.as_deref(),
        Some(id.as_str())
    );
    assert_eq!(context.event_type.as_deref(), Some("CONNECT"));
    assert!(context.stage.as_deref().is_some_and(|s| !s.is_empty()));
    assert!(context.connected_at > 0 && context.request_time_epoch >= context.connected_at);
    assert!(
        context
            .apiid
            .as_deref()
            .is_some_and(|a| a.ends_with("probe-ws"))
    );
    assert_eq!(context.identity.source_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        connected.query_string_parameters.first("token"),
        Some("good")
    );
    assert_eq!(
        connected.multi_value_query_string_parameters.all("x"),
        Some(vec!["1", "2"])
    );
    assert!(connected.headers.contains_key("sec-websocket-key"));

    // Route selection on `action`, else `$default`; one reply per message, in order.
    let messages = [
        json!({ "action": "echo", "n": 1 }).to_string(),
        "not json".to_owned(),
        json!({ "action": "nobody", "n": 3 }).to_string(),
        json!({ "action": "echo", "n": 4 }).to_string(),
    ];
    for m in &messages {
        client.send(Message::text(m.clone())).await.expect("send");
    }
    assert_eq!(receive_json(&mut client).await["echo"]["n"], 1);
    assert_eq!(
        receive_json(&mut client).await,
        json!({ "default": "not json" })
    );
    assert_eq!(
        receive_json(&mut client).await["default"],
        messages[2].as_str()
    );
    assert_eq!(receive_json(&mut client).await["echo"]["n"], 4);
    let echoed = event(&mut events, "echo").await;
    assert_eq!(
        echoed.request_context.event_type.as_deref(),
        Some("MESSAGE")
    );
    assert_eq!(
        echoed.request_context.connection_id.as_deref(),
        Some(id.as_str())
    );
    assert!(echoed.request_context.message_id.is_some());
    assert_eq!(echoed.body.as_deref(), Some(messages[0].as_str()));

    // A failed invocation: API Gateway's own frame.
    client
        .send(Message::text(json!({ "action": "fail" }).to_string()))
        .await
        .expect("send");
    let failed = receive_json(&mut client).await;
    assert_eq!(failed["message"], "Internal server error", "{failed}");
    assert_eq!(failed["connectionId"], id.as_str());
    assert!(failed["requestId"].is_string());

    // GET @connections while open; $disconnect with the client's close code; then 410.
    let url = format!("http://{addr}/@connections/{}", urlencode(&id));
    let info: Value = http()
        .get(&url)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(info["identity"]["sourceIp"], "127.0.0.1", "{info}");
    assert!(
        info["connectedAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{info}"
    );
    client.close(None).await.expect("close");
    let gone = event(&mut events, "$disconnect").await;
    assert_eq!(
        gone.request_context.connection_id.as_deref(),
        Some(id.as_str())
    );
    assert_eq!(
        gone.request_context.event_type.as_deref(),
        Some("DISCONNECT")
    );
    assert_eq!(gone.request_context.disconnect_status_code, Some(1005));
    let response = http().get(&url).send().await.expect("GET");
    assert_eq!(response.status(), 410);
    assert_eq!(response.headers()["x-amzn-errortype"], "GoneException");
    host.shutdown().await.expect("a clean shutdown");
}

fn urlencode(id: &str) -> String {
    id.replace('=', "%3D")
}

#[tokio::test]
async fn without_a_default_route_an_unknown_action_is_forbidden() {
    let (host, mut events, addr) = start(&["$connect", "echo"], WebSocketConfig::default()).await;
    let mut client = connect(&addr, "?token=good").await.expect("a connection");
    let id = event(&mut events, "$connect")
        .await
        .request_context
        .connection_id;
    client
        .send(Message::text(json!({ "action": "nobody" }).to_string()))
        .await
        .expect("send");
    let forbidden = receive_json(&mut client).await;
    assert_eq!(forbidden["message"], "Forbidden", "{forbidden}");
    assert_eq!(forbidden["connectionId"].as_str(), id.as_deref());
    assert!(forbidden["requestId"].is_string());
    client
        .send(Message::text(json!({ "action": "echo" }).to_string()))
        .await
        .expect("send");
    assert_eq!(receive_json(&mut client).await["echo"]["action"], "echo");
    host.shutdown().await.expect("a clean shutdown");
}

#[tokio::test]
async fn the_management_sdk_posts_reads_deletes_and_gets_gone_for_closed_connections() {
    let (host, mut events, addr) = start(ROUTES, WebSocketConfig::default()).await;
    let api = management(&sdk().await, &addr);
    let mut client = connect(&addr, "?token=good").await.expect("a connection");
    let id = connected_id(&mut events).await;

    let frame = json!({ "channel": "job:1", "offset": 1 }).to_string();
    api.post_to_connection()
        .connection_id(&id)
        .data(frame.clone().into_bytes().into())
        .send()
        .await
        .expect("PostToConnection");
    assert_eq!(receive(&mut client).await, Message::text(frame));

    let info = api
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .expect("GetConnection");
    assert_eq!(
        info.identity().and_then(|i| i.source_ip()),
        Some("127.0.0.1")
    );
    assert!(info.connected_at().is_some() && info.last_active_at().is_some());

    let too_big = api
        .post_to_connection()
        .connection_id(&id)
        .data(vec![b'x'; 128 * 1024 + 1].into())
        .send()
        .await
        .expect_err("a payload over 128 KB");
    assert!(
        too_big
            .as_service_error()
            .is_some_and(|e| e.is_payload_too_large_exception()),
        "{too_big:?}"
    );

    api.delete_connection()
        .connection_id(&id)
        .send()
        .await
        .expect("DeleteConnection");
    assert_eq!(close_code(&receive(&mut client).await), Some(1000));
    let gone = event(&mut events, "$disconnect").await;
    assert_eq!(
        gone.request_context.connection_id.as_deref(),
        Some(id.as_str())
    );
    assert_eq!(gone.request_context.disconnect_status_code, Some(1000));

    let error = api
        .post_to_connection()
        .connection_id(&id)
        .data(b"late".to_vec().into())
        .send()
        .await
        .expect_err("a post to a gone connection");
    assert!(
        matches!(
            error.into_service_error(),
            aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError::GoneException(_)
        ),
        "PostToConnection to a closed connection must be a GoneException"
    );
    host.shutdown().await.expect("a clean shutdown");
}

#[tokio::test]
async fn a_client_that_stops_answering_is_dropped_within_the_keep_alive_window() {
    let interval = Duration::from_secs(1);
    // Two intervals without a frame from the client.
    let window = interval * 2;
    let (host, mut events, addr) = start_keeping_alive(interval).await;
    // This client reads, so it answers every ping (tungstenite does, while reading).
    let mut answering = connect(&addr, "?token=good").await.expect("a connection");
    let answering_id = connected_id(&mut events).await;
    let reading = tokio::spawn(async move { while let Some(Ok(_)) = answering.next().await {} });
    // This one answers the first ping and sends a frame of its own a quarter interval
    // later, then never reads again, so it answers no other ping: half-open from then
    // on, its last frame between two pings.
    let mut silent = connect(&addr, "?token=good").await.expect("a connection");
    let id = connected_id(&mut events).await;
    loop {
        match tokio::time::timeout(DEADLINE, silent.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => break,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a ping, got {other:?}"),
        }
    }
    // tungstenite queues the pong; a flush sends it.
    silent.flush().await.expect("the pong");
    tokio::time::sleep(interval / 4).await;
    silent
        .send(Message::Ping(Default::default()))
        .await
        .expect("its last frame");
    let opened = Instant::now();
    let gone = event(&mut events, "$disconnect").await;
    let took = opened.elapsed();
    assert_eq!(
        gone.request_context.connection_id.as_deref(),
        Some(id.as_str())
    );
    assert_eq!(gone.request_context.disconnect_status_code, Some(1006));
    // Dropped when the window ends, not at the first ping after it (which came almost
    // an interval later), with slack for a loaded machine.
    assert!(
        took < window + interval / 2,
        "dropped {took:?} after it went silent; the window is {window:?}"
    );
    let status = |id: String| {
        let url = format!("http://{addr}/@connections/{}", urlencode(&id));
        async move { http().get(url).send().await.expect("GET").status() }
    };
    assert_eq!(status(id).await, 410);
    // The client that answers outlives several windows.
    tokio::time::sleep_until((opened + window * 2).into()).await;
    assert_eq!(status(answering_id).await, 200, "an answering client stays");
    reading.abort();
    drop(silent);
    host.shutdown().await.expect("a clean shutdown");
}

#[tokio::test]
async fn posts_to_a_client_that_stops_reading_are_refused_with_429_then_it_is_dropped() {
    let (host, mut events, addr) = start_keeping_alive(Duration::from_secs(2)).await;
    // Each refusal is the answer under test, so the SDK must not retry it.
    let api = aws_sdk_apigatewaymanagement::Client::from_conf(
        aws_sdk_apigatewaymanagement::config::Builder::from(&sdk().await)
            .endpoint_url(format!("http://{addr}"))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build(),
    );
    // Connected, then never read: what is posted fills the socket's buffers.
    let stalled_client = connect(&addr, "?token=good").await.expect("a connection");
    let id = connected_id(&mut events).await;
    let post = |api: aws_sdk_apigatewaymanagement::Client, id: String| {
        tokio::spawn(async move {
            api.post_to_connection()
                .connection_id(id)
                .data(vec![b'x'; 128 * 1024].into())
                .send()
                .await
        })
    };
    // Posts are answered once written; the first one that is not answered at once is
    // the one the kernel no longer takes.
    let mut stalled = None;
    for _ in 0..2_000 {
        let mut posting = post(api.clone(), id.clone());
        match tokio::time::timeout(Duration::from_millis(500), &mut posting).await {
            Ok(answered) => {
                answered
                    .expect("the post's task")
                    .expect("a post the socket takes");
            }
            Err(_) => {
                stalled = Some(posting);
                break;
            }
        }
    }
    let stalled = stalled.expect("a client that reads nothing stalls the writes to it");

    // A post behind the stalled write waits a second, then is refused as API Gateway
    // refuses a client that does not keep up.
    let refused = post(api.clone(), id.clone())
        .await
        .expect("the post's task")
        .expect_err("a post behind a stalled write");
    assert!(
        refused
            .as_service_error()
            .is_some_and(|e| e.is_limit_exceeded_exception()),
        "{refused:?}"
    );
    // The stalled write cannot finish within the keep-alive window: the client is gone.
    let gone = stalled
        .await
        .expect("the post's task")
        .expect_err("a write that never finished");
    assert!(
        gone.as_service_error()
            .is_some_and(|e| e.is_gone_exception()),
        "{gone:?}"
    );
    let disconnect = event(&mut events, "$disconnect").await;
    assert_eq!(
        disconnect.request_context.connection_id.as_deref(),
        Some(id.as_str())
    );
    assert_eq!(
        disconnect.request_context.disconnect_status_code,
        Some(1006)
    );
    drop(stalled_client);
    host.shutdown().await.expect("a clean shutdown");
}

#[tokio::test]
async fn a_message_over_128_kb_closes_with_1009_and_idle_connections_time_out() {
    let (host, mut events, addr) = start(
        ROUTES,
        WebSocketConfig {
            idle_timeout: Duration::from_millis(600),
            keep_alive_interval: Duration::from_millis(100),
            ..WebSocketConfig::default()
        },
    )
    .await;
    let mut client = connect(&addr, "?token=good").await.expect("a connection");
    event(&mut events, "$connect").await;
    // Exactly the limit passes.
    client
        .send(Message::text("x".repeat(128 * 1024)))
        .await
        .expect("send");
    assert!(receive_json(&mut client).await["default"].is_string());
    client
        .send(Message::text("x".repeat(128 * 1024 + 1)))
        .await
        .expect("send");
    assert_eq!(close_code(&receive(&mut client).await), Some(1009));
    let gone = event(&mut events, "$disconnect").await;
    assert_eq!(gone.request_context.disconnect_status_code, Some(1009));

    // A client that answers pings but sends nothing is closed after the idle timeout.
    let mut idle = connect(&addr, "?token=good").await.expect("a connection");
    let opened = Instant::now();
    let closed = receive(&mut idle).await;
    assert_eq!(close_code(&closed), Some(u16::from(CloseCode::Away)));
    assert!(
        opened.elapsed() >= Duration::from_millis(500),
        "{:?}",
        opened.elapsed()
    );
    let gone = event(&mut events, "$disconnect").await;
    assert_eq!(gone.request_context.disconnect_status_code, Some(1001));
    host.shutdown().await.expect("a clean shutdown");
}

/// Reads an SSE response until its text satisfies `done`; returns everything read.
async fn read_until(response: &mut reqwest::Response, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + DEADLINE;
    let mut text = String::new();
    while !done(&text) {
        match tokio::time::timeout_at(deadline.into(), response.chunk()).await {
            Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Ok(None)) => break,
            Ok(Err(e)) => panic!("the stream failed: {e}"),
            Err(_) => {
                panic!("the stream did not satisfy the condition within {DEADLINE:?}: {text}")
            }
        }
    }
    text
}

#[tokio::test]
async fn sse_streams_posted_frames_with_ids_and_resumes_from_last_event_id() {
    let (host, mut events, addr) = start(
        ROUTES,
        WebSocketConfig {
            keep_alive_interval: Duration::from_millis(200),
            ..WebSocketConfig::default()
        },
    )
    .await;
    let http = http();
    let sse = format!("http://{addr}/sse");

    let refused = http
        .get(format!("{sse}?channel=job:1&token=bad"))
        .send()
        .await
        .expect("GET");
    assert_eq!(refused.status(), 401);
    event(&mut events, "$connect").await;

    let mut stream = http
        .get(format!("{sse}?channel=job:1&since=0&token=good"))
        .send()
        .await
        .expect("GET");
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let connected = event(&mut events, "$connect").await;
    assert_eq!(
        connected.query_string_parameters.first("channel"),
        Some("job:1")
    );
    let id = connected.request_context.connection_id.expect("an id");
    let subscribe = event(&mut events, "subscribe").await;
    let body: Value = serde_json::from_str(subscribe.body.as_deref().unwrap_or_default()).unwrap();
    assert_eq!(
        body,
        json!({ "action": "subscribe", "channel": "job:1", "since": 0 })
    );
    let text = read_until(&mut stream, |t| t.contains("subscribed")).await;
    assert!(
        text.contains(r#"data: {"channel":"job:1","type":"subscribed"}"#),
        "{text}"
    );

    for offset in [1, 2] {
        let frame = json!({ "channel": "job:1", "offset": offset, "type": "JobProgress" });
        let posted = http
            .post(format!("http://{addr}/@connections/{}", urlencode(&id)))
            .body(frame.to_string())
            .send()
            .await
            .expect("POST");
        assert_eq!(posted.status(), 200);
    }
    let text = read_until(&mut stream, |t| t.contains("id: 2")).await;
    assert!(
        text.contains(
            "data: {\"channel\":\"job:1\",\"offset\":1,\"type\":\"JobProgress\"}\nid: 1\n"
        ),
        "{text}"
    );
    assert!(text.contains("id: 2\n"), "{text}");
    drop(stream);
    let gone = event(&mut events, "$disconnect").await;
    assert_eq!(
        gone.request_context.connection_id.as_deref(),
        Some(id.as_str())
    );

    // EventSource reconnects with the original URL and Last-Event-ID: the header wins.
    let stream = http
        .get(format!("{sse}?channel=job:1&since=0&token=good"))
        .header("last-event-id", "2")
        .send()
        .await
        .expect("GET");
    assert_eq!(stream.status(), 200);
    let subscribe = event(&mut events, "subscribe").await;
    let body: Value = serde_json::from_str(subscribe.body.as_deref().unwrap_or_default()).unwrap();
    assert_eq!(body["since"], 2);
    drop(stream);

    // A refused subscription ends the stream with an error event.
    let mut refused = http
        .get(format!("{sse}?channel=forbidden&token=good"))
        .send()
        .await
        .expect("GET");
    let text = read_until(&mut refused, |_| false).await;
    assert!(text.contains("event: error\ndata: "), "{text}");
    assert!(text.contains("not yours"), "{text}");
    host.shutdown().await.expect("a clean shutdown");
}

#[tokio::test]
async fn two_hundred_connections_receive_a_broadcast() {
    const CLIENTS: usize = 200;
    let (host, mut events, addr) = start(ROUTES, WebSocketConfig::default()).await;
    let started = Instant::now();
    let clients = futures::future::join_all((0..CLIENTS).map(|_| connect(&addr, "?token=good")))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .expect("every connection opens");
    let mut ids = Vec::new();
    for _ in 0..CLIENTS {
        ids.push(connected_id(&mut events).await);
    }
    let connected = started.elapsed();

    let http = http();
    let broadcast = Instant::now();
    let frame = json!({ "channel": "all", "offset": 1 }).to_string();
    let statuses = futures::stream::iter(ids.iter())
        .map(|id| {
            http.post(format!("http://{addr}/@connections/{}", urlencode(id)))
                .body(frame.clone())
                .send()
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    assert!(
        statuses
            .iter()
            .all(|s| s.as_ref().is_ok_and(|r| r.status() == 200)),
        "every post is accepted"
    );
    let received = futures::future::join_all(clients.into_iter().map(|mut client| async move {
        let message = receive(&mut client).await;
        (message, client)
    }))
    .await;
    let delivered = broadcast.elapsed();
    assert!(
        received
            .iter()
            .all(|(m, _)| *m == Message::text(frame.clone()))
    );
    tracing::info!(?connected, ?delivered, "200 connections, one broadcast");
    assert!(delivered < Duration::from_secs(10), "{delivered:?}");
    host.shutdown().await.expect("a clean shutdown");
}

#[tokio::test]
async fn at_shutdown_a_disconnect_that_finds_no_free_instance_in_time_is_skipped() {
    // One instance of the function, and a `$disconnect` that holds it until the function's
    // timeout. At shutdown the first connection's `$disconnect` takes the instance; the
    // others may wait 100 ms for it, so they are skipped and the host stops after that one
    // invocation, where in turns it would wait out four more timeouts.
    const CLIENTS: usize = 5;
    let (tx, mut events) = mpsc::unbounded_channel();
    let handler = service_fn(move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
        let tx = tx.clone();
        async move {
            let route = event.payload.request_context.route_key.clone();
            let _ = tx.send(event.payload);
            if route.as_deref() == Some("$disconnect") {
                std::future::pending::<()>().await;
            }
            let mut response = ApiGatewayProxyResponse::default();
            response.status_code = 200;
            Ok::<_, lambda_runtime::Error>(response)
        }
    });
    let sdk = sdk().await;
    let topology = topology(
        &stage(),
        Service::new("probe").with(
            Function::websocket("socket", &["$connect", "$disconnect"])
                .with_timeout(Duration::from_secs(3)),
        ),
    );
    let report = deployed(&topology, &sdk).await;
    let config = Config {
        function_instances: std::num::NonZeroUsize::MIN,
        ..ws_config(WebSocketConfig {
            shutdown_disconnect_wait: Duration::from_millis(100),
            ..WebSocketConfig::default()
        })
    };
    let host = Host::new(config, Functions::new().lambda("socket", handler))
        .start(&topology, &report, &sdk)
        .await
        .unwrap_or_else(|e| panic!("the host did not start: {e}"));
    let addr = host.http_addr().expect("the host listens").to_string();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(connect(&addr, "").await.expect("the connection opens"));
        connected_id(&mut events).await;
    }

    let stopping = Instant::now();
    tokio::time::timeout(DEADLINE, host.shutdown())
        .await
        .expect("the host stops within the deadline")
        .expect("a clean shutdown");
    let stopped_in = stopping.elapsed();
    let mut disconnects = 0;
    while let Ok(event) = events.try_recv() {
        if event.request_context.route_key.as_deref() == Some("$disconnect") {
            disconnects += 1;
        }
    }
    assert_eq!(
        disconnects, 1,
        "only the $disconnect that got the instance ran"
    );
    assert!(stopped_in < Duration::from_secs(9), "{stopped_in:?}");
    drop(clients);
}

#[tokio::test]
async fn two_services_with_websocket_apis_stop_the_host_from_starting() {
    let sdk = sdk().await;
    let topology = Topology::new(
        &stage(),
        vec![
            topology::core(),
            Service::new("first").with(Function::websocket("first-ws", &["$default"])),
            Service::new("second").with(Function::websocket("second-ws", &["$default"])),
        ],
    );
    let report = deployed(&topology, &sdk).await;
    let functions = Functions::new()
        .json("first-ws", |_| async { Ok(Value::Null) })
        .json("second-ws", |_| async { Ok(Value::Null) });
    match Host::new(super::config(), functions)
        .start(&topology, &report, &sdk)
        .await
    {
        Err(local_host::HostError::WebSocketApis { services }) => {
            assert_eq!(services, ["first", "second"])
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(host) => {
            host.shutdown().await.expect("a clean shutdown");
            panic!("two WebSocket APIs on one host");
        }
    }
}

/// A route that posts to its own connection (as the notifier's `subscribe` replays a
/// channel's history) through an [`local_host::InProcessClient`]: every post reaches the
/// client, in order, before the route's own response, and none goes through a socket.
#[tokio::test]
async fn frames_a_route_posts_in_process_arrive_in_order_before_its_response() {
    const POSTS: usize = 200;
    let in_process = local_host::InProcessClient::new();
    let sdk = sdk().await;
    let api = aws_sdk_apigatewaymanagement::Client::from_conf(
        aws_sdk_apigatewaymanagement::config::Builder::from(&sdk)
            // Only the path matters in process: nothing listens at this address.
            .endpoint_url("http://127.0.0.1:9")
            .http_client(in_process.clone())
            .build(),
    );
    let handler = service_fn(move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
        let api = api.clone();
        async move {
            let request = event.payload;
            let mut response = ApiGatewayProxyResponse::default();
            response.status_code = 200;
            if request.request_context.route_key.as_deref() == Some("replay") {
                let id = request.request_context.connection_id.unwrap_or_default();
                for n in 1..=POSTS {
                    api.post_to_connection()
                        .connection_id(&id)
                        .data(json!({ "n": n }).to_string().into_bytes().into())
                        .send()
                        .await?;
                }
                response.body = Some(Body::Text(json!({ "done": POSTS }).to_string()));
            }
            Ok::<_, lambda_runtime::Error>(response)
        }
    });
    let topology = ws_topology(&["$connect", "$disconnect", "replay"]);
    let report = deployed(&topology, &sdk).await;
    let host = Host::new(
        ws_config(WebSocketConfig::default()),
        Functions::new().lambda("socket", handler),
    )
    .serve_in_process(in_process)
    .start(&topology, &report, &sdk)
    .await
    .expect("the host starts");
    let addr = host.http_addr().expect("the host listens").to_string();
    let mut client = connect(&addr, "").await.expect("a connection");

    client
        .send(Message::text(json!({ "action": "replay" }).to_string()))
        .await
        .expect("sent");
    for n in 1..=POSTS {
        assert_eq!(receive_json(&mut client).await, json!({ "n": n }));
    }
    assert_eq!(receive_json(&mut client).await, json!({ "done": POSTS }));
    host.shutdown().await.expect("a clean shutdown");
}
