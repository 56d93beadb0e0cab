//! A private copy of the simulation stack in the emulator: queue and DLQ, idempotency
//! table, results bucket, bus, and a one-state state machine that sends the task with
//! `sqs:sendMessage.waitForTaskToken`.

use std::time::Duration;

use aws_sdk_sfn::types::ExecutionStatus;
use emulator::testing::{self, TableKey};
use serde_json::{Value, json};
use sqs_worker::QueueUrl;

pub struct Stack {
    pub sdk: aws_config::SdkConfig,
    pub sfn: aws_sdk_sfn::Client,
    pub s3: aws_sdk_s3::Client,
    pub queue: QueueUrl,
    pub dlq: QueueUrl,
    pub table: String,
    pub bucket: String,
    pub bus: String,
    pub state_machine: String,
}

/// The outcome of an execution.
#[derive(Debug)]
pub struct Finished {
    pub status: ExecutionStatus,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
}

impl Stack {
    /// A new stack; the task state fails with `States.HeartbeatTimeout` after
    /// `heartbeat_s` without a heartbeat.
    pub async fn new(visibility_s: u32, heartbeat_s: u32) -> Stack {
        let emulator = emulator::test_emulator().await;
        let sdk = emulator.sdk_config();
        let (queue, dlq) =
            testing::queue_with_dlq(&sdk, "sim", Duration::from_secs(visibility_s.into()), 5).await;
        let name = queue.name.clone();
        let table = testing::table(&sdk, "sim", TableKey::partition("jobId")).await;

        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        );
        s3.create_bucket().bucket(&name).send().await.unwrap();
        let bus = testing::bus(&sdk).await;

        let definition = json!({
            "StartAt": "Run",
            "States": {
                "Run": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                    "HeartbeatSeconds": heartbeat_s,
                    "Parameters": {
                        "QueueUrl": queue.url,
                        "MessageBody": {
                            "taskToken.$": "$$.Task.Token",
                            "jobId.$": "$.jobId",
                            "model.$": "$.model",
                            "params.$": "$.params",
                        },
                    },
                    "End": true,
                },
            },
        });
        let state_machine = testing::state_machine(&sdk, "sim", &definition.to_string()).await;
        let sfn = aws_sdk_sfn::Client::new(&sdk);
        Stack {
            sdk,
            sfn,
            s3,
            queue: QueueUrl::parse(queue.url).unwrap(),
            dlq: QueueUrl::parse(dlq.url).unwrap(),
            table,
            bucket: name,
            bus,
            state_machine,
        }
    }

    /// A worker configuration for this stack, quick to heartbeat and to stop.
    pub fn worker_config(&self) -> simulation::WorkerConfig {
        simulation::WorkerConfig {
            table: Some(self.table.clone()),
            heartbeat_interval: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(5),
            metrics_log: None,
            ..simulation::WorkerConfig::new(
                self.sdk.clone(),
                self.queue.clone(),
                &self.bucket,
                &self.bus,
            )
        }
    }

    /// Starts an execution named after the job; returns its ARN.
    pub async fn start(&self, job_id: &str, model: &str, params: Value) -> String {
        self.sfn
            .start_execution()
            .state_machine_arn(&self.state_machine)
            .name(job_id)
            .input(json!({"jobId": job_id, "model": model, "params": params}).to_string())
            .send()
            .await
            .unwrap()
            .execution_arn
    }

    /// Waits for the execution to leave RUNNING.
    pub async fn finished(&self, execution: &str, within: Duration) -> Finished {
        testing::wait_for("the execution to leave RUNNING", within, || async {
            let out = self
                .sfn
                .describe_execution()
                .execution_arn(execution)
                .send()
                .await
                .unwrap();
            (out.status != ExecutionStatus::Running).then(|| Finished {
                status: out.status.clone(),
                output: out.output().and_then(|o| serde_json::from_str(o).ok()),
                error: out.error().map(str::to_string),
                cause: out.cause().map(str::to_string),
            })
        })
        .await
    }

    pub async fn status(&self, execution: &str) -> ExecutionStatus {
        self.sfn
            .describe_execution()
            .execution_arn(execution)
            .send()
            .await
            .unwrap()
            .status
    }

    /// The keys under `results/`.
    pub async fn result_keys(&self) -> Vec<String> {
        let out = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix("results/")
            .send()
            .await
            .unwrap();
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    }

    /// The stored object's bytes.
    pub async fn result(&self, key: &str) -> Vec<u8> {
        let object = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        object.body.collect().await.unwrap().into_bytes().to_vec()
    }

    /// Sends `body` to the task queue as it is, as a hand-written task.
    pub async fn send(&self, body: &str) {
        testing::send(&self.sdk, self.queue.as_str(), body).await;
    }

    /// Waits until no message is left on the task queue, visible or in flight.
    pub async fn settled(&self, what: &str, within: Duration) {
        testing::wait_until(what, within, || async {
            self.counts(&self.queue).await == (0, 0)
        })
        .await;
    }

    /// (visible, in flight) on `url`.
    pub async fn counts(&self, url: &QueueUrl) -> (u64, u64) {
        testing::counts(&self.sdk, url.as_str()).await
    }
}

/// A unique job id.
pub fn job_id() -> String {
    emulator::unique_name("job")
}
