//! An in-memory twin of an SQS queue, for unit tests of the runtime and of handlers: leases,
//! receive counts and redrive to a dead-letter queue behave as SQS's do, on tokio's clock
//! (so tests can pause and advance time).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::config::QueueUrl;
use crate::queue::{
    EntryFailure, Queue, QueueAttributes, QueueError, ReceiptHandle, ReceivedMessage, Redrive,
};

/// A queue in memory.
#[derive(Debug)]
pub struct MemoryQueue {
    url: QueueUrl,
    visibility: Duration,
    redrive: Option<(Arc<MemoryQueue>, u32)>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    messages: Vec<Stored>,
    next: u64,
}

#[derive(Debug, Clone)]
struct Stored {
    id: String,
    body: String,
    attributes: BTreeMap<String, String>,
    receive_count: u32,
    visible_at: Instant,
    handle: Option<String>,
    first_received_at: Option<SystemTime>,
    sent_at: SystemTime,
}

/// A message as the twin holds it, for assertions.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub body: String,
    pub attributes: BTreeMap<String, String>,
    pub receive_count: u32,
    pub visible: bool,
}

impl MemoryQueue {
    pub fn new(name: &str, visibility: Duration) -> Self {
        MemoryQueue {
            url: QueueUrl::parse(format!("http://memory/000000000000/{name}"))
                .unwrap_or_else(|e| panic!("a memory queue name must be a URL path segment: {e}")),
            visibility,
            redrive: None,
            state: Mutex::new(State::default()),
        }
    }

    /// Moves a message to `dlq` on the receive after its `max_receive_count`-th, as a
    /// `RedrivePolicy` does.
    pub fn with_dead_letter(mut self, dlq: Arc<MemoryQueue>, max_receive_count: u32) -> Self {
        self.redrive = Some((dlq, max_receive_count));
        self
    }

    pub fn push(&self, body: &str) {
        self.push_with(body, BTreeMap::new());
    }

    pub fn push_with(&self, body: &str, attributes: BTreeMap<String, String>) {
        let mut state = self.lock();
        state.next += 1;
        let id = format!("m{}", state.next);
        state.messages.push(Stored {
            id,
            body: body.to_string(),
            attributes,
            receive_count: 0,
            visible_at: Instant::now(),
            handle: None,
            first_received_at: None,
            sent_at: SystemTime::now(),
        });
    }

    /// Every message still on the queue.
    pub fn messages(&self) -> Vec<StoredMessage> {
        let now = Instant::now();
        self.lock()
            .messages
            .iter()
            .map(|m| StoredMessage {
                body: m.body.clone(),
                attributes: m.attributes.clone(),
                receive_count: m.receive_count,
                visible: m.visible_at <= now,
            })
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock is a bug in the twin itself; keep going with
        // whatever state it left.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn try_receive(&self, max: usize, visibility: Duration) -> Vec<ReceivedMessage> {
        let now = Instant::now();
        let mut state = self.lock();
        let next = state.next;
        let mut out = Vec::new();
        let mut dead = Vec::new();
        let mut stamp = next;
        for (i, m) in state.messages.iter_mut().enumerate() {
            if out.len() >= max {
                break;
            }
            if m.visible_at > now {
                continue;
            }
            if let Some((_, max_receives)) = &self.redrive
                && m.receive_count >= *max_receives
            {
                dead.push(i);
                continue;
            }
            stamp += 1;
            m.receive_count += 1;
            m.visible_at = now + visibility;
            let handle = format!("{}-r{stamp}", m.id);
            m.handle = Some(handle.clone());
            let first = *m.first_received_at.get_or_insert_with(SystemTime::now);
            out.push(ReceivedMessage {
                message_id: m.id.clone(),
                receipt_handle: ReceiptHandle(handle),
                body: m.body.clone(),
                receive_count: m.receive_count,
                first_received_at: Some(first),
                sent_at: Some(m.sent_at),
                attributes: m.attributes.clone(),
            });
        }
        state.next = stamp;
        let moved: Vec<Stored> = dead
            .iter()
            .rev()
            .map(|&i| state.messages.remove(i))
            .collect();
        drop(state);
        if let Some((dlq, _)) = &self.redrive {
            for m in moved.into_iter().rev() {
                dlq.push_with(&m.body, m.attributes);
            }
        }
        out
    }

    fn apply(&self, handle: &ReceiptHandle, f: impl FnOnce(&mut Vec<Stored>, usize)) -> bool {
        let mut state = self.lock();
        match state
            .messages
            .iter()
            .position(|m| m.handle.as_deref() == Some(handle.0.as_str()))
        {
            Some(i) => {
                f(&mut state.messages, i);
                true
            }
            None => false,
        }
    }
}

fn invalid_handle(index: usize) -> EntryFailure {
    EntryFailure {
        index,
        code: "ReceiptHandleIsInvalid".to_string(),
        message: "no message has this receipt handle".to_string(),
    }
}

impl Queue for MemoryQueue {
    fn url(&self) -> &QueueUrl {
        &self.url
    }

    async fn attributes(&self) -> Result<QueueAttributes, QueueError> {
        Ok(QueueAttributes {
            visibility_timeout: self.visibility,
            redrive: self.redrive.as_ref().map(|(dlq, max)| Redrive {
                dead_letter_queue: dlq.url.clone(),
                max_receive_count: *max,
            }),
        })
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let deadline = Instant::now() + wait;
        loop {
            let got = self.try_receive(max.clamp(1, 10), visibility);
            if !got.is_empty() || Instant::now() >= deadline {
                return Ok(got);
            }
            tokio::time::sleep(Duration::from_millis(10).min(deadline - Instant::now())).await;
        }
    }

    async fn delete_batch(
        &self,
        handles: &[ReceiptHandle],
    ) -> Result<Vec<EntryFailure>, QueueError> {
        Ok(handles
            .iter()
            .enumerate()
            .filter(|(_, h)| {
                !self.apply(h, |messages, i| {
                    messages.remove(i);
                })
            })
            .map(|(i, _)| invalid_handle(i))
            .collect())
    }

    async fn change_visibility_batch(
        &self,
        entries: &[(ReceiptHandle, Duration)],
    ) -> Result<Vec<EntryFailure>, QueueError> {
        let now = Instant::now();
        Ok(entries
            .iter()
            .enumerate()
            .filter(|(_, (h, after))| {
                !self.apply(h, |messages, i| messages[i].visible_at = now + *after)
            })
            .map(|(i, _)| invalid_handle(i))
            .collect())
    }

    async fn send(
        &self,
        to: &QueueUrl,
        body: &str,
        attributes: &[(String, String)],
    ) -> Result<(), QueueError> {
        let attributes: BTreeMap<String, String> = attributes.iter().cloned().collect();
        if *to == self.url {
            self.push_with(body, attributes);
            return Ok(());
        }
        match &self.redrive {
            Some((dlq, _)) if dlq.url == *to => {
                dlq.push_with(body, attributes);
                Ok(())
            }
            _ => Err(QueueError {
                api: "SendMessage",
                queue: to.to_string(),
                code: "AWS.SimpleQueueService.NonExistentQueue".to_string(),
                message: "the memory queue knows no such queue".to_string(),
            }),
        }
    }
}
