//! The checks: what the harness submitted and expects (ground truth), against what the
//! stack stored, what the bus carried and what every subscriber received. Pure functions
//! over the collected history, so each check is tested on histories that break it.

use std::collections::{BTreeMap, BTreeSet};

use contracts::frames::{Frame, kinds};
use serde::Serialize;
use serde_json::Value;

use super::subscribers::Record;

/// How a job is meant to end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "status")]
pub enum Expected {
    Succeeded,
    /// Failed with this error name, e.g. `Model.Failed`.
    Failed {
        error: String,
    },
}

/// One job the harness submitted.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Submitted {
    pub job_id: String,
    pub owner: String,
    pub model: String,
    pub expected: Expected,
    /// `http`, `http-retried` (sent twice with one `Idempotency-Key`) or `bus`.
    pub via: String,
}

/// A job's state as the jobs API reports it at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stored {
    pub status: String,
    pub error: Option<String>,
}

/// One event the bus carried (from the harness's own tail of it).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BusEvent {
    pub id: String,
    pub detail_type: String,
    pub job_id: Option<String>,
    pub detail: Value,
    /// Milliseconds from the start of the run to the tail receiving it.
    pub seen_ms: u64,
}

/// A message left in a dead-letter queue.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub queue: String,
    pub reason: String,
    pub excerpt: String,
}

/// Everything the checks look at.
#[derive(Debug, Default)]
pub struct History {
    pub submitted: Vec<Submitted>,
    /// `GET /jobs/{id}` per submitted job (absent: the API does not know it).
    pub stored: BTreeMap<String, Stored>,
    /// Every job id the owners' `GET /jobs` lists.
    pub listed: BTreeSet<String>,
    pub events: Vec<BusEvent>,
    /// The keys under `results/` in the results bucket.
    pub results: Vec<String>,
    pub dead_letters: Vec<DeadLetter>,
    pub subscribers: Vec<Record>,
    /// Per job with an execution (named after the job), how many of its hand-outs to a
    /// worker Step Functions took a successful answer for.
    pub task_answers: BTreeMap<String, usize>,
}

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Kind {
    /// The jobs API does not know a submitted job.
    Lost,
    /// A submitted job never ended.
    Stuck,
    WrongOutcome,
    /// More than one distinct `JobSucceeded`/`JobFailed` for one job.
    EndedTwice,
    /// An execution took more than one successful answer from its workers.
    AnsweredTwice,
    /// A job nobody submitted (a retried request that was not idempotent).
    DuplicateJob,
    /// A succeeded job without its result object, or an object for no succeeded job.
    ResultMismatch,
    /// A subscriber's stream skipped offsets.
    Gap,
    /// A subscriber saw one event twice in its stream, or two frames at one offset.
    Repeat,
    /// A subscriber's stream lacks a job's outcome.
    MissingFrame,
    /// A subscriber could not reach the channel's head by the end.
    Incomplete,
    UnexplainedDeadLetter,
}

/// One violation, with what shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    pub detail: String,
    /// The job's events on the bus (type, attempt, time), and frames seen, when relevant.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<String>,
}

/// The outcome event types.
const FINAL: [&str; 2] = [contracts::jobs::SUCCEEDED, contracts::jobs::FAILED];

/// Runs every check.
pub fn check(history: &History) -> Vec<Violation> {
    let mut out = Vec::new();
    jobs(history, &mut out);
    results(history, &mut out);
    streams(history, &mut out);
    dead_letters(history, &mut out);
    out.sort_by(|a, b| (a.kind, &a.job_id).cmp(&(b.kind, &b.job_id)));
    out
}

/// A job's bus history, one line per event.
fn job_history(history: &History, job_id: &str) -> Vec<String> {
    history
        .events
        .iter()
        .filter(|e| e.job_id.as_deref() == Some(job_id))
        .map(|e| {
            let attempt = e.detail["attempt"]
                .as_u64()
                .map(|a| {
                    let handout = e.detail["handout"].as_u64().unwrap_or(0);
                    format!(" handout {handout} attempt {a}")
                })
                .unwrap_or_default();
            let error = e.detail["error"]
                .as_str()
                .map(|a| format!(" {a}"))
                .unwrap_or_default();
            format!(
                "{} ms {}{attempt}{error} ({})",
                e.seen_ms, e.detail_type, e.id
            )
        })
        .collect()
}

fn jobs(history: &History, out: &mut Vec<Violation>) {
    let submitted: BTreeSet<&str> = history
        .submitted
        .iter()
        .map(|s| s.job_id.as_str())
        .collect();
    for job in &history.submitted {
        let id = job.job_id.as_str();
        let violation = |kind, detail: String| Violation {
            kind,
            job_id: Some(id.to_owned()),
            detail,
            history: job_history(history, id),
        };
        let finals: BTreeMap<&str, &BusEvent> = history
            .events
            .iter()
            .filter(|e| e.job_id.as_deref() == Some(id) && FINAL.contains(&e.detail_type.as_str()))
            .map(|e| (e.id.as_str(), e))
            .collect();
        if finals.len() > 1 {
            out.push(violation(
                Kind::EndedTwice,
                format!("{} distinct outcome events on the bus", finals.len()),
            ));
        }
        if let Some(&answers) = history.task_answers.get(id)
            && answers > 1
        {
            out.push(violation(
                Kind::AnsweredTwice,
                format!("its execution took {answers} successful task answers"),
            ));
        }
        let Some(stored) = history.stored.get(id) else {
            out.push(violation(
                Kind::Lost,
                "the jobs API does not know it".into(),
            ));
            continue;
        };
        let outcome = match stored.status.as_str() {
            "SUCCEEDED" => Expected::Succeeded,
            "FAILED" => Expected::Failed {
                error: stored.error.clone().unwrap_or_default(),
            },
            other => {
                out.push(violation(Kind::Stuck, format!("still {other} at the end")));
                continue;
            }
        };
        if outcome != job.expected {
            out.push(violation(
                Kind::WrongOutcome,
                format!("expected {:?}, ended {outcome:?}", job.expected),
            ));
        }
        if finals.is_empty() {
            out.push(violation(
                Kind::Lost,
                format!(
                    "ended {} but no outcome event reached the bus",
                    stored.status
                ),
            ));
        }
    }
    for id in history
        .listed
        .iter()
        .filter(|id| !submitted.contains(id.as_str()))
    {
        out.push(Violation {
            kind: Kind::DuplicateJob,
            job_id: Some(id.clone()),
            detail: "a job the harness never submitted (a retried request made a second job)"
                .into(),
            history: job_history(history, id),
        });
    }
}

fn results(history: &History, out: &mut Vec<Violation>) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for key in &history.results {
        let id = key
            .strip_prefix(simulation_prefix())
            .and_then(|k| k.strip_suffix(".json"))
            .unwrap_or(key);
        *counts.entry(id).or_default() += 1;
    }
    for job in &history.submitted {
        let stored_ok = history
            .stored
            .get(&job.job_id)
            .is_some_and(|s| s.status == "SUCCEEDED");
        let objects = counts.remove(job.job_id.as_str()).unwrap_or(0);
        if stored_ok && objects != 1 {
            out.push(Violation {
                kind: Kind::ResultMismatch,
                job_id: Some(job.job_id.clone()),
                detail: format!("succeeded with {objects} result objects, not 1"),
                history: job_history(history, &job.job_id),
            });
        }
    }
    for (id, objects) in counts {
        if !history.listed.contains(id) {
            out.push(Violation {
                kind: Kind::ResultMismatch,
                job_id: Some(id.to_owned()),
                detail: format!("{objects} result objects for a job nobody submitted"),
                history: Vec::new(),
            });
        }
    }
}

/// Where the worker stores results (`results/<jobId>.json`).
fn simulation_prefix() -> &'static str {
    "results/"
}

/// What identifies one event in a stream: its type, job, and for a start its hand-out
/// and attempt.
fn event_identity(frame: &Frame) -> Option<String> {
    let job = frame.data["jobId"].as_str()?;
    match frame.kind.as_str() {
        k if FINAL.contains(&k) => Some(format!("{k} {job}")),
        contracts::jobs::STARTED => Some(format!(
            "{} {job} handout {} attempt {}",
            frame.kind,
            frame.data["handout"].as_u64().unwrap_or(0),
            frame.data["attempt"]
        )),
        contracts::jobs::REQUESTED => Some(format!("{} {job}", frame.kind)),
        _ => None,
    }
}

fn streams(history: &History, out: &mut Vec<Violation>) {
    for (n, record) in history.subscribers.iter().enumerate() {
        let who = format!(
            "subscriber {n} ({:?}, {})",
            record.transport, record.channel
        );
        let violation = |kind, job_id: Option<String>, detail: String| Violation {
            kind,
            job_id,
            detail: format!("{who}: {detail}"),
            history: Vec::new(),
        };
        // Two different frames at one offset.
        let mut at: BTreeMap<u64, &Frame> = BTreeMap::new();
        // A discontinuity's offset is where the stream goes on, not a frame of its own.
        for frame in record
            .arrivals
            .iter()
            .filter(|f| f.kind != kinds::DISCONTINUITY)
        {
            match at.get(&frame.offset) {
                Some(first) if first.kind != frame.kind || first.data != frame.data => {
                    out.push(violation(
                        Kind::Repeat,
                        frame.data["jobId"].as_str().map(str::to_owned),
                        format!(
                            "offset {} arrived as {} and as {}",
                            frame.offset, first.kind, frame.kind
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    at.insert(frame.offset, frame);
                }
            }
        }
        // The stream: consecutive offsets, each event once.
        let mut expected_offset: Option<u64> = None;
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for frame in &record.stream {
            if frame.kind == kinds::DISCONTINUITY {
                out.push(violation(
                    Kind::Gap,
                    None,
                    format!("a discontinuity at offset {}", frame.offset),
                ));
                expected_offset = Some(frame.offset + 1);
                continue;
            }
            if let Some(want) = expected_offset
                && frame.offset != want
            {
                out.push(violation(
                    Kind::Gap,
                    frame.data["jobId"].as_str().map(str::to_owned),
                    format!("offset {} follows offset {}", frame.offset, want - 1),
                ));
            }
            expected_offset = Some(frame.offset + 1);
            if let Some(identity) = event_identity(frame)
                && !seen.insert(identity.clone())
            {
                out.push(violation(
                    Kind::Repeat,
                    frame.data["jobId"].as_str().map(str::to_owned),
                    format!("{identity} twice (again at offset {})", frame.offset),
                ));
            }
        }
        if record.gap_open {
            out.push(violation(
                Kind::Gap,
                None,
                format!("frames after offset {} wait on a missing one", record.since),
            ));
        }
        if let Some(why) = &record.incomplete {
            out.push(violation(Kind::Incomplete, None, why.clone()));
        }
        // Every ended job of the channel's owner (or the channel's job) has its outcome.
        let wanted: Vec<&str> = if let Some(user) = record.channel.strip_prefix("user:") {
            // The notifier learns owners from the jobs service's own events only, so a job
            // an upstream service requested on the bus reaches its `job:` channel alone.
            history
                .submitted
                .iter()
                .filter(|s| s.owner == user && s.via != "bus")
                .map(|s| s.job_id.as_str())
                .collect()
        } else if let Some(job) = record.channel.strip_prefix("job:") {
            vec![job]
        } else {
            Vec::new()
        };
        for id in wanted {
            let ended = history
                .stored
                .get(id)
                .is_some_and(|s| s.status == "SUCCEEDED" || s.status == "FAILED");
            let has_outcome = record
                .stream
                .iter()
                .any(|f| FINAL.contains(&f.kind.as_str()) && f.data["jobId"].as_str() == Some(id));
            if ended && !has_outcome && record.incomplete.is_none() {
                out.push(violation(
                    Kind::MissingFrame,
                    Some(id.to_owned()),
                    "the job ended but its outcome frame never arrived".into(),
                ));
            }
        }
        if let Some(job) = record.channel.strip_prefix("job:")
            && record.incomplete.is_none()
        {
            for (kind, events, frames) in unstreamed(history, &record.stream, job) {
                out.push(violation(
                    Kind::MissingFrame,
                    Some(job.to_owned()),
                    format!("{events} {kind} events on the bus, {frames} frames in the stream"),
                ));
            }
        }
    }
}

/// The kinds of the job's events the bus carried more of (by event id) than the job's
/// stream shows frames: an event dropped on its way to the notifier (a dead letter
/// nobody redrove, say) is missing from the stream without leaving a gap in its offsets.
fn unstreamed(history: &History, stream: &[Frame], job: &str) -> Vec<(String, usize, usize)> {
    let mut events: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in history
        .events
        .iter()
        .filter(|e| e.job_id.as_deref() == Some(job))
    {
        let id = e.detail["meta"]["eventId"].as_str().unwrap_or(&e.id);
        events.entry(e.detail_type.as_str()).or_default().insert(id);
    }
    events
        .into_iter()
        .filter_map(|(kind, ids)| {
            let frames = stream.iter().filter(|f| f.kind == kind).count();
            (frames < ids.len()).then(|| (kind.to_owned(), ids.len(), frames))
        })
        .collect()
}

fn dead_letters(history: &History, out: &mut Vec<Violation>) {
    for letter in &history.dead_letters {
        out.push(Violation {
            kind: Kind::UnexplainedDeadLetter,
            job_id: None,
            detail: format!("{}: {} ({})", letter.queue, letter.reason, letter.excerpt),
            history: Vec::new(),
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn submitted(id: &str, expected: Expected) -> Submitted {
        Submitted {
            job_id: id.into(),
            owner: "ana".into(),
            model: "spin".into(),
            expected,
            via: "http".into(),
        }
    }

    fn event(id: &str, kind: &str, job: &str) -> BusEvent {
        BusEvent {
            id: id.into(),
            detail_type: kind.into(),
            job_id: Some(job.into()),
            detail: json!({"jobId": job}),
            seen_ms: 0,
        }
    }

    fn frame(offset: u64, kind: &str, job: &str) -> Frame {
        Frame {
            channel: "user:ana".into(),
            offset,
            kind: kind.into(),
            data: json!({"jobId": job}),
            correlation_id: None,
            data_ref: None,
        }
    }

    /// One job, done right: it succeeded once, stored once, seen once.
    fn healthy() -> History {
        let stream = vec![
            frame(1, "JobRequested", "j1"),
            frame(2, "JobSucceeded", "j1"),
        ];
        History {
            submitted: vec![submitted("j1", Expected::Succeeded)],
            stored: BTreeMap::from([(
                "j1".to_owned(),
                Stored {
                    status: "SUCCEEDED".into(),
                    error: None,
                },
            )]),
            listed: BTreeSet::from(["j1".to_owned()]),
            events: vec![event("e1", "JobSucceeded", "j1")],
            results: vec!["results/j1.json".into()],
            dead_letters: Vec::new(),
            subscribers: vec![Record {
                channel: "user:ana".into(),
                arrivals: stream.clone(),
                stream,
                since: 2,
                head: 2,
                ..Record::default()
            }],
            task_answers: BTreeMap::from([("j1".to_owned(), 1)]),
        }
    }

    fn kinds_of(history: &History) -> Vec<Kind> {
        check(history).into_iter().map(|v| v.kind).collect()
    }

    #[test]
    fn a_healthy_history_passes() {
        let violations = check(&healthy());
        assert!(violations.is_empty(), "{violations:?}");
    }

    #[test]
    fn a_job_the_api_forgot_is_lost_and_one_still_running_is_stuck() {
        let mut h = healthy();
        h.stored.clear();
        assert_eq!(kinds_of(&h), [Kind::Lost]);
        let mut h = healthy();
        h.stored.insert(
            "j1".into(),
            Stored {
                status: "RUNNING".into(),
                error: None,
            },
        );
        h.results.clear();
        assert_eq!(kinds_of(&h), [Kind::Stuck]);
    }

    #[test]
    fn a_second_outcome_event_and_a_wrong_outcome_are_caught() {
        let mut h = healthy();
        h.events.push(event("e2", "JobSucceeded", "j1"));
        let violations = check(&h);
        assert_eq!(violations[0].kind, Kind::EndedTwice);
        assert_eq!(violations[0].history.len(), 2, "the history shows both");
        let mut h = healthy();
        h.submitted[0].expected = Expected::Failed {
            error: "Model.Failed".into(),
        };
        assert_eq!(kinds_of(&h), [Kind::WrongOutcome]);
    }

    #[test]
    fn a_job_nobody_submitted_is_a_duplicate_with_its_result() {
        let mut h = healthy();
        h.listed.insert("j2".into());
        h.results.push("results/j2.json".into());
        assert_eq!(kinds_of(&h), [Kind::DuplicateJob]);
        let mut h = healthy();
        h.results.push("results/zz.json".into());
        assert_eq!(kinds_of(&h), [Kind::ResultMismatch]);
        let mut h = healthy();
        h.results.clear();
        assert_eq!(kinds_of(&h), [Kind::ResultMismatch]);
    }

    #[test]
    fn gaps_repeats_and_missing_outcomes_in_a_stream_are_caught() {
        let mut h = healthy();
        h.subscribers[0].stream = vec![
            frame(1, "JobRequested", "j1"),
            frame(3, "JobSucceeded", "j1"),
        ];
        assert_eq!(kinds_of(&h), [Kind::Gap]);
        let mut h = healthy();
        h.subscribers[0].stream.push(frame(3, "JobSucceeded", "j1"));
        assert_eq!(kinds_of(&h), [Kind::Repeat]);
        let mut h = healthy();
        h.subscribers[0].arrivals.push(frame(2, "JobFailed", "j1"));
        assert_eq!(kinds_of(&h), [Kind::Repeat]);
        let mut h = healthy();
        h.subscribers[0].stream.pop();
        assert_eq!(kinds_of(&h), [Kind::MissingFrame]);
        let mut h = healthy();
        h.subscribers[0].stream.insert(
            0,
            Frame::discontinuity(
                "user:ana",
                contracts::frames::Discontinuity {
                    since: 0,
                    resume_after: 0,
                    reason: contracts::frames::DiscontinuityReason::Expired,
                },
            ),
        );
        assert!(kinds_of(&h).contains(&Kind::Gap));
    }

    #[test]
    fn a_discontinuity_at_a_frames_offset_is_a_gap_not_a_repeat() {
        let mut h = healthy();
        let discontinuity = Frame::discontinuity(
            "user:ana",
            contracts::frames::Discontinuity {
                since: 0,
                resume_after: 1,
                reason: contracts::frames::DiscontinuityReason::Expired,
            },
        );
        h.subscribers[0].arrivals.insert(0, discontinuity.clone());
        // Offset 1 was lost: the stream goes on at 2.
        h.subscribers[0].stream = vec![discontinuity, frame(2, "JobSucceeded", "j1")];
        assert_eq!(kinds_of(&h), [Kind::Gap]);
    }

    #[test]
    fn an_event_the_bus_carried_but_the_jobs_stream_lacks_is_missing() {
        let mut h = healthy();
        let mut stream = vec![
            Frame {
                channel: "job:j1".into(),
                ..frame(1, "JobRequested", "j1")
            },
            Frame {
                channel: "job:j1".into(),
                ..frame(2, "JobSucceeded", "j1")
            },
        ];
        h.subscribers[0].channel = "job:j1".into();
        h.subscribers[0].stream = stream.clone();
        h.subscribers[0].arrivals = stream.clone();
        h.events.push(event("e0", "JobRequested", "j1"));
        assert!(check(&h).is_empty(), "{:?}", check(&h));
        // A progress event the notifier never got: the offsets have no gap.
        h.events.push(event("e2", "JobProgress", "j1"));
        assert_eq!(kinds_of(&h), [Kind::MissingFrame]);
        stream.insert(
            1,
            Frame {
                channel: "job:j1".into(),
                ..frame(2, "JobProgress", "j1")
            },
        );
        stream[2].offset = 3;
        h.subscribers[0].stream = stream.clone();
        h.subscribers[0].arrivals = stream;
        h.subscribers[0].since = 3;
        h.subscribers[0].head = 3;
        assert!(check(&h).is_empty(), "{:?}", check(&h));
    }

    #[test]
    fn an_execution_that_took_two_answers_is_caught() {
        let mut h = healthy();
        h.task_answers.insert("j1".into(), 1);
        assert!(check(&h).is_empty());
        h.task_answers.insert("j1".into(), 2);
        assert_eq!(kinds_of(&h), [Kind::AnsweredTwice]);
    }

    #[test]
    fn a_start_is_a_repeat_only_within_one_hand_out() {
        let started = |offset, handout: u32, attempt: u32, worker: &str| Frame {
            data: json!({"jobId": "j1", "handout": handout, "attempt": attempt, "worker": worker}),
            ..frame(offset, "JobStarted", "j1")
        };
        let with_starts = |starts: Vec<Frame>| {
            let mut h = healthy();
            let stream = &mut h.subscribers[0].stream;
            let done = stream.pop().expect("the outcome");
            stream.extend(starts);
            stream.push(Frame {
                offset: stream.len() as u64 + 1,
                ..done
            });
            h.subscribers[0].arrivals = h.subscribers[0].stream.clone();
            h
        };
        // Step Functions handed the job out again: its new message is delivery 1 again.
        let h = with_starts(vec![started(2, 0, 1, "w1"), started(3, 1, 1, "w2")]);
        assert!(check(&h).is_empty(), "{:?}", check(&h));
        let h = with_starts(vec![started(2, 0, 1, "w1"), started(3, 0, 1, "w2")]);
        assert_eq!(kinds_of(&h), [Kind::Repeat]);
    }

    #[test]
    fn a_replayed_duplicate_of_the_same_frame_is_not_a_repeat() {
        let mut h = healthy();
        h.subscribers[0]
            .arrivals
            .push(frame(2, "JobSucceeded", "j1"));
        assert!(check(&h).is_empty());
    }

    #[test]
    fn every_dead_letter_is_reported() {
        let mut h = healthy();
        h.dead_letters.push(DeadLetter {
            queue: "q-dlq".into(),
            reason: "Runtime.ExitError".into(),
            excerpt: "{}".into(),
        });
        assert_eq!(kinds_of(&h), [Kind::UnexplainedDeadLetter]);
    }
}
