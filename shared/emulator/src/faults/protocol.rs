//! What an AWS call is (service, operation, wire protocol) and the error answers of each
//! protocol, shaped as the AWS SDK for Rust parses them.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Method, Response, StatusCode, http::request};

/// One call as the proxy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    /// As in the SigV4 credential scope (`sqs`, `dynamodb`, `s3`), or `unknown`.
    pub service: String,
    /// `ReceiveMessage`, `PutItem`, `GetObject`, or `unknown`.
    pub operation: String,
    pub protocol: Protocol,
    /// Whether the call is a `HEAD`, whose answer has no body.
    pub head: bool,
}

impl Call {
    /// `service:Operation`, the key of the report.
    pub fn key(&self) -> String {
        format!("{}:{}", self.service, self.operation)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// awsJson1.0 or 1.1 (`X-Amz-Target`); the minor version of the request's content type.
    AwsJson { minor: u8 },
    /// awsQuery: a form body with `Action=` (SNS).
    Query,
    /// S3's REST-XML, whose errors are an unwrapped `<Error>`.
    S3,
    /// REST-JSON (Lambda, API Gateway): the code in `x-amzn-ErrorType`.
    RestJson,
}

/// The error the proxy answers with instead of forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Injected {
    Throttle,
    InternalFailure,
    ServiceUnavailable,
}

/// Identifies a request from its SigV4 scope, `X-Amz-Target`, form `Action` or, for S3,
/// its method and path.
pub(crate) fn identify(parts: &request::Parts, body: &[u8]) -> Call {
    let service = service(parts).unwrap_or_else(|| "unknown".to_string());
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let head = parts.method == Method::HEAD;
    if let Some(target) = header("x-amz-target") {
        let minor = match header(CONTENT_TYPE.as_str()) {
            Some(t) if t.contains("json-1.1") => 1,
            _ => 0,
        };
        let operation = target.rsplit('.').next().unwrap_or(target).to_string();
        return Call {
            service,
            operation,
            protocol: Protocol::AwsJson { minor },
            head,
        };
    }
    let form = header(CONTENT_TYPE.as_str())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if form && let Some(action) = form_value(body, "Action") {
        return Call {
            service,
            operation: action,
            protocol: Protocol::Query,
            head,
        };
    }
    if service == "s3" {
        let operation = s3_operation(parts);
        return Call {
            service,
            operation,
            protocol: Protocol::S3,
            head,
        };
    }
    Call {
        service,
        operation: "unknown".to_string(),
        protocol: Protocol::RestJson,
        head,
    }
}

/// The answer of an injected error, in the call's protocol.
pub(crate) fn error_response(call: &Call, error: Injected) -> Response<Full<Bytes>> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let (status, code, fault, message) = match (call.protocol, error) {
        (Protocol::Query, Injected::Throttle) => (400, "Throttling", "Sender", THROTTLED),
        (Protocol::S3, Injected::Throttle) => (503, "SlowDown", "Sender", SLOW_DOWN),
        (Protocol::RestJson, Injected::Throttle) => {
            (429, "ThrottlingException", "Sender", THROTTLED)
        }
        (_, Injected::Throttle) => (400, "ThrottlingException", "Sender", THROTTLED),
        // S3 names its internal error `InternalError`; the other services `InternalFailure`.
        (Protocol::S3, Injected::InternalFailure) => (500, "InternalError", "Receiver", INTERNAL),
        (_, Injected::InternalFailure) => (500, "InternalFailure", "Receiver", INTERNAL),
        (_, Injected::ServiceUnavailable) => (503, "ServiceUnavailable", "Receiver", UNAVAILABLE),
    };
    let mut headers: Vec<(&str, String)> = vec![("x-amzn-requestid", request_id.clone())];
    let body = match call.protocol {
        Protocol::AwsJson { minor } => {
            headers.push(("content-type", format!("application/x-amz-json-1.{minor}")));
            // The SQS SDK reads the code from this header first (awsQueryCompatible), as
            // SQS sends it; DynamoDB's `__type` is namespaced, which the SDK strips.
            if call.service == "sqs" {
                headers.push(("x-amzn-query-error", format!("{code};{fault}")));
            }
            let typ = match call.service.as_str() {
                "dynamodb" => format!("com.amazonaws.dynamodb.v20120810#{code}"),
                _ => code.to_string(),
            };
            serde_json::json!({"__type": typ, "message": message}).to_string()
        }
        Protocol::Query => {
            headers.push(("content-type", "text/xml".to_string()));
            format!(
                "<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><Error><Type>{fault}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
            )
        }
        Protocol::S3 => {
            headers.push(("content-type", "application/xml".to_string()));
            headers.push(("x-amz-request-id", request_id.clone()));
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId></Error>"
            )
        }
        Protocol::RestJson => {
            headers.push(("content-type", "application/json".to_string()));
            headers.push(("x-amzn-errortype", code.to_string()));
            serde_json::json!({"message": message}).to_string()
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(name), value);
        }
    }
    response
}

const THROTTLED: &str = "Rate exceeded (injected by the fault proxy)";
const SLOW_DOWN: &str = "Please reduce your request rate. (injected by the fault proxy)";
const INTERNAL: &str =
    "We encountered an internal error. Please try again. (injected by the fault proxy)";
const UNAVAILABLE: &str = "Service is unavailable. Please try again. (injected by the fault proxy)";

/// The service of the SigV4 credential scope `AKID/DATE/REGION/SERVICE/aws4_request`, from
/// the `Authorization` header or a presigned URL's `X-Amz-Credential`.
fn service(parts: &request::Parts) -> Option<String> {
    let scope = match parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some(auth) => {
            let start = auth.find("Credential=")? + "Credential=".len();
            let rest = &auth[start..];
            rest[..rest.find([',', ' ']).unwrap_or(rest.len())].to_string()
        }
        None => query_value(parts.uri.query()?, "X-Amz-Credential")?.replace("%2F", "/"),
    };
    scope.split('/').nth(3).map(str::to_string)
}

/// S3's operation: the `x-id` the SDK adds to most requests, else a guess from the
/// method, the subresource and whether the path names a key (path-style addressing,
/// which the SDK uses for an IP endpoint).
fn s3_operation(parts: &request::Parts) -> String {
    let query = parts.uri.query().unwrap_or("");
    if let Some(id) = query_value(query, "x-id") {
        return id.to_string();
    }
    let has = |name: &str| {
        query
            .split('&')
            .any(|p| p == name || p.starts_with(&format!("{name}=")))
    };
    let mut segments = parts.uri.path().trim_start_matches('/').splitn(2, '/');
    let bucket = segments.next().is_some_and(|b| !b.is_empty());
    let key = segments.next().is_some_and(|k| !k.is_empty());
    let method = &parts.method;
    let operation = match (bucket, key) {
        (false, _) if method == Method::GET => "ListBuckets",
        (true, false) if method == Method::GET && has("list-type") => "ListObjectsV2",
        (true, false) if method == Method::GET => "ListObjects",
        (true, false) if method == Method::PUT => "CreateBucket",
        (true, false) if method == Method::HEAD => "HeadBucket",
        (true, false) if method == Method::DELETE => "DeleteBucket",
        (true, false) if method == Method::POST && has("delete") => "DeleteObjects",
        (true, true) if method == Method::GET => "GetObject",
        (true, true) if method == Method::HEAD => "HeadObject",
        (true, true) if method == Method::PUT && has("partNumber") => "UploadPart",
        (true, true)
            if method == Method::PUT && parts.headers.contains_key("x-amz-copy-source") =>
        {
            "CopyObject"
        }
        (true, true) if method == Method::PUT => "PutObject",
        (true, true) if method == Method::DELETE && has("uploadId") => "AbortMultipartUpload",
        (true, true) if method == Method::DELETE => "DeleteObject",
        (true, true) if method == Method::POST && has("uploads") => "CreateMultipartUpload",
        (true, true) if method == Method::POST && has("uploadId") => "CompleteMultipartUpload",
        _ => "unknown",
    };
    operation.to_string()
}

fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then_some(v)
    })
}

/// A value of a form body; action names need no percent-decoding.
fn form_value(body: &[u8], name: &str) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?;
    query_value(body, name).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use hyper::Request;

    use super::*;

    fn call(request: Request<()>, body: &str) -> Call {
        identify(&request.into_parts().0, body.as_bytes())
    }

    const SQS_AUTH: &str = "AWS4-HMAC-SHA256 Credential=fleet-local/20250101/us-east-1/sqs/aws4_request, SignedHeaders=host;x-amz-date, Signature=00";

    #[test]
    fn a_json_call_is_named_by_its_target_and_credential_scope() {
        let request = Request::post("/")
            .header("authorization", SQS_AUTH)
            .header("x-amz-target", "AmazonSQS.ReceiveMessage")
            .header("content-type", "application/x-amz-json-1.0")
            .body(())
            .expect("a valid request");
        let call = call(request, "{}");
        assert_eq!(call.key(), "sqs:ReceiveMessage");
        assert_eq!(call.protocol, Protocol::AwsJson { minor: 0 });
    }

    #[test]
    fn a_query_call_is_named_by_its_action() {
        let request = Request::post("/")
            .header("authorization", SQS_AUTH.replace("/sqs/", "/sns/"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(())
            .expect("a valid request");
        let call = call(request, "Action=Publish&Version=2010-03-31&Message=hi");
        assert_eq!(call.key(), "sns:Publish");
        assert_eq!(call.protocol, Protocol::Query);
    }

    #[test]
    fn an_s3_call_is_named_by_x_id_or_its_method_and_path() {
        let auth = SQS_AUTH.replace("/sqs/", "/s3/");
        let check = |method: Method, uri: &str, expected: &str| {
            let request = Request::builder()
                .method(method)
                .uri(uri)
                .header("authorization", &auth)
                .body(())
                .expect("a valid request");
            assert_eq!(call(request, "").key(), format!("s3:{expected}"), "{uri}");
        };
        check(Method::GET, "/bucket/key?x-id=GetObject", "GetObject");
        check(Method::HEAD, "/bucket/a/b", "HeadObject");
        check(Method::GET, "/bucket?list-type=2", "ListObjectsV2");
        check(Method::GET, "/", "ListBuckets");
        check(Method::PUT, "/bucket/key", "PutObject");
    }
}
