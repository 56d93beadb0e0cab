//! Handlers as the host sees them: JSON in, JSON out, like the Lambda runtime API, and
//! the registry mapping the topology's function names to them.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use futures::future::BoxFuture;
use lambda_http::lambda_runtime::{Context, Diagnostic, LambdaEvent};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tower::{Service, ServiceExt as _};

/// One invocation of a function, as the Lambda runtime hands it over.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Lambda's request id. Retries of an asynchronous invocation keep it.
    pub request_id: String,
    /// The function's logical name in the topology (`on-order`, not `fleet-dev-on-order`).
    pub function: String,
    /// The event: an EventBridge event, an SQS event or an API Gateway request.
    pub payload: Value,
    /// When the function's timeout runs out; the host fails the invocation then.
    pub deadline: Instant,
    /// The context `lambda_runtime` would pass: request id, deadline, function ARN, name
    /// and memory.
    pub context: Context,
}

impl Invocation {
    /// The time left before [`Invocation::deadline`].
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// A failed invocation, as the runtime reports it (`lambda_runtime`'s `Diagnostic`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_type}: {error_message}")]
pub struct FunctionError {
    pub error_type: String,
    pub error_message: String,
}

impl FunctionError {
    pub fn new(error_type: impl Into<String>, error_message: impl Into<String>) -> Self {
        FunctionError {
            error_type: error_type.into(),
            error_message: error_message.into(),
        }
    }
}

impl From<Diagnostic> for FunctionError {
    fn from(d: Diagnostic) -> Self {
        FunctionError::new(d.error_type, d.error_message)
    }
}

impl From<FunctionError> for Diagnostic {
    fn from(e: FunctionError) -> Self {
        Diagnostic {
            error_type: e.error_type,
            error_message: e.error_message,
        }
    }
}

/// A Lambda function: takes the event JSON, answers JSON or an error.
///
/// Closures `Fn(Invocation) -> impl Future<Output = Result<Value, FunctionError>>`
/// implement it.
pub trait LambdaFunction: Send + Sync + 'static {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, Result<Value, FunctionError>>;
}

impl<F, Fut> LambdaFunction for F
where
    F: Fn(Invocation) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, FunctionError>> + Send + 'static,
{
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, Result<Value, FunctionError>> {
        self(inv).boxed()
    }
}

/// The implementations of the topology's functions, by logical name.
#[derive(Clone, Default)]
pub struct Functions {
    map: BTreeMap<String, Registered>,
    /// Names registered more than once (each later registration replaced the earlier).
    twice: Vec<String>,
}

#[derive(Clone)]
pub(crate) struct Registered {
    pub(crate) function: Arc<dyn LambdaFunction>,
    /// Registered through [`Functions::http`]: it only understands API Gateway events.
    pub(crate) http: bool,
}

impl fmt::Debug for Functions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.map.keys()).finish()
    }
}

impl Functions {
    pub fn new() -> Self {
        Functions::default()
    }

    /// The names registered more than once: a wiring mistake (the later one won).
    pub fn registered_twice(&self) -> &[String] {
        &self.twice
    }

    fn note(&mut self, name: &str) {
        if self.map.contains_key(name) {
            self.twice.push(name.to_owned());
        }
    }

    /// Registers a JSON-in/JSON-out function under its logical name; a later registration
    /// of the same name replaces it (and is listed by [`Functions::registered_twice`]).
    pub fn json(mut self, name: impl Into<String>, function: impl LambdaFunction) -> Self {
        let name = name.into();
        self.note(&name);
        self.map.insert(
            name,
            Registered {
                function: Arc::new(function),
                http: false,
            },
        );
        self
    }

    /// Registers a `lambda_runtime` service, the value a function's `main` passes to
    /// `lambda_runtime::run` (e.g. `service_fn(handler)`): the event is deserialized into
    /// `T` and the response serialized, as the runtime does.
    pub fn lambda<S, T, R>(self, name: impl Into<String>, service: S) -> Self
    where
        S: Service<LambdaEvent<T>, Response = R> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Diagnostic> + fmt::Debug + Send + 'static,
        T: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
    {
        self.json(
            name,
            RuntimeService {
                service,
                types: PhantomData,
            },
        )
    }

    /// Registers an HTTP function: a tower service on `lambda_http`'s types, the value a
    /// function's `main` passes to `lambda_http::run` (an axum `Router` qualifies). The
    /// API Gateway event goes through `lambda_http`'s own request and response adapters.
    pub fn http<S, R, E>(mut self, name: impl Into<String>, service: S) -> Self
    where
        S: Service<lambda_http::Request, Response = R, Error = E> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        R: lambda_http::IntoResponse + 'static,
        E: Into<Diagnostic> + fmt::Debug + Send + 'static,
    {
        let name = name.into();
        self.note(&name);
        self.map.insert(
            name,
            Registered {
                function: Arc::new(HttpService { service }),
                http: true,
            },
        );
        self
    }

    /// Registers a function built by its service's [`lambda_shell::Function`], as its
    /// `bootstrap` binary runs it on AWS.
    pub fn handler(self, name: impl Into<String>, handler: lambda_shell::Handler) -> Self {
        match handler {
            lambda_shell::Handler::Events(events) => self.json(name, move |inv: Invocation| {
                events
                    .call(LambdaEvent::new(inv.payload, inv.context))
                    .map(|answer| answer.map_err(FunctionError::from))
            }),
            lambda_shell::Handler::Http(router) => self.http(name, router),
        }
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.map.keys().map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Registered> {
        self.map.get(name)
    }
}

/// What the runtime reports when the event does not deserialize into the handler's type.
const UNMARSHAL_ERROR: &str = "Runtime.UnmarshalError";
/// What the runtime reports when the response does not serialize.
const MARSHAL_ERROR: &str = "Runtime.MarshalError";

fn diagnostic<E: Into<Diagnostic>>(e: E) -> FunctionError {
    FunctionError::from(e.into())
}

/// A `lambda_runtime` service as a [`LambdaFunction`].
struct RuntimeService<S, T, R> {
    service: S,
    /// The event and response types; `fn` keeps the struct `Send + Sync` whatever they are.
    types: PhantomData<fn(T) -> R>,
}

impl<S, T, R> LambdaFunction for RuntimeService<S, T, R>
where
    S: Service<LambdaEvent<T>, Response = R> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Diagnostic> + fmt::Debug + Send + 'static,
    T: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
{
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, Result<Value, FunctionError>> {
        let service = self.service.clone();
        async move {
            let payload: T = serde_json::from_value(inv.payload)
                .map_err(|e| FunctionError::new(UNMARSHAL_ERROR, e.to_string()))?;
            let response = service
                .oneshot(LambdaEvent::new(payload, inv.context))
                .await
                .map_err(diagnostic)?;
            serde_json::to_value(response)
                .map_err(|e| FunctionError::new(MARSHAL_ERROR, e.to_string()))
        }
        .boxed()
    }
}

/// A `lambda_http` service as a [`LambdaFunction`], through `lambda_http`'s adapter: the
/// event JSON becomes a `LambdaRequest`, then an `http::Request` carrying the Lambda
/// context; the response becomes the payload format's response JSON.
struct HttpService<S> {
    service: S,
}

impl<S, R, E> LambdaFunction for HttpService<S>
where
    S: Service<lambda_http::Request, Response = R, Error = E> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    R: lambda_http::IntoResponse + 'static,
    E: Into<Diagnostic> + fmt::Debug + Send + 'static,
{
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, Result<Value, FunctionError>> {
        let service = self.service.clone();
        async move {
            // `LambdaRequest` deserializes through a raw value, so it must come from text.
            let request: lambda_http::request::LambdaRequest =
                serde_json::from_str(&inv.payload.to_string())
                    .map_err(|e| FunctionError::new(UNMARSHAL_ERROR, e.to_string()))?;
            let mut service = service;
            service.ready().await.map_err(diagnostic)?;
            // The adapter is not `Send` for every response type (it holds a `&R` marker),
            // so it lives only while the call is made; its future is `Send`.
            let response = {
                let mut adapter = lambda_http::Adapter::from(service);
                adapter.call(LambdaEvent::new(request, inv.context))
            };
            let response = response.await.map_err(diagnostic)?;
            serde_json::to_value(response)
                .map_err(|e| FunctionError::new(MARSHAL_ERROR, e.to_string()))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use lambda_http::lambda_runtime::service_fn;
    use serde_json::json;

    use super::*;

    #[derive(serde::Deserialize)]
    struct Input {
        n: i64,
    }

    fn invocation(payload: Value) -> Invocation {
        let mut context = Context::default();
        context.request_id = "r-1".to_owned();
        Invocation {
            request_id: "r-1".to_owned(),
            function: "double".to_owned(),
            payload,
            deadline: Instant::now() + Duration::from_secs(1),
            context,
        }
    }

    async fn check(payload: Value, expected: Result<Value, &str>) {
        let functions = Functions::new().lambda(
            "double",
            service_fn(|event: LambdaEvent<Input>| async move {
                match event.payload.n {
                    n if n < 0 => Err("negative"),
                    n => Ok(json!({ "double": n * 2, "request": event.context.request_id })),
                }
            }),
        );
        let function = &functions.get("double").expect("registered").function;
        let got = function.invoke(invocation(payload.clone())).await;
        match expected {
            Ok(value) => assert_eq!(got, Ok(value), "{payload}"),
            Err(error_type) => {
                assert_eq!(
                    got.map_err(|e| e.error_type.contains(error_type)),
                    Err(true),
                    "{payload}"
                )
            }
        }
    }

    #[tokio::test]
    async fn lambda_runtime_services_get_typed_events_and_report_errors() {
        check(
            json!({ "n": 2 }),
            Ok(json!({ "double": 4, "request": "r-1" })),
        )
        .await;
        check(json!({ "n": -1 }), Err("str")).await;
        check(json!({ "m": 1 }), Err(UNMARSHAL_ERROR)).await;
    }
}
