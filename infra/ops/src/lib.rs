//! The on-call tools: dead-letter queues (`fleet dlq`), state-machine runs (`fleet runs`),
//! executions waiting on a task token (`fleet tokens`) and a live view of the bus
//! (`fleet events tail`).
//!
//! Every command reads the stage's resources from [`topology::fleet`] and talks to
//! whatever endpoint the standard AWS environment names, so the same commands serve the
//! local emulator and AWS. Output is a human table by default and JSON with `--json`;
//! the `run_*` functions are what the binary calls, the other public functions return
//! data so the tests can drive them directly.

pub mod dlq;
pub mod pattern;
pub mod runs;
pub mod table;
pub mod tail;
pub mod tokens;

use std::fmt;
use std::time::Duration;

use aws_smithy_types::error::display::DisplayErrorContext;
use serde::Serialize;
use time::OffsetDateTime;
use topology::{Names, Stage, Topology};

use crate::UsageError;

pub use dlq::{DlqCommand, run_dlq};
pub use runs::{RunsCommand, run_runs};
pub use tail::{TailArgs, run_tail};
pub use tokens::{TokensCommand, run_tokens};

/// The stage's topology and one client per service the tools call.
#[derive(Debug, Clone)]
pub struct Ops {
    pub topology: Topology,
    pub names: Names,
    pub sqs: aws_sdk_sqs::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub lambda: aws_sdk_lambda::Client,
}

impl Ops {
    pub fn new(topology: Topology, sdk: &aws_config::SdkConfig) -> Ops {
        Ops {
            names: topology.names(),
            topology,
            sqs: aws_sdk_sqs::Client::new(sdk),
            sfn: aws_sdk_sfn::Client::new(sdk),
            events: aws_sdk_eventbridge::Client::new(sdk),
            lambda: aws_sdk_lambda::Client::new(sdk),
        }
    }

    /// The tools for the stage's own topology, as the binary uses them.
    pub fn for_stage(stage: &Stage, sdk: &aws_config::SdkConfig) -> Ops {
        Ops::new(topology::fleet(stage), sdk)
    }

    pub fn stage(&self) -> &Stage {
        &self.topology.stage
    }
}

/// An AWS call that failed: the operation, what it was about, and the error's chain of
/// causes (for a service error, its code and message), without the SDK's debug dump;
/// `FLEET_LOG=debug` logs that.
pub(crate) fn aws_error<E>(operation: &str, about: impl fmt::Display, error: E) -> anyhow::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    tracing::debug!(operation, error = %DisplayErrorContext(&error), "AWS call failed");
    anyhow::anyhow!("{operation} on {about} failed: {}", error_chain(&error))
}

/// An error and its sources joined by `: `, each distinct text once.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// Prints a value as pretty JSON on stdout.
pub(crate) fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// The SDK's timestamp as a `time` value.
pub(crate) fn from_smithy(t: &aws_smithy_types::DateTime) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(t.secs()) * 1_000_000_000 + i128::from(t.subsec_nanos()),
    )
    .ok()
}

/// An SQS epoch-milliseconds attribute (`SentTimestamp`) as a time.
pub(crate) fn from_epoch_millis(ms: &str) -> Option<OffsetDateTime> {
    let ms: i128 = ms.trim().parse().ok()?;
    OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).ok()
}

/// RFC 3339, whole seconds, UTC: `2026-11-22T20:50:33Z`.
pub(crate) fn human_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

pub(crate) fn human_time_opt(t: Option<OffsetDateTime>) -> String {
    t.map(human_time).unwrap_or_else(|| "-".to_owned())
}

/// A short human duration: `850ms`, `4.2s`, `3m04s`, `2h05m`, `3d04h`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    if secs < 60 {
        return format!("{:.1}s", d.as_secs_f64());
    }
    if secs < 3600 {
        return format!("{}m{:02}s", secs / 60, secs % 60);
    }
    if secs < 86_400 {
        return format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60);
    }
    format!("{}d{:02}h", secs / 86_400, (secs % 86_400) / 3600)
}

/// The time between two instants, zero when `to` is earlier.
pub(crate) fn between(from: OffsetDateTime, to: OffsetDateTime) -> Duration {
    Duration::try_from(to - from).unwrap_or_default()
}

/// Parses `--since`: an RFC 3339 time, or an age such as `90s`, `15m`, `2h`, `3d`, `1w`.
pub fn parse_since(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, UsageError> {
    let text = text.trim();
    if let Ok(t) = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Ok(t);
    }
    let usage = || {
        UsageError(format!(
            "--since {text:?}: give an RFC 3339 time (2026-01-31T12:00:00Z) or an age such as 90s, 15m, 2h, 3d or 1w"
        ))
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(usage)?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().map_err(|_| usage())?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(usage()),
    };
    let secs = n.checked_mul(unit_secs).ok_or_else(usage)?;
    Ok(now - time::Duration::seconds(secs))
}

/// Shows the start and the length of a secret (a task token) without the secret itself.
pub fn redact(secret: &str) -> String {
    let head: String = secret.chars().take(8).collect();
    format!("{head}…({} chars)", secret.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        for (d, text) in [
            (Duration::from_millis(850), "850ms"),
            (Duration::from_millis(4200), "4.2s"),
            (Duration::from_secs(184), "3m04s"),
            (Duration::from_secs(2 * 3600 + 5 * 60), "2h05m"),
            (Duration::from_secs(3 * 86_400 + 4 * 3600), "3d04h"),
        ] {
            assert_eq!(human_duration(d), text);
        }
    }

    #[test]
    fn since_takes_a_time_or_an_age() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert_eq!(
            parse_since("15m", now).unwrap(),
            now - time::Duration::minutes(15)
        );
        assert_eq!(
            parse_since("2d", now).unwrap(),
            now - time::Duration::days(2)
        );
        assert_eq!(
            parse_since("2027-01-15T08:00:00Z", now)
                .unwrap()
                .unix_timestamp(),
            1_800_000_000
        );
        for bad in ["", "15", "m", "15x", "yesterday"] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_chains_read_as_one_line() {
        #[derive(Debug, thiserror::Error)]
        #[error("service error")]
        struct Outer(#[source] Inner);
        #[derive(Debug, thiserror::Error)]
        #[error("ResourceNotFoundException: Function not found")]
        struct Inner;
        let e = aws_error("Invoke", "function f", Outer(Inner));
        assert_eq!(
            e.to_string(),
            "Invoke on function f failed: service error: ResourceNotFoundException: Function not found"
        );
    }

    #[test]
    fn redaction_keeps_only_the_start() {
        assert_eq!(
            redact("774a59e0-f515-4401-876b-def622c6b40a"),
            "774a59e0…(36 chars)"
        );
    }

    #[test]
    fn times_are_utc_to_the_second() {
        let t = from_epoch_millis("1795380634017").unwrap();
        assert_eq!(human_time(t), "2026-11-22T20:50:34Z");
    }
}
