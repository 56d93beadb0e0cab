//! EventBridge event patterns, evaluated locally: which function a failed event belongs
//! to (the rules targeting functions), and `--filter` on `fleet dlq redrive`.
//!
//! The subset the fleet's rules use: exact values, `prefix`, `suffix`,
//! `equals-ignore-case`, `anything-but` (a value, a list, or a `prefix`), `exists`,
//! `numeric` ranges, nested objects and `$or`. Semantics follow EventBridge: every key
//! of the pattern must match; an array lists alternatives; an array in the event matches
//! when any of its elements does.

use serde_json::{Map, Value};

/// The longest pattern accepted, in bytes of JSON: EventBridge's own limit on a rule's
/// `EventPattern`.
pub const MAX_PATTERN_LEN: usize = 4096;

/// A validated event pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern(Map<String, Value>);

/// Why a pattern cannot be used, naming the offending path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event pattern at `{path}`: {message}")]
pub struct PatternError {
    pub path: String,
    pub message: String,
}

impl Pattern {
    /// Parses and validates a pattern given as JSON text.
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        if text.len() > MAX_PATTERN_LEN {
            return Err(error(
                "(pattern)",
                format!(
                    "a pattern is at most {MAX_PATTERN_LEN} bytes, as EventBridge's, got {}",
                    text.len()
                ),
            ));
        }
        let value: Value = serde_json::from_str(text).map_err(|e| PatternError {
            path: "(pattern)".to_owned(),
            message: format!("not JSON: {e}"),
        })?;
        Pattern::from_value(&value)
    }

    /// Validates a pattern given as a JSON value.
    pub fn from_value(value: &Value) -> Result<Pattern, PatternError> {
        let Value::Object(map) = value else {
            return Err(error("(pattern)", "a pattern is a JSON object"));
        };
        validate_object(map, "")?;
        Ok(Pattern(map.clone()))
    }

    /// Whether `event` (an event as EventBridge delivers it) matches.
    pub fn matches(&self, event: &Value) -> bool {
        match_object(&self.0, event)
    }

    /// The pattern as JSON text, e.g. for `PutRule`.
    pub fn to_json(&self) -> String {
        Value::Object(self.0.clone()).to_string()
    }
}

fn error(path: &str, message: impl Into<String>) -> PatternError {
    PatternError {
        path: if path.is_empty() {
            "(pattern)".to_owned()
        } else {
            path.to_owned()
        },
        message: message.into(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn validate_object(map: &Map<String, Value>, path: &str) -> Result<(), PatternError> {
    for (key, value) in map {
        let here = join(path, key);
        if key == "$or" {
            let Value::Array(alternatives) = value else {
                return Err(error(&here, "`$or` takes an array of patterns"));
            };
            if alternatives.is_empty() {
                return Err(error(&here, "`$or` needs at least one pattern"));
            }
            for alternative in alternatives {
                let Value::Object(inner) = alternative else {
                    return Err(error(&here, "each `$or` alternative is an object"));
                };
                validate_object(inner, path)?;
            }
            continue;
        }
        match value {
            Value::Object(inner) => validate_object(inner, &here)?,
            Value::Array(matchers) => {
                if matchers.is_empty() {
                    return Err(error(&here, "an empty array matches nothing"));
                }
                for matcher in matchers {
                    validate_matcher(matcher, &here)?;
                }
            }
            _ => {
                return Err(error(
                    &here,
                    "a leaf must be an array of values or matchers, e.g. [\"JobRequested\"] or [{\"prefix\": \"fleet.\"}]",
                ));
            }
        }
    }
    Ok(())
}

fn validate_matcher(matcher: &Value, path: &str) -> Result<(), PatternError> {
    let Value::Object(m) = matcher else {
        return Ok(());
    };
    let [(operator, operand)] = m.iter().collect::<Vec<_>>()[..] else {
        return Err(error(path, "a matcher object has exactly one operator"));
    };
    let string = |what: &str| match operand {
        Value::String(_) => Ok(()),
        _ => Err(error(path, format!("`{what}` takes a string"))),
    };
    match operator.as_str() {
        "prefix" | "suffix" | "equals-ignore-case" => string(operator),
        "exists" => match operand {
            Value::Bool(_) => Ok(()),
            _ => Err(error(path, "`exists` takes true or false")),
        },
        "anything-but" => match operand {
            Value::Array(values) if values.iter().all(is_scalar) => Ok(()),
            Value::Object(inner) => match inner.get("prefix") {
                Some(Value::String(_)) if inner.len() == 1 => Ok(()),
                _ => Err(error(
                    path,
                    "`anything-but` takes a value, a list or {\"prefix\": ...}",
                )),
            },
            v if is_scalar(v) => Ok(()),
            _ => Err(error(
                path,
                "`anything-but` takes a value, a list or {\"prefix\": ...}",
            )),
        },
        "numeric" => numeric_bounds(operand)
            .map(|_| ())
            .map_err(|m| error(path, m)),
        other => Err(error(
            path,
            format!(
                "unsupported operator `{other}` (supported: prefix, suffix, equals-ignore-case, anything-but, exists, numeric)"
            ),
        )),
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

fn match_object(pattern: &Map<String, Value>, event: &Value) -> bool {
    pattern.iter().all(|(key, expected)| {
        if key == "$or" {
            return expected.as_array().is_some_and(|alternatives| {
                alternatives
                    .iter()
                    .filter_map(Value::as_object)
                    .any(|alternative| match_object(alternative, event))
            });
        }
        let actual = event.get(key);
        match expected {
            Value::Object(inner) => actual.is_some_and(|a| match_object(inner, a)),
            Value::Array(matchers) => match_leaf(matchers, actual),
            _ => false,
        }
    })
}

fn match_leaf(matchers: &[Value], actual: Option<&Value>) -> bool {
    matchers.iter().any(|matcher| match actual {
        None => matches!(matcher, Value::Object(m) if m.get("exists") == Some(&Value::Bool(false))),
        Some(Value::Array(values)) => values.iter().any(|v| match_one(matcher, v)),
        Some(value) => match_one(matcher, value),
    })
}

fn match_one(matcher: &Value, value: &Value) -> bool {
    let Value::Object(m) = matcher else {
        return scalar_equals(matcher, value);
    };
    let Some((operator, operand)) = m.iter().next() else {
        return false;
    };
    match operator.as_str() {
        "exists" => operand == &Value::Bool(true),
        "prefix" => text(value)
            .zip(operand.as_str())
            .is_some_and(|(v, p)| v.starts_with(p)),
        "suffix" => text(value)
            .zip(operand.as_str())
            .is_some_and(|(v, s)| v.ends_with(s)),
        "equals-ignore-case" => text(value)
            .zip(operand.as_str())
            .is_some_and(|(v, s)| v.to_lowercase() == s.to_lowercase()),
        "anything-but" => match operand {
            Value::Array(excluded) => !excluded.iter().any(|e| scalar_equals(e, value)),
            Value::Object(inner) => {
                match (inner.get("prefix").and_then(Value::as_str), text(value)) {
                    (Some(prefix), Some(v)) => !v.starts_with(prefix),
                    _ => false,
                }
            }
            excluded => !scalar_equals(excluded, value),
        },
        "numeric" => match (numeric_bounds(operand), value.as_f64()) {
            (Ok(bounds), Some(n)) => bounds.iter().all(|(op, bound)| op.holds(n, *bound)),
            _ => false,
        },
        _ => false,
    }
}

fn text(value: &Value) -> Option<&str> {
    value.as_str()
}

/// Numbers compare by value (`1` matches `1.0`), everything else by equality.
fn scalar_equals(expected: &Value, actual: &Value) -> bool {
    match (expected.as_f64(), actual.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => expected == actual,
    }
}

#[derive(Debug, Clone, Copy)]
enum Comparison {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

impl Comparison {
    fn holds(self, n: f64, bound: f64) -> bool {
        match self {
            Comparison::Lt => n < bound,
            Comparison::Le => n <= bound,
            Comparison::Eq => n == bound,
            Comparison::Ge => n >= bound,
            Comparison::Gt => n > bound,
        }
    }
}

fn numeric_bounds(operand: &Value) -> Result<Vec<(Comparison, f64)>, String> {
    let usage = "`numeric` takes [op, number, ...] with op one of <, <=, =, >=, >";
    let Value::Array(items) = operand else {
        return Err(usage.to_owned());
    };
    if items.is_empty() || items.len() % 2 != 0 {
        return Err(usage.to_owned());
    }
    items
        .chunks(2)
        .map(|pair| {
            let op = match pair[0].as_str() {
                Some("<") => Comparison::Lt,
                Some("<=") => Comparison::Le,
                Some("=") => Comparison::Eq,
                Some(">=") => Comparison::Ge,
                Some(">") => Comparison::Gt,
                _ => return Err(usage.to_owned()),
            };
            let bound = pair[1].as_f64().ok_or_else(|| usage.to_owned())?;
            Ok((op, bound))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event() -> Value {
        json!({
            "id": "e-1",
            "source": "fleet.jobs",
            "detail-type": "JobRequested",
            "detail": {
                "model": "sir",
                "params": {"beta": 0.3},
                "tags": ["a", "b"],
                "count": 5,
                "meta": {"correlationId": "job-1"}
            }
        })
    }

    fn check(pattern: Value, expected: bool) {
        let parsed = Pattern::from_value(&pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
        assert_eq!(parsed.matches(&event()), expected, "pattern {pattern}");
    }

    #[test]
    fn exact_values_and_nesting() {
        check(json!({"source": ["fleet.jobs"]}), true);
        check(json!({"source": ["fleet.other", "fleet.jobs"]}), true);
        check(json!({"source": ["fleet.other"]}), false);
        check(json!({"detail": {"model": ["sir"]}}), true);
        check(json!({"detail": {"params": {"beta": [0.3]}}}), true);
        check(json!({"detail": {"count": [5.0]}}), true);
        check(json!({"detail": {"tags": ["b"]}}), true);
        check(json!({"detail": {"missing": ["x"]}}), false);
        check(
            json!({"source": ["fleet.jobs"], "detail-type": ["JobFailed"]}),
            false,
        );
    }

    #[test]
    fn operators() {
        check(json!({"source": [{"prefix": "fleet."}]}), true);
        check(json!({"source": [{"prefix": ""}]}), true);
        check(json!({"source": [{"suffix": ".jobs"}]}), true);
        check(
            json!({"detail-type": [{"equals-ignore-case": "jobrequested"}]}),
            true,
        );
        check(json!({"source": [{"anything-but": "fleet.jobs"}]}), false);
        check(json!({"source": [{"anything-but": ["x", "y"]}]}), true);
        check(
            json!({"source": [{"anything-but": {"prefix": "fleet."}}]}),
            false,
        );
        check(json!({"detail": {"model": [{"exists": true}]}}), true);
        check(json!({"detail": {"nope": [{"exists": false}]}}), true);
        check(json!({"detail": {"model": [{"exists": false}]}}), false);
        check(json!({"detail": {"nope": [{"anything-but": "x"}]}}), false);
        check(
            json!({"detail": {"count": [{"numeric": [">", 1, "<=", 5]}]}}),
            true,
        );
        check(json!({"detail": {"count": [{"numeric": ["<", 5]}]}}), false);
        check(
            json!({"$or": [{"source": ["nope"]}, {"detail-type": ["JobRequested"]}]}),
            true,
        );
    }

    #[test]
    fn invalid_patterns_name_the_path() {
        for (pattern, path) in [
            (json!(["x"]), "(pattern)"),
            (json!({"source": "fleet.jobs"}), "source"),
            (
                json!({"detail": {"model": [{"regex": "s.*"}]}}),
                "detail.model",
            ),
            (json!({"source": []}), "source"),
            (json!({"source": [{"numeric": [">"]}]}), "source"),
        ] {
            let e = Pattern::from_value(&pattern).unwrap_err();
            assert_eq!(e.path, path, "{pattern}: {e}");
        }
        assert!(Pattern::parse("{not json").is_err());
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            "[a-z.$-]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("prefix".to_owned()),
                        Just("anything-but".to_owned()),
                        Just("numeric".to_owned()),
                        Just("exists".to_owned()),
                        Just("$or".to_owned()),
                        "[a-z-]{1,6}",
                    ],
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn no_pattern_or_event_panics_and_valid_patterns_round_trip(
            pattern in json_value(),
            event in json_value(),
        ) {
            if let Ok(parsed) = Pattern::from_value(&pattern) {
                let _ = parsed.matches(&event);
                proptest::prop_assert_eq!(Pattern::parse(&parsed.to_json()), Ok(parsed));
            }
        }

        #[test]
        fn no_text_panics(text in ".{0,200}") {
            let _ = Pattern::parse(&text);
        }
    }

    #[test]
    fn a_pattern_over_eventbridges_limit_is_refused() {
        let long = format!("{{\"source\": [\"{}\"]}}", "a".repeat(MAX_PATTERN_LEN));
        let e = Pattern::parse(&long).unwrap_err();
        assert!(e.message.contains("4096"), "{e}");
    }
}
