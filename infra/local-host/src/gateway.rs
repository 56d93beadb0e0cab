//! API Gateway HTTP API → Lambda: routes the topology's HTTP routes to their functions
//! with payload format 2.0 events, and turns the functions' responses into HTTP as API
//! Gateway does.
//!
//! Routing follows API Gateway, not axum: `{name}` matches one path segment and `{name+}`
//! the rest of the path; an exact route beats one with variables, which beats a greedy
//! one; a method without a route is a 404, as HTTP APIs answer. Each service has its own
//! HTTP API on AWS, with its own domain; locally they share one listener, so two services
//! serving the same route is a startup error.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::header::{CONTENT_TYPE, COOKIE, HOST, SET_COOKIE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use provision::DeployReport;
use serde_json::{Map, Value, json};
use topology::{FunctionKind, Topology};

use crate::error::HostError;
use crate::function::Functions;
use crate::host::{Account, bind};
use crate::invoke::{Bound, Trigger};

/// The HTTP API of every service in `topology`, as an axum router whose fallback serves
/// the routes. Routers merged into it must not have a fallback of their own (axum
/// refuses to merge two), and their routes take precedence over the topology's.
pub fn router(
    topology: &Topology,
    report: &DeployReport,
    functions: &Functions,
) -> Result<Router, HostError> {
    let (bound, account) = bind(
        topology,
        report,
        functions,
        crate::Config::DEFAULT_FUNCTION_INSTANCES,
        &std::sync::Arc::new(crate::faults::Injector::new(Default::default())),
        &std::sync::Arc::default(),
    )?;
    Ok(Api::new(topology, &bound, account)?.into_router())
}

/// API Gateway's largest request payload for HTTP APIs.
pub const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;
/// HTTP APIs give up on an integration after 30 seconds.
const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(30);
/// The header API Gateway adds to every response.
const REQUEST_ID_HEADER: &str = "apigw-requestid";

/// Every route of every service, ready to match.
pub(crate) struct Api {
    routes: Vec<ApiRoute>,
    account: Account,
}

struct ApiRoute {
    method: Method,
    /// API Gateway's route key, e.g. `GET /jobs/{id}`.
    key: String,
    pattern: Vec<Segment>,
    /// The physical name of the service's HTTP API, standing in for its API id.
    api_id: String,
    function: Bound,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Segment {
    Literal(String),
    Variable(String),
    /// `{name+}`: one or more segments, only last.
    Greedy(String),
}

impl Api {
    pub(crate) fn new(
        topology: &Topology,
        bound: &BTreeMap<String, Bound>,
        account: Account,
    ) -> Result<Api, HostError> {
        let names = topology.names();
        let mut routes: Vec<ApiRoute> = Vec::new();
        // Route shape (variables unnamed) → the function serving it.
        let mut served: BTreeMap<(String, Vec<Segment>), String> = BTreeMap::new();
        for service in &topology.services {
            for resource in &service.resources {
                let topology::Resource::Function(f) = resource else {
                    continue;
                };
                let FunctionKind::Http { routes: declared } = &f.kind else {
                    continue;
                };
                let Some(function) = bound.get(&f.name) else {
                    unreachable!("bind() bound every function of the topology");
                };
                for route in declared {
                    let method = Method::from_bytes(route.method.to_string().as_bytes())
                        .unwrap_or(Method::GET);
                    let pattern = parse_pattern(&route.path);
                    let shape = (method.to_string(), unnamed(&pattern));
                    if let Some(first) = served.insert(shape, f.name.clone()) {
                        return Err(HostError::RouteConflict {
                            route: route.key(),
                            first,
                            second: f.name.clone(),
                        });
                    }
                    routes.push(ApiRoute {
                        method,
                        key: route.key(),
                        pattern,
                        api_id: names.http_api(&service.name),
                        function: function.clone(),
                    });
                }
            }
        }
        Ok(Api { routes, account })
    }

    pub(crate) fn into_router(self) -> Router {
        Router::new().fallback(serve).with_state(Arc::new(self))
    }

    /// The most specific route matching, with its path parameters.
    fn find(&self, method: &Method, path: &str) -> Option<(&ApiRoute, Vec<(String, String)>)> {
        let segments: Vec<&str> = split(path);
        self.routes
            .iter()
            .filter(|r| r.method == *method)
            .filter_map(|r| Some((r, match_pattern(&r.pattern, &segments)?)))
            .max_by_key(|(r, _)| specificity(&r.pattern))
    }
}

fn split(path: &str) -> Vec<&str> {
    path.strip_prefix('/').unwrap_or(path).split('/').collect()
}

fn parse_pattern(path: &str) -> Vec<Segment> {
    split(path)
        .into_iter()
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => match name.strip_suffix('+') {
                    Some(name) => Segment::Greedy(name.to_owned()),
                    None => Segment::Variable(name.to_owned()),
                },
                None => Segment::Literal(s.to_owned()),
            },
        )
        .collect()
}

/// The pattern with its variables' names erased: two routes of the same shape conflict.
fn unnamed(pattern: &[Segment]) -> Vec<Segment> {
    pattern
        .iter()
        .map(|s| match s {
            Segment::Literal(l) => Segment::Literal(l.clone()),
            Segment::Variable(_) => Segment::Variable(String::new()),
            Segment::Greedy(_) => Segment::Greedy(String::new()),
        })
        .collect()
}

/// Exact routes first, then routes with variables, then greedy ones; among those, the
/// most literal segments, then the earliest literal ones, win.
fn specificity(pattern: &[Segment]) -> (bool, usize, Vec<bool>) {
    let greedy = pattern.iter().any(|s| matches!(s, Segment::Greedy(_)));
    let literals: Vec<bool> = pattern
        .iter()
        .map(|s| matches!(s, Segment::Literal(_)))
        .collect();
    let count = literals.iter().filter(|l| **l).count();
    (!greedy, count, literals)
}

fn match_pattern(pattern: &[Segment], path: &[&str]) -> Option<Vec<(String, String)>> {
    let mut params = Vec::new();
    for (i, segment) in pattern.iter().enumerate() {
        match segment {
            Segment::Literal(literal) => {
                if path.get(i)? != literal {
                    return None;
                }
            }
            Segment::Variable(name) => {
                let value = path.get(i).filter(|v| !v.is_empty())?;
                params.push((name.clone(), decode(value)));
            }
            Segment::Greedy(name) => {
                let rest = path.get(i..).filter(|r| r.iter().any(|s| !s.is_empty()))?;
                params.push((name.clone(), decode(&rest.join("/"))));
                return Some(params);
            }
        }
    }
    (path.len() == pattern.len()).then_some(params)
}

/// Path parameters arrive percent-decoded; undecodable ones stay as they are.
fn decode(value: &str) -> String {
    percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .map_or_else(|_| value.to_owned(), |v| v.into_owned())
}

async fn serve(State(api): State<Arc<Api>>, request: Request) -> Response {
    let api_request_id = api_request_id();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let (parts, body) = request.into_parts();
    let Some((route, params)) = api.find(&parts.method, parts.uri.path()) else {
        return gateway_error(StatusCode::NOT_FOUND, "Not Found", &api_request_id);
    };
    let body = match axum::body::to_bytes(body, MAX_REQUEST_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return gateway_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request Entity Too Large",
                &api_request_id,
            );
        }
    };
    let request = HttpRequest {
        parts: &parts,
        body: &body,
        params,
        peer,
    };
    let event = request.event(route, &api.account.id, &api_request_id);
    let lambda_request_id = uuid::Uuid::new_v4().to_string();
    let invocation = route
        .function
        .invoke(&lambda_request_id, event, Trigger::Http);
    match tokio::time::timeout(INTEGRATION_TIMEOUT, invocation).await {
        Err(_) => gateway_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            &api_request_id,
        ),
        Ok(Err(_)) => gateway_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            &api_request_id,
        ),
        Ok(Ok(value)) => match to_response(value, &api_request_id) {
            Ok(response) => response,
            Err(reason) => {
                tracing::warn!(
                    function = %route.function.name,
                    request_id = %lambda_request_id,
                    reason = %reason,
                    "malformed Lambda response"
                );
                gateway_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal Server Error",
                    &api_request_id,
                )
            }
        },
    }
}

/// An API Gateway request id: 11 random bytes in base64, like `JKJaXmPLvHcESHA=`.
fn api_request_id() -> String {
    BASE64.encode(&uuid::Uuid::new_v4().as_bytes()[..11])
}

/// A response API Gateway itself writes: `{"message": ...}`.
fn gateway_error(status: StatusCode, message: &str, request_id: &str) -> Response {
    let mut response = Response::new(Body::from(json!({ "message": message }).to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID_HEADER, id);
    }
    response
}

/// A received request, taken apart.
struct HttpRequest<'a> {
    parts: &'a http::request::Parts,
    body: &'a [u8],
    params: Vec<(String, String)>,
    peer: Option<SocketAddr>,
}

impl HttpRequest<'_> {
    /// The payload format 2.0 event API Gateway sends for this request.
    fn event(&self, route: &ApiRoute, account: &str, request_id: &str) -> Value {
        let parts = self.parts;
        let path = parts.uri.path();
        let raw_query = parts.uri.query().unwrap_or_default();
        let source_ip = self
            .peer
            .map(|p| p.ip().to_string())
            .unwrap_or_else(|| "127.0.0.1".to_owned());
        let host = header(&parts.headers, HOST).unwrap_or_default();

        // Headers by lowercase name, repeated values joined with commas; cookies move to
        // their own list.
        let mut headers = Map::new();
        for name in parts.headers.keys() {
            if *name == COOKIE {
                continue;
            }
            let values: Vec<String> = parts
                .headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            headers.insert(name.as_str().to_owned(), Value::String(values.join(",")));
        }
        let forwarded = [
            ("x-forwarded-for", source_ip.clone()),
            ("x-forwarded-proto", "http".to_owned()),
            (
                "x-forwarded-port",
                host.rsplit_once(':')
                    .map_or("80", |(_, port)| port)
                    .to_owned(),
            ),
        ];
        for (name, value) in forwarded {
            headers.entry(name).or_insert_with(|| Value::String(value));
        }
        let mut cookies = Vec::new();
        for value in parts.headers.get_all(COOKIE) {
            let value = String::from_utf8_lossy(value.as_bytes());
            cookies.extend(
                value
                    .split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(|c| Value::String(c.to_owned())),
            );
        }

        let mut query = Map::new();
        if let Ok(Query(pairs)) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri) {
            for (name, value) in pairs {
                match query.get_mut(&name) {
                    Some(Value::String(joined)) => {
                        joined.push(',');
                        joined.push_str(&value);
                    }
                    _ => {
                        query.insert(name, Value::String(value));
                    }
                }
            }
        }

        let now = time::OffsetDateTime::now_utc();
        let format = time::macros::format_description!(
            "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
        );
        let mut event = json!({
            "version": "2.0",
            "routeKey": route.key,
            "rawPath": path,
            "rawQueryString": raw_query,
            "headers": headers,
            "requestContext": {
                "accountId": account,
                "apiId": route.api_id,
                "domainName": host,
                "domainPrefix": host.split('.').next().unwrap_or_default(),
                "http": {
                    "method": parts.method.as_str(),
                    "path": path,
                    "protocol": format!("{:?}", parts.version),
                    "sourceIp": source_ip,
                    "userAgent": header(&parts.headers, USER_AGENT).unwrap_or_default(),
                },
                "requestId": request_id,
                "routeKey": route.key,
                "stage": "$default",
                "time": now.format(format).unwrap_or_default(),
                "timeEpoch": now.unix_timestamp_nanos() / 1_000_000,
            },
            "isBase64Encoded": false,
        });
        if !cookies.is_empty() {
            event["cookies"] = Value::Array(cookies);
        }
        if !query.is_empty() {
            event["queryStringParameters"] = Value::Object(query);
        }
        if !self.params.is_empty() {
            let params: Map<String, Value> = self
                .params
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            event["pathParameters"] = Value::Object(params);
        }
        if !self.body.is_empty() {
            let text = std::str::from_utf8(self.body)
                .ok()
                .filter(|_| is_text(header(&parts.headers, CONTENT_TYPE)));
            match text {
                Some(text) => event["body"] = Value::String(text.to_owned()),
                None => {
                    event["body"] = Value::String(BASE64.encode(self.body));
                    event["isBase64Encoded"] = Value::Bool(true);
                }
            }
        }
        event
    }
}

fn header(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether a body of this content type travels as text rather than base64 (the types
/// `lambda_http` also treats as text).
fn is_text(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else {
        return true;
    };
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    [
        "text/",
        "application/json",
        "application/javascript",
        "application/xml",
        "application/yaml",
    ]
    .iter()
    .any(|p| mime.starts_with(p))
        || ["+json", "+xml", "+yaml"].iter().any(|s| mime.ends_with(s))
}

/// The HTTP response API Gateway makes of a function's response (payload format 2.0): an
/// object with `statusCode` is a structured response; anything else is a 200 with the
/// response as its JSON body.
fn to_response(value: Value, request_id: &str) -> Result<Response, String> {
    let mut response = match value {
        Value::Object(ref object) if object.contains_key("statusCode") => structured(object)?,
        other => {
            let mut response = Response::new(Body::from(other.to_string()));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
    };
    if let Ok(id) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, id);
    }
    Ok(response)
}

fn structured(object: &Map<String, Value>) -> Result<Response, String> {
    let status = object
        .get("statusCode")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| {
            format!(
                "statusCode is not an HTTP status: {:?}",
                object.get("statusCode")
            )
        })?;
    let base64 = object
        .get("isBase64Encoded")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let body = match object.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) if base64 => BASE64
            .decode(text)
            .map_err(|e| format!("the body is not base64: {e}"))?,
        Some(Value::String(text)) => text.clone().into_bytes(),
        Some(other) => other.to_string().into_bytes(),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Some(Value::Object(values)) = object.get("headers") {
        for (name, value) in values {
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("bad header name {name:?}: {e}"))?;
            let value = HeaderValue::from_str(&value)
                .map_err(|e| format!("bad value for header {name}: {e}"))?;
            headers.insert(name, value);
        }
    }
    if let Some(Value::Array(cookies)) = object.get("cookies") {
        for cookie in cookies.iter().filter_map(Value::as_str) {
            let value = HeaderValue::from_str(cookie).map_err(|e| format!("bad cookie: {e}"))?;
            headers.append(SET_COOKIE, value);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_match(pattern: &str, path: &str, expected: Option<&[(&str, &str)]>) {
        let got = match_pattern(&parse_pattern(pattern), &split(path));
        let expected = expected.map(|e| {
            e.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>()
        });
        assert_eq!(got, expected, "{pattern} against {path}");
    }

    #[test]
    fn routes_match_like_api_gateway() {
        check_match("/jobs", "/jobs", Some(&[]));
        check_match("/jobs", "/jobs/", None);
        check_match("/jobs/{id}", "/jobs/42", Some(&[("id", "42")]));
        check_match("/jobs/{id}", "/jobs/a%20b", Some(&[("id", "a b")]));
        check_match("/jobs/{id}", "/jobs/", None);
        check_match("/jobs/{id}", "/jobs/42/tasks", None);
        check_match(
            "/jobs/{id}/tasks/{task}",
            "/jobs/1/tasks/2",
            Some(&[("id", "1"), ("task", "2")]),
        );
        check_match("/files/{path+}", "/files/a/b/c", Some(&[("path", "a/b/c")]));
        check_match("/files/{path+}", "/files", None);
        check_match("/", "/", Some(&[]));
    }

    #[test]
    fn exact_routes_beat_variables_which_beat_greedy_ones() {
        let exact = specificity(&parse_pattern("/jobs/latest"));
        let variable = specificity(&parse_pattern("/jobs/{id}"));
        let greedy = specificity(&parse_pattern("/{proxy+}"));
        assert!(exact > variable && variable > greedy);
    }

    #[test]
    fn responses_become_http_as_api_gateway_makes_them() {
        let response = to_response(
            json!({
                "statusCode": 201,
                "headers": { "content-type": "text/plain", "x-n": 1 },
                "cookies": ["a=1", "b=2"],
                "body": "aGk=",
                "isBase64Encoded": true,
            }),
            "id",
        )
        .expect("a valid response");
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.headers()["x-n"], "1");
        assert_eq!(response.headers().get_all(SET_COOKIE).iter().count(), 2);
        assert_eq!(response.headers()[REQUEST_ID_HEADER], "id");

        let inferred = to_response(json!({ "ok": true }), "id").expect("inferred");
        assert_eq!(inferred.status(), StatusCode::OK);
        assert_eq!(inferred.headers()[CONTENT_TYPE], "application/json");

        assert!(to_response(json!({ "statusCode": "nope" }), "id").is_err());
        assert!(
            to_response(
                json!({ "statusCode": 200, "body": "!", "isBase64Encoded": true }),
                "id"
            )
            .is_err()
        );
    }

    #[test]
    fn text_types_stay_text() {
        assert!(is_text(None));
        assert!(is_text(Some("application/json; charset=utf-8")));
        assert!(is_text(Some("application/problem+json")));
        assert!(is_text(Some("text/html")));
        assert!(!is_text(Some("application/octet-stream")));
        assert!(!is_text(Some("image/png")));
    }
}
