//! `exec` models: run an operator-configured external command as a model.
//!
//! # Protocol
//!
//! - The command comes from [`RegistryConfig`](crate::models::RegistryConfig), never from a
//!   message; it is started with its configured arguments in a process group of its own.
//! - Its environment is cleared: it sees only the variables in [`INHERITED_ENV`] that the
//!   worker has (`PATH` above all; `PATH` defaults to [`DEFAULT_PATH`]) and
//!   `FLEET_MODEL`, the model's name. Nothing else of the worker's environment (AWS
//!   credentials, the container's task-role endpoint, configuration) reaches it.
//! - The job's params are written to its stdin as one JSON document (at most
//!   [`MAX_STDIN_BYTES`]), then stdin is closed.
//! - It prints its result as JSON on stdout. `{"summary": S, "result": R}` (exactly those two
//!   keys) gives the summary and result directly, and `S` must serialize to at most
//!   [`MAX_SUMMARY_BYTES`]. Any other JSON is the result, and the summary is a digest of it:
//!   `{"model": name, "resultBytes": n, "resultType": "object"}`.
//! - Stderr lines of the form `progress 0.42` or `progress 0.42 some message` are forwarded to
//!   the progress callback. Other stderr is kept (the last [`STDERR_TAIL_BYTES`]) for error
//!   messages.
//! - A non-zero exit, death by a signal, stdout over [`MAX_STDOUT_BYTES`] or stdout that is not
//!   JSON is [`ModelError::Failed`], whose message ends with the stderr tail.
//! - It runs at most its configured timeout, [`DEFAULT_TIMEOUT`] when none is configured
//!   and never more than [`MAX_TIMEOUT`]; on timeout or cancellation the whole process
//!   group is killed with `SIGKILL`.
//! - Its arguments come from the configuration, at most [`MAX_ARGS`] of at most
//!   [`MAX_ARG_BYTES`] each (checked when the registry is built).
//!
//! The run ends when the command has exited *and* its stdout and stderr are closed, so a
//! background process it leaves holding them keeps the run going until the timeout (if any)
//! kills the group.

use std::io::{self, Read, Write};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

use serde_json::{Value, json};

use crate::models::{CancelFlag, ExecCommand, Model, ModelError, ModelOutput, Progress};

/// The most stdout an `exec` command may print: 64 MiB.
pub const MAX_STDOUT_BYTES: usize = 64 << 20;
/// The most a command-provided summary may serialize to: 8 KiB.
pub const MAX_SUMMARY_BYTES: usize = 8 << 10;
/// How much of the end of stderr is kept for error messages: 2 KiB.
pub const STDERR_TAIL_BYTES: usize = 2 << 10;
/// The most params (serialized as JSON) written to a command's stdin: 256 KiB, the size
/// of the largest SQS message that could have carried them.
pub const MAX_STDIN_BYTES: usize = 256 << 10;
/// The most arguments an `exec` model may be configured with.
pub const MAX_ARGS: usize = 256;
/// The longest argument (in bytes) an `exec` model may be configured with: 4 KiB.
pub const MAX_ARG_BYTES: usize = 4 << 10;
/// How long a command runs when its model configures no timeout: one hour, the
/// simulation-job state machine's `TimeoutSeconds` (nobody waits longer).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
/// The longest timeout an `exec` model may configure: 12 hours, SQS's ceiling on how
/// long one receive of a message may be kept leased.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(12 * 3600);
/// The variables of the worker's environment a command inherits (when the worker has
/// them). Everything else is cleared.
pub const INHERITED_ENV: &[&str] = &["PATH", "LANG", "LC_ALL", "TZ", "TMPDIR"];
/// The `PATH` a command gets when the worker has none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// The variable that tells a command which model it runs as.
pub const MODEL_ENV: &str = "FLEET_MODEL";
/// Longer stderr lines (in bytes) are never progress lines; they go straight to the tail.
pub const MAX_PROGRESS_LINE: usize = 256;

/// How often the worker checks the command, its timeout and the cancel flag. `std` has no
/// wait-with-timeout for a child, so we poll; 10 ms is invisible next to a model run.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// The environment a command starts with: the inherited variables the worker has (as
/// `lookup` reads them), a `PATH` in any case, and [`MODEL_ENV`].
pub fn child_env(
    model: &str,
    lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Vec<(String, std::ffi::OsString)> {
    let mut env: Vec<(String, std::ffi::OsString)> = INHERITED_ENV
        .iter()
        .filter_map(|name| Some((name.to_string(), lookup(name)?)))
        .collect();
    if !env.iter().any(|(name, _)| name == "PATH") {
        env.push(("PATH".to_string(), DEFAULT_PATH.into()));
    }
    env.push((MODEL_ENV.to_string(), model.into()));
    env
}

/// The bounds [`MAX_ARGS`] and [`MAX_ARG_BYTES`] on a configured command; the error says
/// which is exceeded.
pub fn check_args(args: &[String]) -> Result<(), String> {
    if args.len() > MAX_ARGS {
        return Err(format!(
            "has {} arguments, more than the {MAX_ARGS} allowed",
            args.len()
        ));
    }
    if let Some((index, arg)) = args
        .iter()
        .enumerate()
        .find(|(_, arg)| arg.len() > MAX_ARG_BYTES)
    {
        return Err(format!(
            "argument {index} is {} bytes, more than the {MAX_ARG_BYTES} allowed",
            arg.len()
        ));
    }
    Ok(())
}

/// The timeout a command runs under: its configured one, else [`DEFAULT_TIMEOUT`], never
/// more than [`MAX_TIMEOUT`].
pub fn effective_timeout(configured: Option<Duration>) -> Duration {
    configured.unwrap_or(DEFAULT_TIMEOUT).min(MAX_TIMEOUT)
}

/// A model that runs an external command.
#[derive(Debug, Clone)]
pub struct ExecModel {
    name: String,
    command: ExecCommand,
}

impl ExecModel {
    /// A model called `name` that runs `command`.
    pub fn new(name: String, command: ExecCommand) -> Self {
        Self { name, command }
    }
}

impl Model for ExecModel {
    fn name(&self) -> &str {
        &self.name
    }

    /// Only the size is checked here: the command itself judges its params.
    fn validate(&self, params: &Value) -> Result<(), ModelError> {
        let bytes = params.to_string().len();
        if bytes > MAX_STDIN_BYTES {
            return Err(ModelError::invalid(
                "params",
                format!(
                    "serialize to {bytes} bytes, more than the {MAX_STDIN_BYTES} an exec model takes"
                ),
            ));
        }
        Ok(())
    }

    fn run(
        &self,
        params: &Value,
        progress: &dyn Progress,
        cancel: &CancelFlag,
    ) -> Result<ModelOutput, ModelError> {
        let program = self.command.program.display().to_string();
        let input = params.to_string().into_bytes();
        if input.len() > MAX_STDIN_BYTES {
            return Err(ModelError::invalid(
                "params",
                format!(
                    "serialize to {} bytes, more than the {MAX_STDIN_BYTES} an exec model takes",
                    input.len()
                ),
            ));
        }
        let timeout = effective_timeout(self.command.timeout);
        let mut child = Command::new(&self.command.program)
            .args(&self.command.args)
            .env_clear()
            .envs(child_env(&self.name, |name| std::env::var_os(name)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|source| ModelError::Io {
                context: format!("starting `{program}` for model `{}`", self.name),
                source,
            })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            kill_group(&mut child);
            let _ = child.wait();
            return Err(ModelError::Io {
                context: format!("starting `{program}`"),
                source: io::Error::other("the child's pipes were not created"),
            });
        };
        let deadline = Instant::now().checked_add(timeout);

        let ended = std::thread::scope(|scope| {
            let writer = scope.spawn(move || {
                let mut stdin = stdin;
                stdin.write_all(&input)
                // Dropping `stdin` closes it, so the command sees the end of its input.
            });
            let out_reader = scope.spawn(move || read_stdout(stdout));
            let err_reader = scope.spawn(move || read_stderr(stderr, progress));
            let outcome = supervise(&mut child, deadline, cancel, || {
                writer.is_finished() && out_reader.is_finished() && err_reader.is_finished()
            });
            // Every thread has finished (or the group was killed, closing the pipes), so these
            // joins do not block for long. A panicking reader is a bug in this module.
            let written = writer.join();
            let stdout = out_reader.join();
            let stderr_tail = err_reader.join();
            match (written, stdout, stderr_tail) {
                (Ok(written), Ok(stdout), Ok(stderr_tail)) => {
                    Ok((outcome, written, stdout, stderr_tail))
                }
                _ => Err(ModelError::Io {
                    context: format!("talking to `{program}`"),
                    source: io::Error::other("a pipe thread panicked"),
                }),
            }
        });
        let (outcome, written, stdout, stderr_tail) = ended?;

        let status = match outcome {
            Ended::Exited(status) => status,
            Ended::TimedOut => {
                return Err(ModelError::TimedOut { after: timeout });
            }
            Ended::Cancelled => return Err(ModelError::Cancelled),
            Ended::WaitFailed(source) => {
                return Err(ModelError::Io {
                    context: format!("waiting for `{program}`"),
                    source,
                });
            }
        };
        let fail = |what: String| {
            ModelError::Failed(format!(
                "command `{program}` {what}; stderr: {}",
                if stderr_tail.is_empty() {
                    "(empty)"
                } else {
                    &stderr_tail
                }
            ))
        };
        if !status.success() {
            return Err(fail(format!("failed ({status})")));
        }
        // The command may exit successfully without reading its input; only other write
        // errors matter.
        if let Err(error) = written
            && error.kind() != io::ErrorKind::BrokenPipe
        {
            return Err(ModelError::Io {
                context: format!("writing params to `{program}`"),
                source: error,
            });
        }
        let stdout = match stdout {
            Stdout::Complete(bytes) => bytes,
            Stdout::TooLarge(total) => {
                return Err(fail(format!(
                    "printed {total} bytes on stdout, more than the {MAX_STDOUT_BYTES} allowed"
                )));
            }
            Stdout::ReadFailed(source) => {
                return Err(ModelError::Io {
                    context: format!("reading the stdout of `{program}`"),
                    source,
                });
            }
        };
        let value: Value = serde_json::from_slice(&stdout)
            .map_err(|error| fail(format!("printed invalid JSON on stdout ({error})")))?;
        split_output(&self.name, value, stdout.len()).map_err(fail)
    }
}

/// How the supervised command ended.
enum Ended {
    Exited(ExitStatus),
    TimedOut,
    Cancelled,
    WaitFailed(io::Error),
}

/// Waits until the command has exited and `pipes_done`, killing its process group on
/// timeout or cancellation.
fn supervise(
    child: &mut Child,
    deadline: Option<Instant>,
    cancel: &CancelFlag,
    pipes_done: impl Fn() -> bool,
) -> Ended {
    let mut killed: Option<Ended> = None;
    loop {
        // The child is reaped only after its pipes are done, and we return as soon as it is:
        // until then its pid (which is also its process group id) cannot be reused, so
        // killing the group can never hit an unrelated process.
        if pipes_done() {
            match child.try_wait() {
                Ok(Some(status)) => return killed.unwrap_or(Ended::Exited(status)),
                Ok(None) => {}
                Err(error) => {
                    kill_group(child);
                    let _ = child.wait();
                    return Ended::WaitFailed(error);
                }
            }
        }
        if killed.is_none() {
            if cancel.is_cancelled() {
                kill_group(child);
                killed = Some(Ended::Cancelled);
            } else if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                kill_group(child);
                killed = Some(Ended::TimedOut);
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Kills the command and everything it started (they share its process group).
fn kill_group(child: &mut Child) {
    let pid = rustix::process::Pid::from_child(child);
    // Errors mean the group is already gone; `kill` covers a child that somehow left it.
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    let _ = child.kill();
}

/// What the command printed on stdout.
enum Stdout {
    Complete(Vec<u8>),
    /// More than [`MAX_STDOUT_BYTES`]; the total is counted, the excess discarded.
    TooLarge(u64),
    ReadFailed(io::Error),
}

/// Reads stdout to its end, keeping at most [`MAX_STDOUT_BYTES`] (the rest is drained so the
/// command is never blocked on a full pipe).
fn read_stdout(stdout: ChildStdout) -> Stdout {
    let mut bytes = Vec::new();
    let mut limited = stdout.take(MAX_STDOUT_BYTES as u64 + 1);
    if let Err(error) = limited.read_to_end(&mut bytes) {
        return Stdout::ReadFailed(error);
    }
    if bytes.len() <= MAX_STDOUT_BYTES {
        return Stdout::Complete(bytes);
    }
    match io::copy(&mut limited.into_inner(), &mut io::sink()) {
        Ok(rest) => Stdout::TooLarge(bytes.len() as u64 + rest),
        Err(error) => Stdout::ReadFailed(error),
    }
}

/// Reads stderr to its end, forwarding progress lines and returning the tail of the rest.
fn read_stderr(mut stderr: ChildStderr, progress: &dyn Progress) -> String {
    let mut tail = Tail::default();
    let mut line: Vec<u8> = Vec::new();
    // Whether the current line already overflowed `line` and went to the tail.
    let mut overflowed = false;
    let mut chunk = [0u8; 8192];
    loop {
        let read = match stderr.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        for piece in chunk[..read].split_inclusive(|&byte| byte == b'\n') {
            let complete = piece.last() == Some(&b'\n');
            if overflowed {
                tail.push(piece);
            } else {
                line.extend_from_slice(piece);
                if line.len() > MAX_PROGRESS_LINE {
                    tail.push(&line);
                    line.clear();
                    overflowed = true;
                }
            }
            if complete {
                if !overflowed {
                    finish_line(&line, progress, &mut tail);
                }
                line.clear();
                overflowed = false;
            }
        }
    }
    if !overflowed && !line.is_empty() {
        finish_line(&line, progress, &mut tail);
    }
    tail.into_string()
}

/// Forwards a complete stderr line if it is a progress line, else keeps it in the tail.
fn finish_line(line: &[u8], progress: &dyn Progress, tail: &mut Tail) {
    match parse_progress(line) {
        Some((fraction, message)) => progress.report(fraction, message),
        None => tail.push(line),
    }
}

/// Parses `progress <fraction>[ <message>]`; the fraction is clamped to `0.0..=1.0`.
fn parse_progress(line: &[u8]) -> Option<(f64, Option<&str>)> {
    let line = std::str::from_utf8(line).ok()?.trim();
    let rest = line.strip_prefix("progress ")?.trim_start();
    let (number, message) = match rest.split_once(char::is_whitespace) {
        Some((number, message)) => (number, Some(message.trim()).filter(|m| !m.is_empty())),
        None => (rest, None),
    };
    let fraction: f64 = number.parse().ok()?;
    fraction
        .is_finite()
        .then(|| (fraction.clamp(0.0, 1.0), message))
}

/// The last [`STDERR_TAIL_BYTES`] of what was pushed.
#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
    truncated: bool,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
        // Trim only once the buffer is twice the limit, so trimming costs O(1) per byte.
        if self.bytes.len() > 2 * STDERR_TAIL_BYTES {
            let excess = self.bytes.len() - STDERR_TAIL_BYTES;
            self.bytes.drain(..excess);
            self.truncated = true;
        }
    }

    fn into_string(mut self) -> String {
        if self.bytes.len() > STDERR_TAIL_BYTES {
            let excess = self.bytes.len() - STDERR_TAIL_BYTES;
            self.bytes.drain(..excess);
            self.truncated = true;
        }
        let mut start = 0;
        if self.truncated {
            // Do not start in the middle of a UTF-8 character (continuation bytes are 10xxxxxx).
            while start < self.bytes.len().min(3) && self.bytes[start] & 0xC0 == 0x80 {
                start += 1;
            }
        }
        let text = String::from_utf8_lossy(&self.bytes[start..]);
        let text = text.trim();
        if self.truncated {
            format!("…{text}")
        } else {
            text.to_owned()
        }
    }
}

/// Turns the command's JSON into a [`ModelOutput`] (see the module documentation).
fn split_output(name: &str, value: Value, stdout_bytes: usize) -> Result<ModelOutput, String> {
    match value {
        Value::Object(mut fields)
            if fields.len() == 2
                && fields.contains_key("summary")
                && fields.contains_key("result") =>
        {
            let summary = fields.remove("summary").unwrap_or_default();
            let result = fields.remove("result").unwrap_or_default();
            let summary_bytes = summary.to_string().len();
            if summary_bytes > MAX_SUMMARY_BYTES {
                return Err(format!(
                    "printed a summary of {summary_bytes} bytes, more than the \
                     {MAX_SUMMARY_BYTES} allowed; put large data in `result`"
                ));
            }
            Ok(ModelOutput { summary, result })
        }
        value => {
            let summary = json!({
                "model": name,
                "resultBytes": stdout_bytes,
                "resultType": type_name(&value),
            });
            Ok(ModelOutput {
                summary,
                result: value,
            })
        }
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_parse_with_and_without_message() {
        assert_eq!(parse_progress(b"progress 0.42\n"), Some((0.42, None)));
        assert_eq!(
            parse_progress(b"progress 1.5 loading data\n"),
            Some((1.0, Some("loading data")))
        );
        assert_eq!(parse_progress(b"progress nan"), None);
        assert_eq!(parse_progress(b"progressive 0.1"), None);
        assert_eq!(parse_progress(b"error: progress 0.1"), None);
    }

    #[test]
    fn tail_keeps_the_end_of_long_stderr() {
        let mut tail = Tail::default();
        for _ in 0..1000 {
            tail.push("é".repeat(10).as_bytes());
        }
        tail.push(b"the end\n");
        let text = tail.into_string();
        assert!(text.starts_with('…'), "{text}");
        assert!(text.ends_with("the end"), "{text}");
        assert!(text.len() <= STDERR_TAIL_BYTES + '…'.len_utf8());
        assert!(!text.contains('\u{FFFD}'), "cut inside a character: {text}");
    }

    #[test]
    fn bare_json_gets_a_digest_summary() {
        let output = split_output("fit", json!([1, 2, 3]), 7).unwrap();
        assert_eq!(
            output.summary,
            json!({ "model": "fit", "resultBytes": 7, "resultType": "array" })
        );
        assert_eq!(output.result, json!([1, 2, 3]));
    }
}
