//! The arithmetic of `fleet cost`: a month's workload and the requests each job, callback
//! and schedule makes ([`Profile`]) in, one priced line per billing dimension, the total
//! and the always-on comparison out. Pure: no I/O, no clock.

use serde::Serialize;

use super::prices::{self, Dimension, Price};

/// Hours in the month AWS prices by (365 × 24 / 12).
pub const HOURS_PER_MONTH: f64 = 730.0;
/// Bytes in a GB as AWS bills storage and log ingestion.
pub const GB: f64 = 1024.0 * 1024.0 * 1024.0;

/// What a month asks of the fleet (the flags of `fleet cost`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    pub jobs_per_month: f64,
    /// How long the model of one job runs on a worker.
    pub job_seconds: f64,
    pub worker_vcpu: f64,
    pub worker_memory_gb: f64,
    /// `JobProgress` events a job publishes.
    pub progress_per_job: f64,
    /// WebSocket connections open on average, each connected `connected_hours` a month.
    pub subscribers: f64,
    pub connected_hours: f64,
    /// Webhook calls from external providers (`POST /callbacks/{provider}`).
    pub callbacks_per_month: f64,
    /// Delayed events (`ScheduleRequested`, each firing once).
    pub schedules_per_month: f64,
    /// How many times the mean load the busiest hour carries: the always-on fleet is sized
    /// for it.
    pub peak_factor: f64,
    /// Subtract AWS's always-free monthly allowances.
    pub free_tier: bool,
}

/// The Lambda invocations of one function in a flow.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Invocations {
    pub function: String,
    pub memory_mb: u32,
    pub count: f64,
    /// The mean billed duration of one invocation.
    pub mean_ms: f64,
}

/// The requests one occurrence of a flow makes (one job, one progress event, one
/// callback, one schedule), each in AWS's billing unit.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Requests {
    /// Entries put on the bus, in 64 KB chunks.
    pub events: f64,
    /// SQS requests, in 64 KB chunks.
    pub sqs: f64,
    pub sns: f64,
    pub transitions: f64,
    pub invocations: Vec<Invocations>,
    pub dynamodb_write_units: f64,
    pub dynamodb_read_units: f64,
    /// Bytes added to DynamoDB tables (kept a month).
    pub dynamodb_bytes: f64,
    pub s3_puts: f64,
    pub s3_gets: f64,
    /// Bytes added to S3 (kept a month).
    pub s3_bytes: f64,
    pub http_requests: f64,
    /// Frames pushed to one WebSocket connection watching the flow.
    pub frames: f64,
    /// Bytes of CloudWatch Logs written.
    pub log_bytes: f64,
}

impl Requests {
    pub fn lambda_requests(&self) -> f64 {
        self.invocations.iter().map(|i| i.count).sum()
    }

    pub fn lambda_gb_seconds(&self) -> f64 {
        self.invocations
            .iter()
            .map(|i| i.count * i.mean_ms / 1000.0 * f64::from(i.memory_mb) / 1024.0)
            .sum()
    }

    /// `self` plus `other` times `times`.
    pub fn add_scaled(&mut self, other: &Requests, times: f64) {
        self.events += other.events * times;
        self.sqs += other.sqs * times;
        self.sns += other.sns * times;
        self.transitions += other.transitions * times;
        self.dynamodb_write_units += other.dynamodb_write_units * times;
        self.dynamodb_read_units += other.dynamodb_read_units * times;
        self.dynamodb_bytes += other.dynamodb_bytes * times;
        self.s3_puts += other.s3_puts * times;
        self.s3_gets += other.s3_gets * times;
        self.s3_bytes += other.s3_bytes * times;
        self.http_requests += other.http_requests * times;
        self.frames += other.frames * times;
        self.log_bytes += other.log_bytes * times;
        for inv in &other.invocations {
            let count = inv.count * times;
            match self
                .invocations
                .iter_mut()
                .find(|i| i.function == inv.function)
            {
                // Durations weigh by count, so the GB-seconds add up.
                Some(mine) => {
                    let total = mine.count + count;
                    if total > 0.0 {
                        mine.mean_ms = (mine.mean_ms * mine.count + inv.mean_ms * count) / total;
                    }
                    mine.count = total;
                }
                None => self.invocations.push(Invocations {
                    count,
                    ..inv.clone()
                }),
            }
        }
    }
}

/// Where a profile's figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Basis {
    /// The topology's rules, targets, state machines and permissions (`derive`).
    Derived,
    /// `fleet cost --measure`: counted on the local stack.
    Measured,
}

/// What the topology makes of each flow.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub basis: Basis,
    /// One job, without its progress events.
    pub job: Requests,
    /// One `JobProgress` event.
    pub progress: Requests,
    /// Progress events already inside `job` (a measured job published some); the model
    /// adds `progress_per_job` minus these.
    pub progress_in_job: f64,
    pub callback: Requests,
    pub schedule: Requests,
    /// SQS receives a month of queues polled whether or not anything arrives (Lambda's
    /// event source mappings long-poll all the time).
    pub idle_sqs_per_month: f64,
    /// Worker tasks that run all month whatever the load (the scaling minimum).
    pub min_worker_tasks: f64,
    /// The most worker tasks the topology scales to.
    pub max_worker_tasks: f64,
}

/// One billing dimension's month.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub service: &'static str,
    pub unit: &'static str,
    pub quantity: f64,
    /// The always-free allowance subtracted (0 without `--free-tier`).
    pub free: f64,
    pub usd_per_unit: f64,
    pub usd: f64,
}

/// The same workload on workers that run all month, sized for the busiest hour.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlwaysOn {
    /// Workers busy on average: jobs × seconds ÷ seconds in the month.
    pub mean_busy_workers: f64,
    /// `ceil(mean × peak factor)`, at least 1 and at least the scaling minimum.
    pub tasks: f64,
    /// Those tasks for [`HOURS_PER_MONTH`].
    pub compute_usd: f64,
    /// What the serverless workers cost instead (the Fargate lines).
    pub serverless_compute_usd: f64,
    /// The whole bill with always-on workers instead of scaled ones.
    pub total_usd: f64,
}

/// A month's bill.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Estimate {
    pub region: &'static str,
    pub prices_read_on: String,
    pub basis: Basis,
    pub workload: Workload,
    /// Every request a month makes, by flow summed.
    pub month: Requests,
    pub lines: Vec<Line>,
    pub total_usd: f64,
    pub always_on: AlwaysOn,
}

/// Prices `workload` with `profile`.
pub fn estimate(workload: &Workload, profile: &Profile) -> Estimate {
    let w = workload;
    let mut month = Requests::default();
    month.add_scaled(&profile.job, w.jobs_per_month);
    let extra_progress = (w.progress_per_job - profile.progress_in_job).max(0.0);
    month.add_scaled(&profile.progress, w.jobs_per_month * extra_progress);
    month.add_scaled(&profile.callback, w.callbacks_per_month);
    month.add_scaled(&profile.schedule, w.schedules_per_month);
    // Each job's frames reach one connection (its owner's `user:` channel) when anyone
    // is connected at all.
    let watched = if w.subscribers > 0.0 { 1.0 } else { 0.0 };

    let busy_hours = w.jobs_per_month * w.job_seconds / 3600.0;
    let worker_hours = busy_hours + profile.min_worker_tasks * HOURS_PER_MONTH;
    let quantities = [
        (Dimension::EventBridgeEvents, month.events),
        (
            Dimension::SqsRequests,
            month.sqs + profile.idle_sqs_per_month,
        ),
        (Dimension::SnsPublishes, month.sns),
        (Dimension::StateTransitions, month.transitions),
        (Dimension::LambdaRequests, month.lambda_requests()),
        (Dimension::LambdaGbSeconds, month.lambda_gb_seconds()),
        (Dimension::DynamoDbWriteUnits, month.dynamodb_write_units),
        (Dimension::DynamoDbReadUnits, month.dynamodb_read_units),
        (Dimension::DynamoDbStorage, month.dynamodb_bytes / GB),
        (Dimension::S3Puts, month.s3_puts),
        (Dimension::S3Gets, month.s3_gets),
        (Dimension::S3Storage, month.s3_bytes / GB),
        (Dimension::HttpRequests, month.http_requests),
        (Dimension::WebSocketMessages, month.frames * watched),
        (
            Dimension::WebSocketMinutes,
            w.subscribers * w.connected_hours * 60.0,
        ),
        (Dimension::FargateVcpuHours, worker_hours * w.worker_vcpu),
        (Dimension::FargateGbHours, worker_hours * w.worker_memory_gb),
        (Dimension::LogsIngestion, month.log_bytes / GB),
        // Logs are kept a month, so a month's ingestion is what is stored.
        (Dimension::LogsStorage, month.log_bytes / GB),
    ];
    let lines: Vec<Line> = quantities
        .iter()
        .map(|&(dimension, quantity)| line(prices::price(dimension), quantity, w.free_tier))
        .collect();
    let total_usd = lines.iter().map(|l| l.usd).sum();

    let mean_busy_workers = busy_hours / HOURS_PER_MONTH;
    let tasks = (mean_busy_workers * w.peak_factor)
        .ceil()
        .max(1.0)
        .max(profile.min_worker_tasks);
    let task_hour = w.worker_vcpu * prices::price(Dimension::FargateVcpuHours).unit_usd()
        + w.worker_memory_gb * prices::price(Dimension::FargateGbHours).unit_usd();
    let compute_usd = tasks * HOURS_PER_MONTH * task_hour;
    let serverless_compute_usd: f64 = lines
        .iter()
        .filter(|l| l.service == "Fargate")
        .map(|l| l.usd)
        .sum();
    Estimate {
        region: prices::REGION,
        prices_read_on: prices::READ_ON.to_string(),
        basis: profile.basis,
        workload: w.clone(),
        month,
        lines,
        total_usd,
        always_on: AlwaysOn {
            mean_busy_workers,
            tasks,
            compute_usd,
            serverless_compute_usd,
            total_usd: total_usd - serverless_compute_usd + compute_usd,
        },
    }
}

fn line(price: &Price, quantity: f64, free_tier: bool) -> Line {
    let free = if free_tier {
        price.free_per_month.min(quantity)
    } else {
        0.0
    };
    Line {
        service: price.service,
        unit: price.unit,
        quantity,
        free,
        usd_per_unit: price.unit_usd(),
        usd: (quantity - free) * price.unit_usd(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A profile small enough to price by hand.
    fn hand_profile() -> Profile {
        let job = Requests {
            events: 3.0,
            sqs: 4.0,
            transitions: 6.0,
            invocations: vec![
                Invocations {
                    function: "api".into(),
                    memory_mb: 256,
                    count: 1.0,
                    mean_ms: 100.0,
                },
                Invocations {
                    function: "events".into(),
                    memory_mb: 512,
                    count: 2.0,
                    mean_ms: 50.0,
                },
            ],
            dynamodb_write_units: 5.0,
            dynamodb_read_units: 2.0,
            dynamodb_bytes: 1024.0,
            s3_puts: 1.0,
            s3_gets: 0.0,
            s3_bytes: 4096.0,
            http_requests: 1.0,
            frames: 2.0,
            log_bytes: 2048.0,
            ..Requests::default()
        };
        let progress = Requests {
            events: 1.0,
            frames: 1.0,
            ..Requests::default()
        };
        Profile {
            basis: Basis::Derived,
            job,
            progress,
            progress_in_job: 0.0,
            callback: Requests::default(),
            schedule: Requests::default(),
            idle_sqs_per_month: 0.0,
            min_worker_tasks: 0.0,
            max_worker_tasks: 10.0,
        }
    }

    fn hand_workload() -> Workload {
        Workload {
            jobs_per_month: 1_000_000.0,
            job_seconds: 36.0,
            worker_vcpu: 1.0,
            worker_memory_gb: 2.0,
            progress_per_job: 2.0,
            subscribers: 100.0,
            connected_hours: 10.0,
            callbacks_per_month: 0.0,
            schedules_per_month: 0.0,
            peak_factor: 3.0,
            free_tier: false,
        }
    }

    fn usd(estimate: &Estimate, service: &str, unit_starts: &str) -> f64 {
        estimate
            .lines
            .iter()
            .find(|l| l.service == service && l.unit.starts_with(unit_starts))
            .map(|l| l.usd)
            .unwrap_or_else(|| panic!("no line {service} {unit_starts}"))
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    /// A million jobs of 36 s on 1 vCPU / 2 GB, two progress events each, 100 people
    /// connected 10 h a month, priced by hand:
    #[test]
    fn a_million_jobs_cost_what_the_hand_computation_says() {
        let e = estimate(&hand_workload(), &hand_profile());
        let n = 1_000_000.0;
        // EventBridge: (3 + 2 progress × 1) events × 1e6 jobs = 5e6 events × $1/1e6 = $5.
        assert!(close(usd(&e, "EventBridge", "custom"), 5.0));
        // SQS: 4 × 1e6 = 4e6 requests × $0.40/1e6 = $1.60.
        assert!(close(usd(&e, "SQS", "standard"), 1.6));
        // Step Functions: 6 × 1e6 = 6e6 transitions × $0.025/1000 = $150.
        assert!(close(usd(&e, "Step Functions", "standard"), 150.0));
        // Lambda requests: 3 × 1e6 = 3e6 × $0.20/1e6 = $0.60.
        assert!(close(usd(&e, "Lambda", "requests"), 0.6));
        // Lambda GB-s: (0.1 s × 0.25 GB + 2 × 0.05 s × 0.5 GB) × 1e6 = 0.075 × 1e6
        // = 75,000 GB-s × $0.0000133334 = $1.000005.
        assert!(close(
            usd(&e, "Lambda", "GB-seconds"),
            75_000.0 * 0.000_013_333_4
        ));
        // DynamoDB: 5e6 WRU × $0.625/1e6 = $3.125; 2e6 RRU × $0.125/1e6 = $0.25;
        // 1 KiB × 1e6 = 1e6/1024² GB = 0.953674 GB × $0.25 = $0.238419.
        assert!(close(usd(&e, "DynamoDB", "on-demand write"), 3.125));
        assert!(close(usd(&e, "DynamoDB", "on-demand read"), 0.25));
        assert!(close(usd(&e, "DynamoDB", "GB"), 1024.0 * n / GB * 0.25));
        // S3: 1e6 PUTs × $0.005/1000 = $5; 4 KiB × 1e6 = 3.814697 GB × $0.023 = $0.087738.
        assert!(close(usd(&e, "S3", "PUT"), 5.0));
        assert!(close(usd(&e, "S3", "GB"), 4096.0 * n / GB * 0.023));
        // API Gateway: 1e6 HTTP requests × $1/1e6 = $1; frames (2 + 2 × 1) × 1e6 = 4e6
        // messages × $1/1e6 = $4; 100 × 10 h × 60 = 60,000 minutes × $0.25/1e6 = $0.015.
        assert!(close(usd(&e, "API Gateway", "HTTP"), 1.0));
        assert!(close(usd(&e, "API Gateway", "WebSocket messages"), 4.0));
        assert!(close(usd(&e, "API Gateway", "WebSocket connection"), 0.015));
        // Fargate: 1e6 × 36 s = 10,000 h; × 1 vCPU × $0.03238 = $323.80;
        // × 2 GB × $0.00356 = $71.20.
        assert!(close(usd(&e, "Fargate", "vCPU"), 323.8));
        assert!(close(usd(&e, "Fargate", "GB"), 71.2));
        // Logs: 2 KiB × 1e6 = 1.907349 GB × ($0.50 ingested + $0.03 stored).
        assert!(close(
            usd(&e, "CloudWatch Logs", "GB ingested"),
            2048.0 * n / GB * 0.5
        ));
        assert!(close(
            usd(&e, "CloudWatch Logs", "GB-months"),
            2048.0 * n / GB * 0.03
        ));
        // SNS: nothing published.
        assert!(close(usd(&e, "SNS", "standard"), 0.0));
        let by_hand = 5.0
            + 1.6
            + 150.0
            + 0.6
            + 75_000.0 * 0.000_013_333_4
            + 3.125
            + 0.25
            + 1024.0 * n / GB * 0.25
            + 5.0
            + 4096.0 * n / GB * 0.023
            + 1.0
            + 4.0
            + 0.015
            + 323.8
            + 71.2
            + 2048.0 * n / GB * 0.53;
        assert!(close(e.total_usd, by_hand), "{} != {by_hand}", e.total_usd);

        // Always on: 10,000 busy hours / 730 = 13.70 workers on average; × 3 at the peak
        // = 41.1 → 42 tasks × 730 h × ($0.03238 + 2 × $0.00356) = 42 × 730 × 0.0395
        // = $1,211.07, instead of $395 for the scaled workers.
        assert!(close(e.always_on.tasks, 42.0));
        assert!(close(e.always_on.compute_usd, 42.0 * 730.0 * 0.0395));
        assert!(close(e.always_on.serverless_compute_usd, 395.0));
        assert!(close(
            e.always_on.total_usd,
            by_hand - 395.0 + 42.0 * 730.0 * 0.0395
        ));
    }

    #[test]
    fn the_free_tier_takes_off_the_always_free_allowances_only() {
        let mut workload = hand_workload();
        workload.free_tier = true;
        let e = estimate(&workload, &hand_profile());
        // Lambda: 3e6 requests − 1e6 free = 2e6 × $0.20/1e6 = $0.40; 75,000 GB-s are
        // inside the 400,000 free.
        assert!(close(usd(&e, "Lambda", "requests"), 0.4));
        assert!(close(usd(&e, "Lambda", "GB-seconds"), 0.0));
        // Step Functions: 6e6 − 4,000 = 5,996,000 × $0.025/1000 = $149.90.
        assert!(close(usd(&e, "Step Functions", "standard"), 149.9));
        // EventBridge and Fargate have no free tier.
        assert!(close(usd(&e, "EventBridge", "custom"), 5.0));
        assert!(close(usd(&e, "Fargate", "vCPU"), 323.8));
    }

    #[test]
    fn measured_progress_is_not_counted_twice() {
        let mut profile = hand_profile();
        // The measured job already published its two progress events.
        profile.job.events += 2.0;
        profile.progress_in_job = 2.0;
        let e = estimate(&hand_workload(), &profile);
        assert!(close(usd(&e, "EventBridge", "custom"), 5.0));
    }

    #[test]
    fn durations_of_one_function_from_two_flows_weigh_by_count() {
        let mut a = Requests::default();
        let one = |count: f64, mean_ms: f64| Requests {
            invocations: vec![Invocations {
                function: "f".into(),
                memory_mb: 1024,
                count,
                mean_ms,
            }],
            ..Requests::default()
        };
        a.add_scaled(&one(1.0, 100.0), 3.0);
        a.add_scaled(&one(1.0, 500.0), 1.0);
        assert!(close(a.lambda_requests(), 4.0));
        assert!(close(a.invocations[0].mean_ms, 200.0));
        assert!(close(a.lambda_gb_seconds(), 0.8));
    }
}
