//! Times that come from input: RFC 3339, and bounded, so that no handler's arithmetic on
//! them can overflow.
//!
//! `time` accepts `9999-12-31T23:59:59-01:00`, a valid local time whose UTC instant is in
//! year 10000, past what an `OffsetDateTime` can hold in UTC: converting it, or adding a
//! second to it, panics. Every time field of a contract therefore deserializes through
//! [`bounded`] (or [`bounded::option`]), which refuses anything outside
//! [`EARLIEST`]..[`LATEST`] with the field's name and the accepted range; what is left is
//! thousands of years away from the representable edge, so a handler may add any
//! [`MAX_ADDED`] (a day, a timeout, a TTL) without checking.

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;

/// The earliest time a contract accepts (inclusive): the Unix epoch.
pub const EARLIEST: OffsetDateTime = datetime!(1970-01-01 00:00:00 UTC);
/// The latest time a contract accepts (exclusive).
pub const LATEST: OffsetDateTime = datetime!(3000-01-01 00:00:00 UTC);
/// The most a handler adds to an accepted time (timeouts, TTLs, windows): 1,000 years, so
/// that `LATEST + MAX_ADDED` stays representable.
pub const MAX_ADDED: Duration = Duration::from_secs(1_000 * 366 * 24 * 3600);

/// Why `at` is not an accepted time, if it is not.
pub fn check(at: OffsetDateTime) -> Result<OffsetDateTime, String> {
    // Comparisons between `OffsetDateTime`s are on the instant and never overflow.
    if at < EARLIEST || at >= LATEST {
        return Err(format!(
            "{} is out of range: times must be between {} (inclusive) and {} (exclusive)",
            at.format(&Rfc3339)
                .unwrap_or_else(|_| "the time".to_string()),
            rfc3339(EARLIEST),
            rfc3339(LATEST),
        ));
    }
    Ok(at)
}

/// Serde for a bounded RFC 3339 time: `#[serde(with = "contracts::timestamp::bounded")]`.
pub mod bounded {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    pub fn serialize<S: Serializer>(at: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
        time::serde::rfc3339::serialize(at, serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<OffsetDateTime, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    /// Parses and bounds one RFC 3339 time.
    pub fn parse(text: &str) -> Result<OffsetDateTime, String> {
        if text.len() > super::MAX_TEXT_LEN {
            return Err(format!(
                "an RFC 3339 time is at most {} characters, got {}",
                super::MAX_TEXT_LEN,
                text.len()
            ));
        }
        let at = OffsetDateTime::parse(text, &Rfc3339)
            .map_err(|e| format!("must be an RFC 3339 time like 2026-03-01T10:00:00Z: {e}"))?;
        super::check(at)
    }

    /// The same for an optional field.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};
        use time::OffsetDateTime;

        pub fn serialize<S: Serializer>(
            at: &Option<OffsetDateTime>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            time::serde::rfc3339::option::serialize(at, serializer)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<OffsetDateTime>, D::Error> {
            let text = <Option<std::borrow::Cow<'de, str>>>::deserialize(deserializer)?;
            text.map(|t| super::parse(&t).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

/// The longest RFC 3339 text accepted (a time with nanoseconds and an offset is 35).
pub const MAX_TEXT_LEN: usize = 64;

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339)
        .unwrap_or_else(|_| format!("year {}", at.year()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_local_time_of_year_9999_is_refused_not_a_panic() {
        let error = bounded::parse("9999-12-31T23:59:59-01:00").unwrap_err();
        assert!(error.contains("out of range"), "{error}");
        assert!(error.contains("3000-01-01T00:00:00Z"), "{error}");
    }

    #[test]
    fn accepted_times_survive_the_largest_addition() {
        let latest = LATEST - time::Duration::NANOSECOND;
        assert_eq!(check(latest), Ok(latest));
        let added = time::Duration::try_from(MAX_ADDED).unwrap_or(time::Duration::ZERO);
        assert!(latest.checked_add(added).is_some());
        assert!(check(EARLIEST).is_ok());
        assert!(check(EARLIEST - time::Duration::SECOND).is_err());
    }

    #[test]
    fn a_job_event_from_year_9999_names_meta_occurred_at() {
        let detail = serde_json::json!({
            "jobId": "7d0c1b9e-0000-4000-8000-000000000001",
            "model": "sir",
            "params": {},
            "meta": {
                "eventId": "e1", "schemaVersion": 1, "producer": "x", "correlationId": "c",
                "occurredAt": "9999-12-31T23:59:59-01:00"
            }
        });
        let received = crate::Received {
            id: "e1",
            source: "fleet.jobs",
            time: None,
        };
        let error = crate::JobEvent::decode("JobRequested", &detail, &received)
            .expect_err("a time past the bound is refused");
        assert_eq!(error.field(), "meta.occurredAt", "{error}");
        assert!(error.to_string().contains("out of range"), "{error}");
    }

    #[test]
    fn a_schedule_in_year_9999_names_at() {
        let detail = serde_json::json!({
            "key": "k1",
            "at": "9999-12-31T23:59:59-01:00",
            "event": {"source": "a", "detailType": "B", "detail": {}}
        });
        let received = crate::Received {
            id: "e1",
            source: "fleet.schedules",
            time: None,
        };
        let error = crate::detail::decode::<crate::schedules::ScheduleRequested>(
            "ScheduleRequested",
            &detail,
            &received,
            |e| Some(e.key.clone()),
        )
        .expect_err("a time past the bound is refused");
        assert_eq!(error.field(), "at", "{error}");
    }

    proptest::proptest! {
        #[test]
        fn no_text_panics_and_accepted_times_round_trip(text in ".{0,80}") {
            if let Ok(at) = bounded::parse(&text) {
                let rendered = at.format(&Rfc3339).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
                proptest::prop_assert_eq!(bounded::parse(&rendered), Ok(at));
            }
        }

        #[test]
        fn every_offset_of_every_year_parses_or_is_refused(
            year in 0i32..=9999, month in 1u8..=12, day in 1u8..=28,
            hour in 0u8..=23, offset_hours in -23i8..=23,
        ) {
            let sign = if offset_hours < 0 { '-' } else { '+' };
            let text = format!(
                "{year:04}-{month:02}-{day:02}T{hour:02}:59:59{sign}{:02}:00",
                offset_hours.unsigned_abs()
            );
            if let Ok(at) = bounded::parse(&text) {
                proptest::prop_assert!(at.checked_to_offset(time::UtcOffset::UTC).is_some());
            }
        }
    }

    #[test]
    fn offsets_are_compared_as_instants() {
        // 2999-12-31T23:30:00-01:00 is 3000-01-01T00:30:00Z: past the bound.
        assert!(bounded::parse("2999-12-31T23:30:00-01:00").is_err());
        assert!(bounded::parse("3000-01-01T00:30:00+01:00").is_ok());
    }
}
