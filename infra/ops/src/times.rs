//! Times as the operations read and take them: the SDK's and SQS's timestamps, ages such
//! as `15m`, and secrets shown only by their start.

use std::time::Duration;

use time::OffsetDateTime;

/// A `since` that is neither an RFC 3339 time nor an age.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?}: give an RFC 3339 time (2026-01-31T12:00:00Z) or an age such as 90s, 15m, 2h, 3d or 1w"
)]
pub struct InvalidSince {
    /// What was given, trimmed.
    pub text: String,
}

/// Parses a `since`: an RFC 3339 time, or an age such as `90s`, `15m`, `2h`, `3d`, `1w`.
pub fn parse_since(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, InvalidSince> {
    let text = text.trim();
    if let Ok(t) = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Ok(t);
    }
    let invalid = || InvalidSince {
        text: text.to_owned(),
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(invalid)?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().map_err(|_| invalid())?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(invalid()),
    };
    let secs = n.checked_mul(unit_secs).ok_or_else(invalid)?;
    Ok(now - time::Duration::seconds(secs))
}

/// Shows the start and the length of a secret (a task token) without the secret itself.
pub fn redact(secret: &str) -> String {
    let head: String = secret.chars().take(8).collect();
    format!("{head}…({} chars)", secret.chars().count())
}

/// The SDK's timestamp as a `time` value.
pub fn from_smithy(t: &aws_smithy_types::DateTime) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(t.secs()) * 1_000_000_000 + i128::from(t.subsec_nanos()),
    )
    .ok()
}

/// An SQS epoch-milliseconds attribute (`SentTimestamp`) as a time.
pub fn from_epoch_millis(ms: &str) -> Option<OffsetDateTime> {
    let ms: i128 = ms.trim().parse().ok()?;
    OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).ok()
}

/// The time between two instants, zero when `to` is earlier.
pub fn between(from: OffsetDateTime, to: OffsetDateTime) -> Duration {
    Duration::try_from(to - from).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn redaction_keeps_only_the_start() {
        assert_eq!(
            redact("774a59e0-f515-4401-876b-def622c6b40a"),
            "774a59e0…(36 chars)"
        );
    }
}
