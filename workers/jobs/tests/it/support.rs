//! Test fixtures on the shared emulator: a jobs table, a bus whose events land in a queue,
//! the simulation-job state machine, tokens, and waiting on conditions with deadlines.

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use auth::{DevIssuer, Verifier};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use contracts::{BusEvent, JobEvent};
use emulator::testing;
pub use emulator::testing::{drain, receive_one as receive, wait_for};
use jobs::{ApiDeps, Jobs};
use serde_json::{Value, json};

/// One signing key per test process (key generation is the slow part).
pub static ISSUER: LazyLock<DevIssuer> = LazyLock::new(|| match DevIssuer::generate() {
    Ok(issuer) => issuer,
    Err(e) => panic!("the dev issuer must generate a key: {e}"),
});

pub fn token(sub: &str) -> String {
    ISSUER
        .issue(sub, Duration::from_secs(600))
        .expect("the dev issuer signs")
}

pub async fn sdk() -> SdkConfig {
    emulator::test_emulator().await.sdk_config()
}

/// A fresh jobs table shaped like the topology's: `jobId`, index `byRequester`.
pub async fn jobs_table(sdk: &SdkConfig) -> String {
    let name = emulator::unique_name("jobs");
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("key schema element")
    };
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attribute definition")
    };
    aws_sdk_dynamodb::Client::new(sdk)
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("jobId", KeyType::Hash))
        .attribute_definitions(attribute("jobId"))
        .attribute_definitions(attribute("requestedBy"))
        .attribute_definitions(attribute("createdAt"))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(jobs::store::BY_REQUESTER)
                .key_schema(key("requestedBy", KeyType::Hash))
                .key_schema(key("createdAt", KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .expect("index"),
        )
        .send()
        .await
        .expect("create the jobs table");
    name
}

/// A bus whose events matching `pattern` are delivered to a queue: returns the bus name
/// and the queue URL.
pub async fn bus_captured(sdk: &SdkConfig, pattern: Value) -> (String, String) {
    let bus = testing::bus(sdk).await;
    let captured = testing::capture(sdk, &bus, &pattern).await;
    (bus, captured.url)
}

/// A bus event delivered to a capture queue, decoded as a job event.
pub fn job_event(body: &str) -> (BusEvent, JobEvent) {
    let event = BusEvent::from_json(body).expect("an EventBridge event");
    let envelope = JobEvent::decode(&event.detail_type, &event.detail, &event.received())
        .unwrap_or_else(|e| panic!("the {} detail decodes: {e}\n{body}", event.detail_type));
    (event, envelope.event)
}

pub fn definitions_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../statemachines")
}

/// The simulation-job definition as JSON, before substitution.
pub fn simulation_job_definition() -> Value {
    let path = definitions_dir().join("simulation-job.asl.json");
    let text = std::fs::read_to_string(&path).expect("read the definition");
    serde_json::from_str(&text).expect("the definition is JSON")
}

/// Fills `${Key}` placeholders the way the topology's deployment does: as the inside of
/// a JSON string.
pub fn substitute(definition: &Value, substitutions: &[(&str, &str)]) -> String {
    let mut text = definition.to_string();
    for (key, value) in substitutions {
        let escaped = Value::String((*value).to_string()).to_string();
        text = text.replace(&format!("${{{key}}}"), &escaped[1..escaped.len() - 1]);
    }
    assert!(!text.contains("${"), "a placeholder is left: {text}");
    text
}

/// The simulation-job machine deployed on the emulator with its queue and bus.
pub struct Machine {
    pub arn: String,
    pub queue_url: String,
    /// Receives the machine's JobSucceeded and JobFailed events.
    pub outcomes_url: String,
}

/// Deploys `definition` (usually [`simulation_job_definition`], perhaps tweaked).
pub async fn machine(sdk: &SdkConfig, definition: &Value) -> Machine {
    let queue_url = testing::queue(sdk, "simulation").await.url;
    let (bus, outcomes_url) = bus_captured(
        sdk,
        json!({"source": ["fleet.jobs"], "detail-type": ["JobSucceeded", "JobFailed"]}),
    )
    .await;
    let text = substitute(
        definition,
        &[("SimulationQueueUrl", &queue_url), ("EventBusName", &bus)],
    );
    let arn = testing::state_machine(sdk, "simulation-job", &text).await;
    Machine {
        arn,
        queue_url,
        outcomes_url,
    }
}

/// API dependencies on a fresh table, bus and state machine; the bus's JobRequested and
/// JobCancelled events are captured.
pub struct Api {
    pub deps: Arc<ApiDeps>,
    pub sdk: SdkConfig,
    /// Receives every JobRequested and JobCancelled the API publishes.
    pub requested_url: String,
    /// The bus the API publishes on.
    pub bus: String,
}

pub async fn api() -> Api {
    let sdk = sdk().await;
    let table = jobs_table(&sdk).await;
    let (bus, requested_url) = bus_captured(
        &sdk,
        json!({"detail-type": ["JobRequested", "JobCancelled"]}),
    )
    .await;
    let verifier = Verifier::new(ISSUER.verifier_config().expect("the dev JWKS is valid"));
    let machine = machine(&sdk, &simulation_job_definition()).await;
    let deps = ApiDeps::new(
        Jobs::new(&sdk, table),
        bus::Publisher::from_sdk(&sdk, bus.clone()),
        verifier,
        jobs::Results::new(&sdk),
        jobs::Executions::new(&sdk, machine.arn),
    );
    Api {
        deps: Arc::new(deps),
        sdk,
        requested_url,
        bus,
    }
}
