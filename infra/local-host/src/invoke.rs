//! One invocation as the Lambda service performs it: a free instance of the function
//! (its concurrency limit), a context, the function's timeout, a crashed handler reported
//! as a failed invocation, and a log line per invocation.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::FutureExt as _;
use lambda_http::lambda_runtime::{self, Context};
use serde_json::Value;
use tokio::sync::{Semaphore, SemaphorePermit};
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
    /// The function's free instances: at most [`crate::Config::function_instances`]
    /// invocations run at once, whatever invoked them.
    pub(crate) instances: Arc<Semaphore>,
    /// The host's fault injector, shared by every function.
    pub(crate) faults: Arc<crate::faults::Injector>,
    /// The host's meter, shared by every function.
    pub(crate) meter: Arc<crate::meter::Meter>,
}

/// An instance of a function, taken for one invocation ([`Bound::instance`]).
pub(crate) struct Instance<'a> {
    function: &'a Bound,
    _permit: SemaphorePermit<'a>,
}

/// What invoked a function, for the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Invokes the function with `payload` within its timeout, once an instance is free.
    pub(crate) async fn invoke(
        &self,
        request_id: &str,
        payload: Value,
        trigger: Trigger,
    ) -> Result<Value, FunctionError> {
        self.instance(None)
            .await
            .ok_or_else(no_instance)?
            .invoke(request_id, payload, trigger)
            .await
    }

    /// Waits for a free instance of the function, until `deadline` if one is given:
    /// `None` when none was free by then.
    ///
    /// Lambda runs a function's invocations in as many instances as its concurrency
    /// allows. Here they share the emulator, which slows down for everyone when thousands
    /// of invocations call it at once (as when every WebSocket client goes at the same
    /// moment, each with its `$disconnect`), so the host keeps Lambda's limit, scaled to
    /// one machine. Where Lambda throttles an invocation over the limit, the host lets it
    /// wait: callers already bound how long (an integration timeout, a shutdown).
    pub(crate) async fn instance(&self, deadline: Option<Instant>) -> Option<Instance<'_>> {
        let acquire = self.instances.acquire();
        let permit = match deadline {
            None => acquire.await.ok()?,
            Some(deadline) => tokio::time::timeout_at(deadline.into(), acquire)
                .await
                .ok()?
                .ok()?,
        };
        Some(Instance {
            function: self,
            _permit: permit,
        })
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

impl Instance<'_> {
    /// Invokes the function with `payload` within its timeout.
    pub(crate) async fn invoke(
        self,
        request_id: &str,
        payload: Value,
        trigger: Trigger,
    ) -> Result<Value, FunctionError> {
        let function = self.function;
        let started = Instant::now();
        let invocation = Invocation {
            request_id: request_id.to_owned(),
            function: function.name.clone(),
            payload,
            deadline: started + function.timeout,
            context: function.context(request_id),
        };
        let span = tracing::info_span!(
            "invoke",
            function = %function.name,
            request_id = %request_id,
            trigger = trigger.as_str(),
        );
        // A panicking handler crashes its sandbox on AWS: the invocation fails and the next
        // one gets a fresh sandbox. Here the host survives and reports the failure.
        let result = match std::panic::catch_unwind(AssertUnwindSafe(|| {
            function.handler.invoke(invocation)
        })) {
            Err(panic) => Err(crashed(panic.as_ref())),
            Ok(future) => {
                let future = AssertUnwindSafe(future).catch_unwind().instrument(span);
                let future = async {
                    match future.await {
                        Err(panic) => Err(crashed(panic.as_ref())),
                        Ok(result) => result,
                    }
                };
                let future = function.faults.run(trigger, request_id, future);
                match tokio::time::timeout(function.timeout, future).await {
                    Err(_) => Err(FunctionError::new(
                        "Sandbox.Timedout",
                        format!(
                            "RequestId: {request_id} Error: Task timed out after {:.2} seconds",
                            function.timeout.as_secs_f64()
                        ),
                    )),
                    Ok(result) => result,
                }
            }
        };
        let took = started.elapsed();
        function.meter.record(&function.name, took);
        let duration_ms = took.as_secs_f64() * 1000.0;
        match &result {
            Ok(_) => tracing::info!(
                function = %function.name,
                request_id = %request_id,
                trigger = trigger.as_str(),
                outcome = "succeeded",
                duration_ms,
                "invocation"
            ),
            Err(e) => tracing::warn!(
                function = %function.name,
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
}

/// What an invocation that never got an instance reports (the semaphore is never closed,
/// so only a broken invariant gets here).
fn no_instance() -> FunctionError {
    FunctionError::new(
        "Lambda.ServiceException",
        "the function's instances are no longer available",
    )
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A function with `instances` instances whose invocations each wait for `release`,
    /// counting how many run at once.
    fn held(
        instances: usize,
        release: tokio::sync::watch::Receiver<bool>,
    ) -> (Bound, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let handler = {
            let (running, most) = (Arc::clone(&running), Arc::clone(&most));
            move |_: Invocation| {
                let (running, most, mut release) =
                    (Arc::clone(&running), Arc::clone(&most), release.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    let released = release.wait_for(|released| *released).await.is_ok();
                    running.fetch_sub(1, Ordering::SeqCst);
                    match released {
                        true => Ok(Value::Null),
                        false => Err(FunctionError::new("Test", "the test ended")),
                    }
                }
            }
        };
        let function = Bound {
            name: "held".into(),
            physical: "fleet-test-held".into(),
            arn: "arn:aws:lambda:us-east-1:000000000000:function:fleet-test-held".into(),
            timeout: Duration::from_secs(60),
            memory_mb: 128,
            handler: Arc::new(handler),
            instances: Arc::new(Semaphore::new(instances)),
            faults: Arc::new(crate::faults::Injector::new(Default::default())),
            meter: Arc::default(),
        };
        (function, running, most)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn invocations_beyond_the_functions_instances_wait_for_a_free_one_and_all_run() {
        let (release, released) = tokio::sync::watch::channel(false);
        let (function, running, most) = held(2, released);
        let calls: Vec<_> = (0..5)
            .map(|i| {
                let function = function.clone();
                tokio::spawn(async move {
                    function
                        .invoke(&format!("call-{i}"), Value::Null, Trigger::Invoke)
                        .await
                })
            })
            .collect();
        // On this one thread, each spawned call runs until it waits: for its release, or
        // for an instance.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            running.load(Ordering::SeqCst),
            2,
            "two instances, two running"
        );
        // None is free: a caller with a deadline gets none.
        let deadline = Instant::now() + Duration::from_millis(20);
        assert!(function.instance(Some(deadline)).await.is_none());

        release.send_replace(true);
        for call in calls {
            let outcome = call.await.expect("the call's task ran to its end");
            assert_eq!(outcome, Ok(Value::Null));
        }
        assert_eq!(
            most.load(Ordering::SeqCst),
            2,
            "never more than two at once"
        );
        assert!(function.instance(Some(Instant::now())).await.is_some());
    }
}
