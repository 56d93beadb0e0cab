//! The Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`) on the host's
//! HTTP listener, so that tools calling Lambda through the unchanged SDK reach the local
//! functions: `fleet dlq redrive` re-delivers failed events this way once
//! `AWS_ENDPOINT_URL_LAMBDA` points at the host (the SDK honours the service-specific
//! endpoint variable).
//!
//! - `X-Amz-Invocation-Type: Event` puts the payload on the function's delivery queue and
//!   answers 202, so the invocation has the asynchronous semantics of rule deliveries:
//!   retries, then the dead-letter topic. Only asynchronous functions have a delivery
//!   queue; for the others an `Event` invocation is refused.
//! - `RequestResponse` (the default) invokes at once and answers the function's result, or
//!   on a function error status 200 with `X-Amz-Function-Error: Unhandled` and the error
//!   as `{errorType, errorMessage}`, as Lambda does.
//! - `DryRun` answers 204 for a function that exists.
//!
//! `GET /2015-03-31/functions/` (`ListFunctions`, `aws lambda list-functions`) and
//! `GET /2015-03-31/functions/{name}` (`GetFunction`) describe the functions the host
//! serves: name, ARN, runtime, handler, timeout and memory as the topology has them,
//! `State: Active`. There is no code to download, so `Code` has no `Location`.
//!
//! The function is named by its physical name, its ARN or a partial ARN
//! (`<account>:function:<name>`); locally only `$LATEST` exists, so a qualifier is
//! ignored. Errors carry Lambda's error codes in `x-amzn-ErrorType`, which the SDK reads.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_smithy_types::error::display::DisplayErrorContext;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::invoke::{Bound, Trigger};

/// The route the SDK calls.
const INVOKE_ROUTE: &str = "/2015-03-31/functions/{name}/invocations";
/// `ListFunctions` (the SDK sends the trailing slash).
const LIST_ROUTE: &str = "/2015-03-31/functions/";
/// `GetFunction`.
const GET_ROUTE: &str = "/2015-03-31/functions/{name}";
/// `ListFunctions`' largest page (`MaxItems`), as Lambda's.
pub const MAX_LIST_ITEMS: usize = 50;
/// Lambda refuses synchronous payloads above 6 MB and asynchronous ones above 256 KB
/// (SQS's limit, too, for the delivery queue).
const MAX_EVENT_PAYLOAD: usize = 256 * 1024;

/// The functions the API invokes, by physical name.
pub(crate) struct LambdaApi {
    functions: BTreeMap<String, Invocable>,
    sqs: aws_sdk_sqs::Client,
}

struct Invocable {
    function: Bound,
    /// The delivery queue of an asynchronous function.
    delivery_url: Option<String>,
}

impl LambdaApi {
    /// `bound` by logical name; `delivery_urls` the delivery queue of each asynchronous
    /// function, by logical name.
    pub(crate) fn new(
        bound: &BTreeMap<String, Bound>,
        delivery_urls: &BTreeMap<String, String>,
        sqs: aws_sdk_sqs::Client,
    ) -> LambdaApi {
        let functions = bound
            .iter()
            .map(|(logical, function)| {
                (
                    function.physical.clone(),
                    Invocable {
                        function: function.clone(),
                        delivery_url: delivery_urls.get(logical).cloned(),
                    },
                )
            })
            .collect();
        LambdaApi { functions, sqs }
    }

    pub(crate) fn into_router(self) -> Router {
        Router::new()
            .route(INVOKE_ROUTE, axum::routing::post(invoke))
            .route(LIST_ROUTE, axum::routing::get(list_functions))
            .route(
                LIST_ROUTE.trim_end_matches('/'),
                axum::routing::get(list_functions),
            )
            .route(GET_ROUTE, axum::routing::get(get_function))
            // Only tools call it: no other web page may invoke a function.
            .route_layer(axum::middleware::from_fn(crate::guard::local_only))
            .with_state(Arc::new(self))
    }
}

/// The function name inside a name, an ARN or a partial ARN, without its qualifier.
fn function_name(name: &str) -> &str {
    let parts: Vec<&str> = name.split(':').collect();
    match parts.iter().position(|p| *p == "function") {
        Some(i) => parts.get(i + 1).copied().unwrap_or(name),
        None => parts.first().copied().unwrap_or(name),
    }
}

async fn invoke(
    State(api): State<Arc<LambdaApi>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let physical = function_name(&name);
    let Some(target) = api.functions.get(physical) else {
        return error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {name}"),
        );
    };
    let invocation_type = headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse");
    let payload: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContentException",
                    &format!("Could not parse request body into json: {e}"),
                );
            }
        }
    };
    match invocation_type {
        "Event" => queue(&api, target, &body).await,
        "RequestResponse" => {
            let request_id = uuid::Uuid::new_v4().to_string();
            let result = target
                .function
                .invoke(&request_id, payload, Trigger::Invoke)
                .await;
            let (function_error, body) = match result {
                Ok(value) => (None, value),
                Err(e) => (
                    Some("Unhandled"),
                    json!({"errorType": e.error_type, "errorMessage": e.error_message}),
                ),
            };
            let mut response = Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .header("x-amzn-requestid", &request_id)
                .header("x-amz-executed-version", "$LATEST");
            if let Some(kind) = function_error {
                response = response.header("x-amz-function-error", kind);
            }
            response
                .body(Body::from(body.to_string()))
                .unwrap_or_else(|_| internal("could not build the response"))
        }
        "DryRun" => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Body::empty())
            .unwrap_or_else(|_| internal("could not build the response")),
        other => error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            &format!(
                "unsupported X-Amz-Invocation-Type {other:?}: use Event, RequestResponse or DryRun"
            ),
        ),
    }
}

/// A function's `FunctionConfiguration`, as Lambda describes one.
fn configuration(function: &Bound) -> Value {
    json!({
        "FunctionName": function.physical,
        "FunctionArn": function.arn,
        "Runtime": provision::LAMBDA_RUNTIME,
        "Handler": "bootstrap",
        "PackageType": "Zip",
        "Architectures": [provision::LAMBDA_ARCHITECTURE],
        "Timeout": function.timeout.as_secs(),
        "MemorySize": function.memory_mb,
        "Version": "$LATEST",
        "State": "Active",
        "LastUpdateStatus": "Successful",
    })
}

#[derive(serde::Deserialize)]
struct ListQuery {
    #[serde(rename = "Marker")]
    marker: Option<String>,
    #[serde(rename = "MaxItems")]
    max_items: Option<usize>,
}

/// `ListFunctions`: by physical name, `MaxItems` (1 to 50) a page, the last name of a page
/// its `NextMarker`.
async fn list_functions(
    State(api): State<Arc<LambdaApi>>,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(axum::extract::Query(query)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            "MaxItems must be a number from 1 to 50",
        );
    };
    let limit = query.max_items.unwrap_or(MAX_LIST_ITEMS);
    if !(1..=MAX_LIST_ITEMS).contains(&limit) {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            "MaxItems must be a number from 1 to 50",
        );
    }
    let after = query.marker.unwrap_or_default();
    let mut page: Vec<&Invocable> = api
        .functions
        .iter()
        .filter(|(name, _)| name.as_str() > after.as_str())
        .map(|(_, f)| f)
        .take(limit + 1)
        .collect();
    let next = (page.len() > limit).then(|| {
        page.truncate(limit);
        page.last().map(|f| f.function.physical.clone())
    });
    let functions: Vec<Value> = page.iter().map(|f| configuration(&f.function)).collect();
    let mut body = json!({ "Functions": functions });
    if let Some(Some(marker)) = next {
        body["NextMarker"] = json!(marker);
    }
    ok_json(&body)
}

/// `GetFunction`.
async fn get_function(State(api): State<Arc<LambdaApi>>, Path(name): Path<String>) -> Response {
    let Some(target) = api.functions.get(function_name(&name)) else {
        return error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {name}"),
        );
    };
    ok_json(&json!({
        "Configuration": configuration(&target.function),
        "Code": { "RepositoryType": "S3" },
    }))
}

fn ok_json(body: &Value) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_else(|_| internal("could not build the response"))
}

/// An asynchronous invocation: the payload goes to the delivery queue as it arrived.
async fn queue(api: &LambdaApi, target: &Invocable, body: &Bytes) -> Response {
    let Some(url) = &target.delivery_url else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            &format!(
                "the local host invokes only asynchronous functions with InvocationType Event; {} is not one",
                target.function.physical
            ),
        );
    };
    if body.len() > MAX_EVENT_PAYLOAD {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            &format!("an asynchronous invocation's payload is at most {MAX_EVENT_PAYLOAD} bytes"),
        );
    }
    let text = if body.is_empty() {
        "null".to_owned()
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    match api
        .sqs
        .send_message()
        .queue_url(url)
        .message_body(text)
        .send()
        .await
    {
        Ok(out) => {
            // The delivery's message id becomes the invocation's request id.
            let request_id = out.message_id().unwrap_or_default().to_owned();
            tracing::info!(function = %target.function.name, request_id = %request_id, "asynchronous invocation queued");
            Response::builder()
                .status(StatusCode::ACCEPTED)
                .header("x-amzn-requestid", request_id)
                .body(Body::empty())
                .unwrap_or_else(|_| internal("could not build the response"))
        }
        Err(e) => {
            tracing::error!(function = %target.function.name, error = %DisplayErrorContext(&e), "could not queue an asynchronous invocation");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                "the invocation could not be queued",
            )
        }
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-amzn-errortype", code)
        .body(Body::from(
            json!({"Type": "User", "message": message}).to_string(),
        ))
        .unwrap_or_else(|_| internal(message))
}

fn internal(message: &str) -> Response {
    let mut response = Response::new(Body::from(message.to_owned()));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_are_named_by_name_or_arn() {
        assert_eq!(function_name("fleet-dev-jobs-view"), "fleet-dev-jobs-view");
        assert_eq!(
            function_name("fleet-dev-jobs-view:$LATEST"),
            "fleet-dev-jobs-view"
        );
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:123456789012:function:fleet-dev-jobs-view"),
            "fleet-dev-jobs-view"
        );
        assert_eq!(
            function_name("123456789012:function:fleet-dev-jobs-view:1"),
            "fleet-dev-jobs-view"
        );
    }
}
