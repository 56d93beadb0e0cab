//! The real bus: `PutEvents` through the official SDK.

use aws_sdk_eventbridge::error::ProvideErrorMetadata;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use contracts::Entry;

use crate::{EntryResult, EventSink, SinkError};

impl EventSink for aws_sdk_eventbridge::Client {
    async fn put_events(
        &self,
        bus: &str,
        entries: &[Entry],
    ) -> Result<Vec<EntryResult>, SinkError> {
        let request: Vec<PutEventsRequestEntry> = entries
            .iter()
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(bus)
                    .source(&e.source)
                    .detail_type(&e.detail_type)
                    .detail(&e.detail)
                    .build()
            })
            .collect();
        let output = self
            .put_events()
            .set_entries(Some(request))
            .send()
            .await
            .map_err(|e| {
                let code = e.code().unwrap_or_default().to_string();
                let retryable = !matches!(
                    code.as_str(),
                    "ValidationException"
                        | "ResourceNotFoundException"
                        | "AccessDeniedException"
                        | "UnrecognizedClientException"
                );
                SinkError {
                    message: format!(
                        "{code} {}",
                        aws_sdk_eventbridge::error::DisplayErrorContext(&e)
                    )
                    .trim()
                    .to_string(),
                    retryable,
                }
            })?;
        Ok(output
            .entries()
            .iter()
            .map(|r| match (r.event_id(), r.error_code()) {
                (Some(id), None) => EntryResult::Accepted {
                    event_id: id.to_string(),
                },
                (_, code) => EntryResult::Rejected {
                    code: code.unwrap_or("Unknown").to_string(),
                    message: r.error_message().unwrap_or_default().to_string(),
                },
            })
            .collect())
    }
}
