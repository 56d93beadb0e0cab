//! A private copy of the simulation stack in the emulator: queue and DLQ, idempotency
//! table, results bucket, bus, and a one-state state machine that sends the task with
//! `sqs:sendMessage.waitForTaskToken`.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_sfn::types::ExecutionStatus;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};
use sqs_worker::QueueUrl;

pub struct Stack {
    pub sdk: aws_config::SdkConfig,
    pub sqs: aws_sdk_sqs::Client,
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
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let name = emulator::unique_name("sim");
        let dlq = sqs
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let redrive = json!({
            "deadLetterTargetArn": format!("arn:aws:sqs:{}:{}:{name}-dlq", emulator::REGION, emulator::ACCOUNT_ID),
            "maxReceiveCount": 5,
        });
        let queue = sqs
            .create_queue()
            .queue_name(&name)
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility_s.to_string(),
            )
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();

        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        dynamo
            .create_table()
            .table_name(&name)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("jobId")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("jobId")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .unwrap();

        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        );
        s3.create_bucket().bucket(&name).send().await.unwrap();
        let events = aws_sdk_eventbridge::Client::new(&sdk);
        events.create_event_bus().name(&name).send().await.unwrap();

        let definition = json!({
            "StartAt": "Run",
            "States": {
                "Run": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                    "HeartbeatSeconds": heartbeat_s,
                    "Parameters": {
                        "QueueUrl": queue,
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
        let sfn = aws_sdk_sfn::Client::new(&sdk);
        let state_machine = sfn
            .create_state_machine()
            .name(&name)
            .definition(definition.to_string())
            .role_arn(format!(
                "arn:aws:iam::{}:role/simulation-job",
                emulator::ACCOUNT_ID
            ))
            .send()
            .await
            .unwrap()
            .state_machine_arn;
        Stack {
            sdk,
            sqs,
            sfn,
            s3,
            queue: QueueUrl::parse(queue).unwrap(),
            dlq: QueueUrl::parse(dlq).unwrap(),
            table: name.clone(),
            bucket: name.clone(),
            bus: name,
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
        let deadline = Instant::now() + within;
        loop {
            let out = self
                .sfn
                .describe_execution()
                .execution_arn(execution)
                .send()
                .await
                .unwrap();
            if out.status != ExecutionStatus::Running {
                return Finished {
                    status: out.status.clone(),
                    output: out.output().and_then(|o| serde_json::from_str(o).ok()),
                    error: out.error().map(str::to_string),
                    cause: out.cause().map(str::to_string),
                };
            }
            assert!(
                Instant::now() < deadline,
                "execution still running after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
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

    /// (visible, in flight) on `url`.
    pub async fn counts(&self, url: &QueueUrl) -> (u64, u64) {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url.as_str())
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let get = |name: QueueAttributeName| {
            out.attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (
            get(QueueAttributeName::ApproximateNumberOfMessages),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }
}

/// A unique job id.
pub fn job_id() -> String {
    emulator::unique_name("job")
}

/// Waits until `condition` holds, checking every 100 ms, failing after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
