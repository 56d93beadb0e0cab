//! Publisher behaviour against a scripted bus.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use contracts::Entry;

use super::*;

/// A bus that answers per entry from a script: `rule(detail, attempt)` where attempt
/// counts calls that carried that entry, starting at 1.
struct ScriptedBus<F> {
    rule: F,
    calls: Mutex<Vec<Vec<String>>>,
    attempts: Mutex<HashMap<String, usize>>,
}

impl<F> ScriptedBus<F>
where
    F: Fn(&str, usize) -> EntryResult + Send + Sync,
{
    fn new(rule: F) -> Self {
        ScriptedBus {
            rule,
            calls: Mutex::new(Vec::new()),
            attempts: Mutex::new(HashMap::new()),
        }
    }
    fn calls(&self) -> Vec<Vec<String>> {
        self.calls.lock().unwrap().clone()
    }
}

impl<F> EventSink for &ScriptedBus<F>
where
    F: Fn(&str, usize) -> EntryResult + Send + Sync,
{
    async fn put_events(
        &self,
        _bus: &str,
        entries: &[Entry],
    ) -> Result<Vec<EntryResult>, SinkError> {
        self.calls
            .lock()
            .unwrap()
            .push(entries.iter().map(|e| e.detail.clone()).collect());
        let mut attempts = self.attempts.lock().unwrap();
        Ok(entries
            .iter()
            .map(|e| {
                let n = attempts.entry(e.detail.clone()).or_default();
                *n += 1;
                (self.rule)(&e.detail, *n)
            })
            .collect())
    }
}

fn entry(i: usize) -> Entry {
    Entry::new("fleet.test", "Tested", &serde_json::json!({ "i": i })).unwrap()
}

fn accepted(detail: &str) -> EntryResult {
    EntryResult::Accepted {
        event_id: format!("id-{detail}"),
    }
}

fn fast() -> Config {
    Config {
        max_attempts: 3,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
    }
}

#[tokio::test]
async fn packs_at_most_ten_entries_per_call_in_order() {
    let bus = ScriptedBus::new(|d, _| accepted(d));
    let publisher = Publisher::new(&bus, "b", fast());
    let outcome = publisher.put((0..25).map(entry).collect()).await;
    assert!(outcome.failed.is_empty());
    let sizes: Vec<usize> = bus.calls().iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![10, 10, 5]);
    assert_eq!(outcome.event_ids[24].as_deref(), Some(r#"id-{"i":24}"#));
}

#[tokio::test]
async fn packs_calls_within_the_size_limit() {
    let bus = ScriptedBus::new(|d, _| accepted(d));
    let publisher = Publisher::new(&bus, "b", fast());
    let big = "x".repeat(100 * 1024);
    let entries = (0..5)
        .map(|i| Entry::new("s", "t", &serde_json::json!({"i": i, "pad": big})).unwrap())
        .collect();
    let outcome = publisher.put(entries).await;
    assert!(outcome.failed.is_empty());
    let sizes: Vec<usize> = bus.calls().iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![2, 2, 1]);
}

#[tokio::test]
async fn retries_only_the_entries_that_failed() {
    let bus = ScriptedBus::new(|d, attempt| {
        if d.contains("\"i\":3") && attempt == 1 {
            EntryResult::Rejected {
                code: "ThrottlingException".into(),
                message: "slow down".into(),
            }
        } else {
            accepted(d)
        }
    });
    let publisher = Publisher::new(&bus, "b", fast());
    let outcome = publisher.put((0..5).map(entry).collect()).await;
    assert!(outcome.failed.is_empty());
    assert!(outcome.event_ids.iter().all(Option::is_some));
    let calls = bus.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1], vec![r#"{"i":3}"#.to_string()]);
}

#[tokio::test]
async fn gives_up_after_max_attempts_and_returns_the_entry() {
    let bus = ScriptedBus::new(|_, _| EntryResult::Rejected {
        code: "InternalFailure".into(),
        message: "boom".into(),
    });
    let publisher = Publisher::new(&bus, "b", fast());
    let outcome = publisher.put(vec![entry(7)]).await;
    assert_eq!(bus.calls().len(), 3);
    assert_eq!(outcome.failed.len(), 1);
    assert_eq!(outcome.failed[0].entry, entry(7));
    assert_eq!(outcome.failed[0].code, "InternalFailure");
}

#[tokio::test]
async fn does_not_retry_entries_the_bus_refuses_for_good() {
    let bus = ScriptedBus::new(|_, _| EntryResult::Rejected {
        code: "MalformedDetail".into(),
        message: "bad".into(),
    });
    let publisher = Publisher::new(&bus, "b", fast());
    let err = publisher.put_one(entry(1)).await.unwrap_err();
    assert_eq!(bus.calls().len(), 1);
    assert!(err.to_string().contains("MalformedDetail"), "{err}");
}

#[tokio::test]
async fn refuses_an_oversized_entry_without_calling_the_bus() {
    let bus = ScriptedBus::new(|d, _| accepted(d));
    let publisher = Publisher::new(&bus, "b", fast());
    let huge = Entry::new(
        "s",
        "t",
        &serde_json::json!({"pad": "x".repeat(300 * 1024)}),
    )
    .unwrap();
    let outcome = publisher.put(vec![huge, entry(1)]).await;
    assert_eq!(outcome.failed.len(), 1);
    assert_eq!(outcome.failed[0].code, "EntryTooLarge");
    assert!(outcome.event_ids[1].is_some());
    assert_eq!(bus.calls().len(), 1);
}
