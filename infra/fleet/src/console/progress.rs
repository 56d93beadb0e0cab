//! The redrives the console runs, as the library reports them ([`fleet_ops::dlq::Progress`]):
//! how far each has got, for the page to poll while its request runs, and at most one at
//! a time per queue (two operators clicking at once would otherwise race on one queue).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

/// How far a queue's latest redrive has got.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RedriveProgress {
    /// At most this many messages will be sent.
    pub expected: u64,
    /// Sent to their destination so far.
    pub sent: u64,
    pub done: bool,
}

/// Every queue's latest redrive.
#[derive(Debug, Clone, Default)]
pub struct Redrives(Arc<Mutex<HashMap<String, RedriveProgress>>>);

impl Redrives {
    /// Claims `queue` for a redrive: `None` when one is running there already.
    pub fn begin(&self, queue: &str) -> Option<Tracker> {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if all.get(queue).is_some_and(|p| !p.done) {
            return None;
        }
        all.insert(queue.to_owned(), RedriveProgress::default());
        Some(Tracker {
            queue: queue.to_owned(),
            redrives: self.clone(),
        })
    }

    pub fn get(&self, queue: &str) -> Option<RedriveProgress> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(queue)
            .cloned()
    }

    fn update(&self, queue: &str, change: impl FnOnce(&mut RedriveProgress)) {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(progress) = all.get_mut(queue) {
            change(progress);
        }
    }
}

/// One redrive's claim on its queue; released (marked done) when dropped, so a redrive
/// that fails or whose request is dropped midway does not hold the queue.
#[derive(Debug)]
pub struct Tracker {
    queue: String,
    redrives: Redrives,
}

impl fleet_ops::dlq::Progress for Tracker {
    fn started(&self, _queue: &str, expected: u64) {
        self.redrives.update(&self.queue, |p| p.expected = expected);
    }

    fn redriven(&self) {
        self.redrives.update(&self.queue, |p| p.sent += 1);
    }

    fn finished(&self) {
        self.redrives.update(&self.queue, |p| p.done = true);
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.redrives.update(&self.queue, |p| p.done = true);
    }
}

#[cfg(test)]
mod tests {
    use fleet_ops::dlq::Progress as _;

    use super::*;

    #[test]
    fn one_redrive_at_a_time_per_queue_and_its_progress() {
        let redrives = Redrives::default();
        let tracker = redrives.begin("q").expect("the queue is free");
        assert!(redrives.begin("q").is_none(), "a second redrive of q waits");
        assert!(redrives.begin("other").is_some());
        tracker.started("q", 3);
        tracker.redriven();
        let now = redrives.get("q").expect("progress of q");
        assert_eq!((now.expected, now.sent, now.done), (3, 1, false));
        drop(tracker);
        assert!(redrives.get("q").is_some_and(|p| p.done));
        assert!(redrives.begin("q").is_some(), "free again once it ended");
    }
}
