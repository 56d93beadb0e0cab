//! The runtime's decisions as pure functions: how long a failed message waits, how many
//! messages to ask for, how far a lease may be extended.

use std::time::Duration;

use crate::config::RetryPolicy;

/// SQS's ceiling on a message's visibility timeout, and so on any delay: 12 hours.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(43_200);
/// SQS returns at most this many messages per `ReceiveMessage`, and takes at most this
/// many entries per batch call.
pub const MAX_BATCH: usize = 10;

/// The share of the visibility timeout within which a prefetched message must be expected
/// to start. A quarter leaves room for handlers slower than their average.
const PREFETCH_BUDGET: f64 = 0.25;

/// How long a message waits before its next attempt, after attempt number
/// `receive_count` (1 for the first) failed with a retryable error.
///
/// The delay is `base × 2^(receive_count − 1)`, capped at `max_delay`. With jitter it is
/// drawn from the upper half of that, `[d/2, d]`, using `sample` (uniform in `0.0..1.0`):
/// below the cap, later attempts never wait less than earlier ones, yet failures that
/// happened together spread out.
///
/// When `receive_count` has reached the queue's `maxReceiveCount`, the next receive moves
/// the message to the dead-letter queue, so there is nothing to wait for: the delay is 0.
pub fn retry_delay(
    policy: &RetryPolicy,
    receive_count: u32,
    max_receive_count: Option<u32>,
    sample: f64,
) -> Duration {
    if max_receive_count.is_some_and(|max| receive_count >= max) {
        return Duration::ZERO;
    }
    let doublings = receive_count.saturating_sub(1).min(32);
    let cap = policy.max_delay.min(MAX_VISIBILITY);
    let full = policy
        .base_delay
        .checked_mul(1u32 << doublings.min(31))
        .unwrap_or(cap)
        .min(cap);
    if policy.jitter {
        let half = full / 2;
        half + half.mul_f64(sample.clamp(0.0, 1.0))
    } else {
        full
    }
}

/// What [`receive_size`] looks at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Occupancy {
    pub concurrency: usize,
    /// Handlers running now.
    pub running: usize,
    /// Received messages not started yet.
    pub buffered: usize,
    /// The moving average of handler durations; `None` before the first handler finished.
    pub average_handler: Option<Duration>,
    pub visibility: Duration,
    pub max_prefetch: usize,
}

/// How many messages to ask for in the next `ReceiveMessage` (0: do not receive now).
///
/// A worker may hold as many messages as it has free slots. It may hold more ("prefetch")
/// only when they can be expected to start well within their lease: assuming every
/// handler, running ones included, takes the average duration `d`, the `k`-th extra message
/// starts after about `d × (1 + k / concurrency)`, and that must stay within a quarter of
/// the visibility timeout. So the extra allowance is `⌊concurrency × (V/4 / d − 1)⌋`,
/// capped at `max_prefetch`, and 0 until a first duration is known.
///
/// To keep receives full, the worker asks only once there is room for a whole batch (10,
/// or everything it may hold when that is less). No-op handlers therefore get batches of
/// 10 with up to 20 messages held (the default `max_prefetch` is 20, so a batch arrives
/// before the buffer runs dry); a handler taking a quarter of the visibility timeout or
/// more gets exactly the messages it can start.
pub fn receive_size(o: &Occupancy) -> usize {
    let free = o.concurrency.saturating_sub(o.running);
    let extra = match o.average_handler {
        None => 0,
        Some(d) if d.is_zero() => o.max_prefetch,
        Some(d) => {
            let per_slot = o.visibility.as_secs_f64() * PREFETCH_BUDGET / d.as_secs_f64() - 1.0;
            if per_slot <= 0.0 {
                0
            } else {
                let allowed = (per_slot * o.concurrency as f64).floor();
                if allowed >= o.max_prefetch as f64 {
                    o.max_prefetch
                } else {
                    allowed as usize
                }
            }
        }
    };
    let may_hold = free + extra;
    let room = may_hold.saturating_sub(o.buffered);
    if room == 0 || room < may_hold.min(MAX_BATCH) {
        0
    } else {
        room.min(MAX_BATCH)
    }
}

/// An exponentially weighted moving average of handler durations.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MovingAverage {
    seconds: Option<f64>,
}

impl MovingAverage {
    /// The weight of each new sample.
    const ALPHA: f64 = 0.2;

    pub fn record(&mut self, sample: Duration) {
        let s = sample.as_secs_f64();
        self.seconds = Some(match self.seconds {
            None => s,
            Some(avg) => avg + Self::ALPHA * (s - avg),
        });
    }

    pub fn get(&self) -> Option<Duration> {
        self.seconds.map(Duration::from_secs_f64)
    }
}

/// A duration as the whole seconds SQS takes, rounded up and capped at 12 h.
pub fn sqs_seconds(d: Duration) -> i32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(secs.min(MAX_VISIBILITY.as_secs())).unwrap_or(i32::MAX)
}

/// How long to extend a lease now: the visibility timeout, unless that would pass the
/// 12-hour ceiling measured from the first receipt, which `left` says is this far away.
/// `None` when no extension is possible any more (less than a second left).
pub fn extension(visibility: Duration, left: Duration) -> Option<Duration> {
    let whole_left = Duration::from_secs(left.as_secs());
    let next = visibility.min(whole_left);
    (next >= Duration::from_secs(1)).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: bool) -> RetryPolicy {
        RetryPolicy {
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
            jitter,
        }
    }

    #[test]
    fn retry_delays_double_then_cap() {
        let delays: Vec<u64> = (1..=8)
            .map(|n| retry_delay(&policy(false), n, None, 0.5).as_secs())
            .collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(
            retry_delay(&policy(false), 0, None, 0.5),
            Duration::from_secs(2)
        );
        assert_eq!(
            retry_delay(&policy(false), u32::MAX, None, 0.5),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn jitter_stays_in_the_upper_half_and_never_shrinks() {
        for n in 1..=6 {
            let full = retry_delay(&policy(false), n, None, 0.0);
            let low = retry_delay(&policy(true), n, None, 0.0);
            let high = retry_delay(&policy(true), n, None, 1.0);
            assert_eq!(low, full / 2);
            assert_eq!(high, full);
            // Below the cap, the next attempt never waits less than this one could.
            if retry_delay(&policy(false), n + 1, None, 0.0) == full * 2 {
                assert!(retry_delay(&policy(true), n + 1, None, 0.0) >= high);
            }
        }
    }

    #[test]
    fn the_last_attempt_goes_to_the_dead_letter_queue_without_waiting() {
        assert_eq!(retry_delay(&policy(false), 3, Some(3), 0.5), Duration::ZERO);
        assert_eq!(
            retry_delay(&policy(false), 2, Some(3), 0.5),
            Duration::from_secs(4)
        );
    }

    fn check_receive(running: usize, buffered: usize, average_ms: Option<u64>, expected: usize) {
        let o = Occupancy {
            concurrency: 2,
            running,
            buffered,
            average_handler: average_ms.map(Duration::from_millis),
            visibility: Duration::from_secs(60),
            max_prefetch: 20,
        };
        assert_eq!(receive_size(&o), expected, "{o:?}");
    }

    #[test]
    fn receive_sizes() {
        // Unknown duration: free slots only.
        check_receive(0, 0, None, 2);
        check_receive(1, 0, None, 1);
        check_receive(2, 0, None, 0);
        // No-op handlers: full batches, and only full batches.
        check_receive(0, 0, Some(0), 10);
        check_receive(2, 5, Some(1), 10);
        check_receive(2, 10, Some(1), 10);
        check_receive(2, 11, Some(1), 0);
        // 5 s handlers, 60 s lease: 15 s budget, 2 slots × (3 − 1) = 4 extra.
        check_receive(2, 0, Some(5_000), 4);
        check_receive(1, 2, Some(5_000), 0);
        // 15 s handlers: exactly the free slots.
        check_receive(1, 0, Some(15_000), 1);
        check_receive(2, 0, Some(15_000), 0);
        check_receive(0, 0, Some(600_000), 2);
    }

    #[test]
    fn moving_average_follows_samples() {
        let mut avg = MovingAverage::default();
        assert_eq!(avg.get(), None);
        avg.record(Duration::from_secs(10));
        assert_eq!(avg.get(), Some(Duration::from_secs(10)));
        for _ in 0..50 {
            avg.record(Duration::ZERO);
        }
        assert!(avg.get().is_some_and(|d| d < Duration::from_millis(1)));
    }

    #[test]
    fn sqs_seconds_round_up_and_cap() {
        assert_eq!(sqs_seconds(Duration::ZERO), 0);
        assert_eq!(sqs_seconds(Duration::from_millis(1)), 1);
        assert_eq!(sqs_seconds(Duration::from_millis(2000)), 2);
        assert_eq!(sqs_seconds(Duration::from_secs(100_000)), 43_200);
    }

    #[test]
    fn extensions_stop_at_the_twelve_hour_ceiling() {
        let v = Duration::from_secs(60);
        assert_eq!(extension(v, Duration::from_secs(3600)), Some(v));
        assert_eq!(
            extension(v, Duration::from_millis(30_500)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(extension(v, Duration::from_millis(900)), None);
    }
}
