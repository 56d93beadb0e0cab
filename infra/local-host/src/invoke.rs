//! One invocation as the Lambda service performs it: a context, the function's timeout, a
//! crashed handler reported as a failed invocation, and a log line per invocation.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::FutureExt as _;
use lambda_http::lambda_runtime::{self, Context};
use serde_json::Value;
use tracing::Instrument as _;

use crate::function::{FunctionError, Invocation, LambdaFunction};

/// A topology function bound to its implementation.
#[derive(Clone)]
pub(crate) struct Bound {
    /// The logical name.
    pub(crate) name: String,
    pub(crate) physical: String,
    pub(crate) arn: String,
    pub(crate) timeout: Duration,
    pub(crate) memory_mb: u32,
    pub(crate) handler: Arc<dyn LambdaFunction>,
}

/// What invoked a function, for the logs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Trigger {
    EventBridge,
    Sqs,
    Http,
    /// A direct call of the Lambda Invoke API.
    Invoke,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::EventBridge => "eventbridge",
            Trigger::Sqs => "sqs",
            Trigger::Http => "http",
            Trigger::Invoke => "invoke",
        }
    }
}

impl Bound {
    /// Invokes the function with `payload` within its timeout.
    pub(crate) async fn invoke(
        &self,
        request_id: &str,
        payload: Value,
        trigger: Trigger,
    ) -> Result<Value, FunctionError> {
        let started = Instant::now();
        let invocation = Invocation {
            request_id: request_id.to_owned(),
            function: self.name.clone(),
            payload,
            deadline: started + self.timeout,
            context: self.context(request_id),
        };
        let span = tracing::info_span!(
            "invoke",
            function = %self.name,
            request_id = %request_id,
            trigger = trigger.as_str(),
        );
        // A panicking handler crashes its sandbox on AWS: the invocation fails and the next
        // one gets a fresh sandbox. Here the host survives and reports the failure.
        let result =
            match std::panic::catch_unwind(AssertUnwindSafe(|| self.handler.invoke(invocation))) {
                Err(panic) => Err(crashed(panic.as_ref())),
                Ok(future) => {
                    let future = AssertUnwindSafe(future).catch_unwind().instrument(span);
                    match tokio::time::timeout(self.timeout, future).await {
                        Err(_) => Err(FunctionError::new(
                            "Sandbox.Timedout",
                            format!(
                                "RequestId: {request_id} Error: Task timed out after {:.2} seconds",
                                self.timeout.as_secs_f64()
                            ),
                        )),
                        Ok(Err(panic)) => Err(crashed(panic.as_ref())),
                        Ok(Ok(result)) => result,
                    }
                }
            };
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        match &result {
            Ok(_) => tracing::info!(
                function = %self.name,
                request_id = %request_id,
                trigger = trigger.as_str(),
                outcome = "succeeded",
                duration_ms,
                "invocation"
            ),
            Err(e) => tracing::warn!(
                function = %self.name,
                request_id = %request_id,
                trigger = trigger.as_str(),
                outcome = "failed",
                duration_ms,
                error_type = %e.error_type,
                error_message = %e.error_message,
                "invocation"
            ),
        }
        result
    }

    /// The context `lambda_runtime` builds from the Runtime API's headers and environment.
    fn context(&self, request_id: &str) -> Context {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let deadline_ms = now_ms + self.timeout.as_millis();
        let mut context = Context::default();
        context.request_id = request_id.to_owned();
        context.deadline = u64::try_from(deadline_ms).unwrap_or(u64::MAX);
        context.invoked_function_arn = self.arn.clone();
        context.env_config = Arc::new(lambda_runtime::Config {
            function_name: self.physical.clone(),
            memory: i32::try_from(self.memory_mb).unwrap_or(i32::MAX),
            version: "$LATEST".to_owned(),
            log_group: format!("/aws/lambda/{}", self.physical),
            ..lambda_runtime::Config::default()
        });
        context
    }
}

fn crashed(panic: &(dyn std::any::Any + Send)) -> FunctionError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    FunctionError::new(
        "Runtime.ExitError",
        format!("the handler panicked: {message}"),
    )
}
