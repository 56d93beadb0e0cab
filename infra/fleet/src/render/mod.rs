//! How the CLI shows data: human tables and times, or pretty JSON with `--json`.

pub mod table;

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

pub use table::{Table, cut};

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// RFC 3339, whole seconds, UTC: `2026-11-22T20:50:33Z`.
pub fn human_time(t: OffsetDateTime) -> String {
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

pub fn human_time_opt(t: Option<OffsetDateTime>) -> String {
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
    fn times_are_utc_to_the_second() {
        let t = fleet_ops::times::from_epoch_millis("1795380634017").unwrap();
        assert_eq!(human_time(t), "2026-11-22T20:50:34Z");
    }
}
