//! The bounds of the console's API, listed in `SECURITY.md`'s limits table. Every input
//! is checked against them before any AWS call, and refused with `400`/`413` naming the
//! field.

/// A bearer token (header or cookie), checked before any verification.
pub const MAX_TOKEN_BYTES: usize = 8192;
/// The query string of any `/ops/api` request.
pub const MAX_QUERY_BYTES: usize = 1024;
/// The JSON body of any `/ops/api` request.
pub const MAX_BODY_BYTES: usize = 65536;
/// A queue, state machine, function or message id, in a path, query or body.
pub const MAX_NAME_LEN: usize = 256;
/// An execution: its ARN or a job id.
pub const MAX_EXECUTION_LEN: usize = 2048;
/// A task token (Step Functions' limit).
pub const MAX_TASK_TOKEN_LEN: usize = 2048;
/// A redrive filter: an event pattern or a substring (EventBridge's pattern limit).
pub const MAX_FILTER_LEN: usize = 4096;
/// An error name passed to `SendTaskFailure` (Step Functions' limit).
pub const MAX_ERROR_LEN: usize = 256;
/// A cause passed to `SendTaskFailure` (Step Functions' limit).
pub const MAX_CAUSE_LEN: usize = 32768;
/// Messages peeked at once.
pub const MAX_PEEK: usize = 50;
/// Executions listed at once (runs, jobs in flight).
pub const MAX_LIST: usize = 200;
/// Messages one redrive request sends; more take another request.
pub const MAX_REDRIVE: usize = 1000;
/// A redrive's rate, messages per second, when the request names none.
pub const DEFAULT_REDRIVE_RATE: u32 = 10;
/// The highest rate a request may ask for, messages per second.
pub const MAX_REDRIVE_RATE: u32 = 100;
