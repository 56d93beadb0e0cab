//! The events API Gateway sends a WebSocket route's function
//! (`aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest`).

use axum::extract::Query;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use super::connections::now_ms;
use super::{ConnectionInfo, Inbound, Shared};

/// The `$connect` event: the upgrade request's headers and query string.
pub(super) fn connect(
    shared: &Shared,
    info: &ConnectionInfo,
    request: &http::request::Parts,
    request_id: &str,
) -> Value {
    let mut headers = Map::new();
    let mut multi_headers = Map::new();
    for name in request.headers.keys() {
        let values: Vec<String> = request
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        headers.insert(name.as_str().to_owned(), Value::String(values.join(",")));
        multi_headers.insert(name.as_str().to_owned(), json!(values));
    }
    let mut query = Map::new();
    let mut multi_query = Map::new();
    if let Ok(Query(pairs)) = Query::<Vec<(String, String)>>::try_from_uri(&request.uri) {
        for (name, value) in pairs {
            // The single-value map keeps the last value, as API Gateway's does.
            query.insert(name.clone(), Value::String(value.clone()));
            match multi_query
                .entry(name)
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                Value::Array(values) => values.push(Value::String(value)),
                _ => unreachable!("multi-value entries are arrays"),
            }
        }
    }
    let mut event = json!({
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "requestContext": context(shared, info, "$connect", "CONNECT", request_id),
        "isBase64Encoded": false,
    });
    if !query.is_empty() {
        event["queryStringParameters"] = Value::Object(query);
        event["multiValueQueryStringParameters"] = Value::Object(multi_query);
    }
    event
}

/// A `MESSAGE` event for the route `route_key`.
pub(super) fn message(
    shared: &Shared,
    info: &ConnectionInfo,
    route_key: &str,
    body: &Inbound,
    request_id: &str,
) -> Value {
    let mut context = context(shared, info, route_key, "MESSAGE", request_id);
    context["messageId"] = Value::String(super::api_request_id());
    let (body, base64) = match body {
        Inbound::Text(text) => (text.clone(), false),
        Inbound::Binary(bytes) => (BASE64.encode(bytes), true),
    };
    json!({
        "requestContext": context,
        "body": body,
        "isBase64Encoded": base64,
    })
}

/// The `$disconnect` event, with why the connection ended.
pub(super) fn disconnect(
    shared: &Shared,
    info: &ConnectionInfo,
    code: u16,
    reason: &str,
    request_id: &str,
) -> Value {
    let mut context = context(shared, info, "$disconnect", "DISCONNECT", request_id);
    context["disconnectStatusCode"] = json!(code);
    context["disconnectReason"] = json!(reason);
    // The headers API Gateway sends with `$disconnect`.
    let headers = json!({
        "Host": info.domain,
        "x-api-key": "",
        "X-Forwarded-For": "",
        "x-restapi": "",
    });
    let multi: Map<String, Value> = headers
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), json!([v])))
        .collect();
    json!({
        "headers": headers,
        "multiValueHeaders": multi,
        "requestContext": context,
        "isBase64Encoded": false,
    })
}

fn context(
    shared: &Shared,
    info: &ConnectionInfo,
    route_key: &str,
    event_type: &str,
    request_id: &str,
) -> Value {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
    );
    json!({
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": super::api_request_id(),
        "requestTime": now.format(format).unwrap_or_default(),
        "messageDirection": "IN",
        "stage": shared.stage,
        "connectedAt": info.connected_at_ms,
        "requestTimeEpoch": now_ms(),
        "identity": { "sourceIp": info.source_ip, "userAgent": info.user_agent },
        "requestId": request_id,
        "domainName": info.domain,
        "connectionId": info.id,
        "apiId": shared.api_id,
        "accountId": shared.account.id,
    })
}
