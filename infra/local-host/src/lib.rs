//! The local stand-in for what the emulator cannot do: running Lambda functions.
//!
//! moto hosts the queues, topics, bus and rules that [`provision::deploy`] creates, but it
//! can neither invoke a Lambda function nor deliver an EventBridge event to one; its
//! EventBridge delivers only to SQS targets. This crate fills exactly those gaps, from the
//! same [`topology::Topology`] and [`provision::DeployReport`], and nothing more:
//!
//! - **EventBridge rule → Lambda (asynchronous invocation).** For each function a rule
//!   targets, a local-only *delivery queue* `fleet-<stage>-local-<function>` is created and
//!   added to the rule as a target with id `local-lambda-<function>`. Its messages are the
//!   events exactly as EventBridge delivers them; the host invokes the function with each,
//!   retries failures after [`Config::async_retry_delays`], and after the last failure
//!   publishes the original event to the function's dead-letter topic with the message
//!   attributes Lambda sets (`RequestID`, `ErrorCode`, `ErrorMessage`). On AWS the delivery
//!   queue does not exist: the rule targets the function and Lambda's internal queue plays
//!   its part.
//! - **SQS → Lambda (event source mapping)** with `ReportBatchItemFailures`: batches of the
//!   topology's size, successes deleted, failures left for the queue's redrive policy.
//! - **API Gateway HTTP API → Lambda**: an axum server routing the topology's routes to
//!   their functions with payload format 2.0 events, through `lambda_http`'s own types.
//! - **API Gateway WebSocket API → Lambda** on the same listener: a real WebSocket server
//!   at [`WebSocketConfig::path`] (`/ws`) with API Gateway's connection ids, `$connect`
//!   before the upgrade, route selection on `$request.body.action`, `$disconnect`, its
//!   idle timeout, maximum duration and message limit, keep-alive pings that find
//!   half-open connections; the `@connections` management API
//!   (`aws-sdk-apigatewaymanagement` with the host's address as endpoint); and the same
//!   routes over Server-Sent Events at [`WebSocketConfig::sse_path`] (`/sse`). One
//!   service per host may have a WebSocket API. Differences from AWS are listed in the
//!   `websocket` module.
//! - **The Lambda Invoke API** on the same listener (`POST /2015-03-31/functions/{name}/invocations`):
//!   an `Event` invocation joins the function's delivery queue, with the asynchronous
//!   semantics above; `RequestResponse` answers the result. Tools point the SDK at it with
//!   `AWS_ENDPOINT_URL_LAMBDA` (e.g. `fleet dlq redrive` re-delivering failed events).
//!
//! - **DynamoDB Time to Live**: the items of the topology's TTL tables whose TTL has
//!   passed are deleted every [`Config::ttl_sweep_interval`] (the `ttl` module).
//!
//! Handlers are JSON-in/JSON-out [`LambdaFunction`]s, registered by the topology's logical
//! function names in [`Functions`]; `lambda_runtime` services and `lambda_http` services
//! (axum routers included) are adapted with [`Functions::lambda`] and [`Functions::http`].
//! [`Host::start`] wires everything and returns a [`RunningHost`] whose
//! [`RunningHost::shutdown`] joins every task; [`run`] does both around a cancellation
//! token.

mod asynchronous;
mod config;
mod error;
mod faults;
mod function;
mod gateway;
mod guard;
mod host;
mod in_process;
mod invoke;
mod lambda_api;
mod meter;
mod poll;
mod sqs;
mod ttl;
mod websocket;

pub use config::{Config, MAX_MESSAGE_BYTES, WebSocketConfig};
pub use error::HostError;
pub use faults::{FaultTriggers, InvocationFaultCounts, InvocationFaults};
pub use function::{FunctionError, Functions, Invocation, LambdaFunction};
pub use gateway::{MAX_REQUEST_BYTES, router};
pub use guard::local_only;
pub use host::{Host, RunningHost, delivery_queue, delivery_target_id, run};
pub use in_process::{InProcessClient, InProcessInterceptor};
pub use lambda_api::MAX_LIST_ITEMS;
pub use meter::FunctionUsage;
