//! A built function, as `lambda_runtime` or `lambda_http` runs it.

use std::sync::Arc;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// What the runtime reports when the event does not deserialize into the handler's type.
const UNMARSHAL_ERROR: &str = "Runtime.UnmarshalError";
/// What the runtime reports when the response does not serialize.
const MARSHAL_ERROR: &str = "Runtime.MarshalError";

/// A function ready to run.
pub enum Handler {
    /// Invoked with a JSON event (EventBridge, SQS, API Gateway WebSocket).
    Events(EventHandler),
    /// Serves an API Gateway HTTP API through `lambda_http`.
    Http(axum::Router),
}

type Call =
    dyn Fn(LambdaEvent<Value>) -> BoxFuture<'static, Result<Value, Diagnostic>> + Send + Sync;

/// A typed event handler with its dependencies, seen as JSON in and JSON out: the event is
/// deserialized into the handler's type and the answer serialized, with the errors the
/// Lambda runtime reports for each.
#[derive(Clone)]
pub struct EventHandler(Arc<Call>);

impl Handler {
    /// `handler(event, deps)` for each event of type `E`. `deps` is built once and shared
    /// by every invocation.
    pub fn events<D, E, R, Er, F, Fut>(deps: D, handler: F) -> Handler
    where
        D: Send + Sync + 'static,
        E: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        Er: Into<Diagnostic> + Send + 'static,
        F: Fn(E, Arc<D>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, Er>> + Send + 'static,
    {
        let deps = Arc::new(deps);
        let handler = Arc::new(handler);
        Handler::Events(EventHandler(Arc::new(move |event: LambdaEvent<Value>| {
            let deps = deps.clone();
            let handler = handler.clone();
            async move {
                let event: E = serde_json::from_value(event.payload)
                    .map_err(|e| diagnostic(UNMARSHAL_ERROR, e))?;
                let answer = handler(event, deps).await.map_err(Into::into)?;
                serde_json::to_value(answer).map_err(|e| diagnostic(MARSHAL_ERROR, e))
            }
            .boxed()
        })))
    }

    /// An HTTP API served by `router`.
    pub fn http(router: axum::Router) -> Handler {
        Handler::Http(router)
    }
}

fn diagnostic(error_type: &str, e: serde_json::Error) -> Diagnostic {
    Diagnostic {
        error_type: error_type.to_owned(),
        error_message: e.to_string(),
    }
}

impl EventHandler {
    /// Invokes the handler with one event.
    pub fn call(&self, event: LambdaEvent<Value>) -> BoxFuture<'static, Result<Value, Diagnostic>> {
        (self.0)(event)
    }

    /// The `lambda_runtime` service running it.
    pub fn service(
        &self,
    ) -> impl tower::Service<
        LambdaEvent<Value>,
        Response = Value,
        Error = Diagnostic,
        Future = BoxFuture<'static, Result<Value, Diagnostic>>,
    > + Clone
    + Send
    + Sync
    + 'static {
        let this = self.clone();
        lambda_runtime::service_fn(move |event| this.call(event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Ping {
        n: u32,
    }

    fn doubler() -> EventHandler {
        match Handler::events(2_u32, |ping: Ping, factor: Arc<u32>| async move {
            if ping.n == 0 {
                return Err(Diagnostic {
                    error_type: "Ping.Zero".into(),
                    error_message: "n is 0".into(),
                });
            }
            Ok(serde_json::json!({ "n": ping.n * *factor }))
        }) {
            Handler::Events(h) => h,
            Handler::Http(_) => unreachable!("built as events"),
        }
    }

    fn event(payload: Value) -> LambdaEvent<Value> {
        LambdaEvent::new(payload, lambda_runtime::Context::default())
    }

    #[tokio::test]
    async fn events_are_typed_answers_serialized_and_errors_named_as_the_runtime_does() {
        let h = doubler();
        assert_eq!(
            h.call(event(serde_json::json!({ "n": 21 }))).await.ok(),
            Some(serde_json::json!({ "n": 42 }))
        );
        let err = h
            .call(event(serde_json::json!({ "m": 1 })))
            .await
            .unwrap_err();
        assert_eq!(err.error_type, UNMARSHAL_ERROR);
        let err = h
            .call(event(serde_json::json!({ "n": 0 })))
            .await
            .unwrap_err();
        assert_eq!(err.error_type, "Ping.Zero");
    }
}
