//! `notifier-ws`: the WebSocket API's routes.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use contracts::frames::{
    ClientMessage, Frame, MAX_CHANNEL_NAME_BYTES, MAX_CHANNELS_PER_CONNECTION,
    MAX_CLIENT_MESSAGE_BYTES, MAX_SINCE, Subscribed,
};
use serde_json::json;

use crate::channel::Channel;
use crate::error::{HandlerError, StoreError};
use crate::push::{PushError, push_frame};
use crate::store::Subscription;
use crate::{Deps, MAX_SUBSCRIBE_OWNER_WAIT, WsDeps};

/// Handles one WebSocket route invocation. A refused `$connect` answers 401 (API
/// Gateway then refuses the handshake); message routes answer a frame, which API
/// Gateway sends back to the client (two-way routes).
pub async fn handle_ws(
    request: ApiGatewayWebsocketProxyRequest,
    ws: &WsDeps,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let deps = &ws.notifier;
    let context = &request.request_context;
    let connection_id = context.connection_id.clone().unwrap_or_default();
    let route = context.route_key.clone().unwrap_or_default();
    if connection_id.is_empty() {
        return Err(HandlerError::InvalidRequest(
            "the request has no requestContext.connectionId",
        ));
    }
    match route.as_str() {
        "$connect" => connect(&request, &connection_id, deps, &ws.verifier).await,
        "$disconnect" => {
            deps.store.remove_connection(&connection_id).await?;
            tracing::info!(connection_id = %connection_id, "disconnected");
            Ok(response(200, None))
        }
        _ => {
            let frame = message(request.body.as_deref(), &connection_id, deps).await?;
            Ok(response(200, Some(&frame)))
        }
    }
}

async fn connect(
    request: &ApiGatewayWebsocketProxyRequest,
    connection_id: &str,
    deps: &Deps,
    verifier: &auth::Verifier,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let token = request
        .query_string_parameters
        .first("token")
        .map(str::to_owned)
        .or_else(|| {
            let header = request.headers.get("authorization")?.to_str().ok()?;
            auth::bearer_token(Some(header)).ok().map(str::to_owned)
        });
    let Some(token) = token else {
        tracing::info!(connection_id = %connection_id, "connect refused: no token");
        return Ok(refusal(401, "a token is required: connect to ?token=<JWT>"));
    };
    match verifier.verify(&token).await {
        Ok(claims) => {
            deps.store
                .put_connection(connection_id, &claims.sub)
                .await?;
            tracing::info!(connection_id = %connection_id, sub = %claims.sub, "connected");
            Ok(response(200, None))
        }
        Err(e) if e.is_server_error() => {
            tracing::error!(connection_id = %connection_id, error = %e, "token verification unavailable");
            Ok(refusal(500, "token verification is unavailable"))
        }
        Err(e) => {
            tracing::info!(connection_id = %connection_id, error = %e, "connect refused");
            Ok(refusal(401, e.client_message()))
        }
    }
}

/// Runs one client message; the answer is the frame to send back.
async fn message(
    body: Option<&str>,
    connection_id: &str,
    deps: &Deps,
) -> Result<Frame, StoreError> {
    let message = match parse(body) {
        Ok(message) => message,
        Err(frame) => return Ok(*frame),
    };
    match message {
        ClientMessage::Ping => {
            deps.store.touch_connection(connection_id).await?;
            Ok(Frame::pong())
        }
        ClientMessage::Unsubscribe { channel } => {
            let parsed = match Channel::parse(&channel) {
                Ok(c) => c,
                Err(e) => return Ok(Frame::error(channel, "bad_request", e)),
            };
            deps.store.unsubscribe(connection_id, &parsed).await?;
            Ok(Frame::unsubscribed(channel))
        }
        ClientMessage::Subscribe { channel, since } => {
            subscribe(connection_id, channel, since, deps).await
        }
    }
}

/// Reads the body as a [`ClientMessage`]; an error frame names the field and the fix.
///
/// Every field is bounded: the body to [`MAX_CLIENT_MESSAGE_BYTES`] (refused before it
/// is parsed), `channel` to [`MAX_CHANNEL_NAME_BYTES`], `since` to [`MAX_SINCE`]. No
/// error frame echoes more than a short prefix of what the client sent.
pub(crate) fn parse(body: Option<&str>) -> Result<ClientMessage, Box<Frame>> {
    let example = r#"{"action":"subscribe","channel":"job:<id>","since":0}, {"action":"unsubscribe","channel":"job:<id>"} or {"action":"ping"}"#;
    let body = body.unwrap_or_default();
    if body.len() > MAX_CLIENT_MESSAGE_BYTES {
        return Err(error(
            "",
            "too_large",
            format!(
                "the message has {} bytes; a message has at most {MAX_CLIENT_MESSAGE_BYTES}: send {example}",
                body.len()
            ),
        ));
    }
    let value: serde_json::Value = serde_json::from_str(body).map_err(|e| {
        error(
            "",
            "bad_request",
            format!("the message is not JSON ({e}); send {example}"),
        )
    })?;
    let action = value
        .get("action")
        .and_then(|a| a.as_str())
        .unwrap_or_default();
    if !matches!(action, "subscribe" | "unsubscribe" | "ping") {
        return Err(error(
            "",
            "unknown_action",
            format!(
                "field `action` must be subscribe, unsubscribe or ping (got {:?}); send {example}",
                prefix(action)
            ),
        ));
    }
    let message: ClientMessage = serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        error(
            "",
            "bad_request",
            format!("field `{path}`: {}; send {example}", e.inner()),
        )
    })?;
    let channel = match &message {
        ClientMessage::Subscribe { channel, .. } | ClientMessage::Unsubscribe { channel } => {
            channel.as_str()
        }
        ClientMessage::Ping => "",
    };
    if channel.len() > MAX_CHANNEL_NAME_BYTES {
        return Err(error(
            "",
            "bad_request",
            format!(
                "field `channel` has {} bytes; a channel name has at most {MAX_CHANNEL_NAME_BYTES}",
                channel.len()
            ),
        ));
    }
    if let ClientMessage::Subscribe {
        since: Some(since), ..
    } = &message
        && *since > MAX_SINCE
    {
        return Err(error(
            channel,
            "bad_request",
            format!("field `since` is {since}; it is an offset from 0 to {MAX_SINCE}"),
        ));
    }
    Ok(message)
}

/// An error frame, boxed: it is much larger than a message.
fn error(channel: impl Into<String>, code: &str, message: impl Into<String>) -> Box<Frame> {
    Box::new(Frame::error(channel, code, message))
}

/// At most the first 32 characters of `text`, for an error message.
fn prefix(text: &str) -> &str {
    text.char_indices()
        .nth(32)
        .map_or(text, |(end, _)| &text[..end])
}

async fn subscribe(
    connection_id: &str,
    name: String,
    since: Option<u64>,
    deps: &Deps,
) -> Result<Frame, StoreError> {
    let channel = match Channel::parse(&name) {
        Ok(c) => c,
        Err(e) => return Ok(Frame::error(name, "bad_request", e)),
    };
    let Some(connection) = deps.store.connection(connection_id).await? else {
        return Ok(Frame::error(
            name,
            "forbidden",
            "this connection is not (or no longer) authorized: reconnect with a token",
        ));
    };
    let too_many = || {
        Frame::error(
            name.clone(),
            "too_many_channels",
            format!(
                "a connection subscribes to at most {MAX_CHANNELS_PER_CONNECTION} channels: unsubscribe from one first"
            ),
        )
    };
    if connection.channels.len() >= MAX_CHANNELS_PER_CONNECTION
        && !connection.channels.contains(&name)
    {
        return Ok(too_many());
    }
    let allowed = match &channel {
        Channel::User(sub) => *sub == connection.sub,
        Channel::Job(id) => {
            // A short wait, for a client that subscribes right after `POST /jobs`: the
            // job's `JobRequested` may still be on the bus. Bounded, since anyone can
            // subscribe to made-up ids and each wait holds a function instance.
            let wait = deps
                .config
                .subscribe_owner_wait
                .min(MAX_SUBSCRIBE_OWNER_WAIT);
            deps.store.owner_within(id, wait).await?.as_deref() == Some(&connection.sub)
        }
    };
    if !allowed {
        tracing::info!(connection_id = %connection_id, channel = %name, sub = %connection.sub, "subscription refused");
        // The same answer whether the job is someone else's or unknown: nothing leaks.
        return Ok(Frame::error(
            name,
            "forbidden",
            "you may subscribe only to user:<your sub> and to job:<id> of your own jobs: \
             this job is unknown or not yours (a job submitted a moment ago may not be \
             known yet: subscribe again shortly)",
        ));
    }
    // Subscribe first, read the history second: see the crate docs.
    if deps.store.subscribe(connection_id, &channel).await? == Subscription::Refused {
        return Ok(too_many());
    }
    let mut replayed = 0;
    let head = match since {
        // Live only: the head tells the client where the stream stands.
        None => deps.store.head(&name).await?,
        Some(since) => {
            let history = deps.store.history(&name, since).await?;
            let lost = history.discontinuity(&name, since);
            for frame in lost.iter().chain(&history.frames) {
                match push_frame(deps, connection_id, frame).await {
                    Ok(()) => replayed += 1,
                    Err(PushError::TooLarge) => {
                        // Not even its reference fits: it can never be delivered, and it
                        // must not hold up the frames after it.
                        tracing::error!(connection_id = %connection_id, channel = %name, offset = frame.offset, "a frame cannot be delivered; skipped");
                    }
                    Err(e) => {
                        tracing::warn!(connection_id = %connection_id, channel = %name, error = %e, "replay stopped");
                        break;
                    }
                }
            }
            history.head
        }
    };
    tracing::info!(connection_id = %connection_id, channel = %name, since = ?since, replayed, head, "subscribed");
    Ok(Frame::subscribed(name, Subscribed { head, replayed }))
}

fn response(status: i64, frame: Option<&Frame>) -> ApiGatewayProxyResponse {
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = status;
    r.body = frame
        .and_then(|f| serde_json::to_string(f).ok())
        .map(Body::Text);
    r
}

fn refusal(status: i64, message: &str) -> ApiGatewayProxyResponse {
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = status;
    r.body = Some(Body::Text(json!({ "message": message }).to_string()));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::frames::kinds;
    use proptest::prelude::*;

    /// Any valid client message.
    fn message() -> impl Strategy<Value = ClientMessage> {
        let channel = prop_oneof![
            "[a-zA-Z0-9_-]{1,80}".prop_map(|id| format!("job:{id}")),
            proptest::collection::vec(any::<char>(), 0..=60).prop_map(|sub| {
                let sub: String = sub.into_iter().collect();
                let mut name = format!("user:{sub}");
                while name.len() > MAX_CHANNEL_NAME_BYTES {
                    name.pop();
                }
                name
            }),
        ];
        let since = prop_oneof![Just(None), (0..=MAX_SINCE).prop_map(Some)];
        prop_oneof![
            (channel.clone(), since)
                .prop_map(|(channel, since)| ClientMessage::Subscribe { channel, since }),
            channel.prop_map(|channel| ClientMessage::Unsubscribe { channel }),
            Just(ClientMessage::Ping),
        ]
    }

    /// What an error frame may take, whatever the client sent.
    const ERROR_FRAME_BYTES: usize = 1024;

    proptest! {
        #[test]
        fn valid_messages_round_trip(message in message()) {
            let text = serde_json::to_string(&message).unwrap_or_default();
            prop_assert_eq!(parse(Some(&text)), Ok(message));
        }

        #[test]
        fn no_input_panics_and_no_answer_echoes_it(body in any::<String>()) {
            if let Err(frame) = parse(Some(&body)) {
                prop_assert_eq!(frame.kind.as_str(), kinds::ERROR);
                prop_assert!(frame.encoded_len() <= ERROR_FRAME_BYTES, "{}", frame.encoded_len());
            }
        }

        #[test]
        fn json_shaped_input_never_panics(
            action in prop_oneof![
                Just("subscribe".to_owned()),
                Just("unsubscribe".to_owned()),
                Just("ping".to_owned()),
                any::<String>(),
            ],
            channel in prop_oneof![any::<String>(), "(job|user):.{0,300}"],
            since in prop_oneof![
                any::<u64>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<f64>().prop_map(serde_json::Value::from),
                any::<String>().prop_map(serde_json::Value::from),
                Just(serde_json::Value::Null),
            ],
        ) {
            let body = json!({ "action": action, "channel": channel, "since": since }).to_string();
            match parse(Some(&body)) {
                Ok(ClientMessage::Subscribe { channel, since }) => {
                    prop_assert!(channel.len() <= MAX_CHANNEL_NAME_BYTES);
                    prop_assert!(since.is_none_or(|s| s <= MAX_SINCE));
                }
                Ok(ClientMessage::Unsubscribe { channel }) => {
                    prop_assert!(channel.len() <= MAX_CHANNEL_NAME_BYTES);
                }
                Ok(ClientMessage::Ping) => {}
                Err(frame) => prop_assert!(frame.encoded_len() <= ERROR_FRAME_BYTES),
            }
        }
    }

    #[test]
    fn every_field_of_a_client_message_is_bounded() {
        let long = format!("user:{}", "a".repeat(MAX_CHANNEL_NAME_BYTES));
        let refused = parse(Some(
            &json!({"action": "subscribe", "channel": long}).to_string(),
        ))
        .expect_err("a channel name over the bound");
        assert_eq!(refused.data["code"], "bad_request");
        assert!(
            refused.data["message"]
                .as_str()
                .unwrap_or_default()
                .contains("channel"),
            "{refused:?}"
        );
        let fits = format!("user:{}", "a".repeat(MAX_CHANNEL_NAME_BYTES - 5));
        assert!(
            parse(Some(
                &json!({"action": "unsubscribe", "channel": fits}).to_string()
            ))
            .is_ok()
        );
        let far = json!({"action": "subscribe", "channel": "user:a", "since": MAX_SINCE + 1});
        let refused = parse(Some(&far.to_string())).expect_err("since over the bound");
        assert!(
            refused.data["message"]
                .as_str()
                .unwrap_or_default()
                .contains("since"),
            "{refused:?}"
        );
        let padded = format!(
            r#"{{"action":"ping","pad":"{}"}}"#,
            "x".repeat(MAX_CLIENT_MESSAGE_BYTES)
        );
        let refused = parse(Some(&padded)).expect_err("a message over the bound");
        assert_eq!(refused.data["code"], "too_large");
        let shout = json!({ "action": "x".repeat(10_000) }).to_string();
        let refused = parse(Some(&shout)).expect_err("unknown action");
        assert!(
            refused.encoded_len() < 1024,
            "the action is not echoed whole"
        );
    }

    #[test]
    fn bad_messages_get_an_error_naming_the_field() {
        let missing = parse(Some(r#"{"action":"subscribe"}"#)).expect_err("no channel");
        assert_eq!(missing.kind, kinds::ERROR);
        assert_eq!(missing.data["code"], "bad_request");
        let text = missing.data["message"].as_str().unwrap_or_default();
        assert!(text.contains("channel"), "{text}");
        let unknown = parse(Some(r#"{"action":"shout"}"#)).expect_err("unknown action");
        assert_eq!(unknown.data["code"], "unknown_action");
        let garbage = parse(Some("hello")).expect_err("not JSON");
        assert_eq!(garbage.data["code"], "bad_request");
        assert_eq!(
            parse(Some(
                r#"{"action":"subscribe","channel":"user:a","since":3}"#
            )),
            Ok(ClientMessage::Subscribe {
                channel: "user:a".into(),
                since: Some(3)
            })
        );
    }
}
