//! DynamoDB tables: created with their keys and indexes; on later runs given the indexes
//! they lack and the wanted TTL. A key schema cannot change in place.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types as ddb;
use aws_smithy_types::error::operation::BuildError;

use topology::{Key, ResourceKind, Table};

use super::{DeployError, Deployer, NOT_FOUND, Outcome, is_not_found, sdk_error};

/// How long to wait for a resource to become usable (a DynamoDB table to turn ACTIVE).
const READY_DEADLINE: Duration = Duration::from_secs(300);

/// A global secondary index: its name and key schema.
type Index = (String, Vec<ddb::KeySchemaElement>);

impl Deployer<'_> {
    pub(super) async fn table(&mut self, t: &Table) -> Result<(), DeployError> {
        let kind = ResourceKind::Table;
        let physical = self.names.table(&t.name);
        let build = build_error(&physical);
        let attributes = t
            .key_attributes()
            .into_iter()
            .map(|k| {
                ddb::AttributeDefinition::builder()
                    .attribute_name(&k.name)
                    .attribute_type(ddb::ScalarAttributeType::from(k.kind.as_str()))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(build)?;
        let mut gsis = Vec::new();
        for g in &t.gsis {
            gsis.push((
                g.name.clone(),
                key_schema(&g.partition_key, g.sort_key.as_ref()).map_err(build)?,
            ));
        }
        let projection = ddb::Projection::builder()
            .projection_type(ddb::ProjectionType::All)
            .build();

        let mut outcome = match self
            .dynamodb
            .describe_table()
            .table_name(&physical)
            .send()
            .await
        {
            Ok(out) => {
                let have = out.table();
                check_key_schema(&physical, have, t)?;
                self.add_missing_indexes(&physical, have, &gsis, &attributes, &projection)
                    .await?
            }
            Err(e) if is_not_found(&e, NOT_FOUND) => {
                self.create_table(&physical, t, attributes, gsis, &projection)
                    .await?;
                Outcome::Created
            }
            Err(e) => return Err(sdk_error(kind, &physical, "DescribeTable")(e)),
        };
        let arn = self.wait_for_table(&physical).await?;
        if self.align_ttl(&physical, t).await? && outcome == Outcome::Unchanged {
            outcome = Outcome::Updated;
        }
        self.record(kind, &t.name, &physical, Some(arn), None, outcome);
        Ok(())
    }

    /// Adds the indexes the table lacks: `Updated` if it added any.
    async fn add_missing_indexes(
        &self,
        physical: &str,
        have: Option<&ddb::TableDescription>,
        gsis: &[Index],
        attributes: &[ddb::AttributeDefinition],
        projection: &ddb::Projection,
    ) -> Result<Outcome, DeployError> {
        let kind = ResourceKind::Table;
        let build = build_error(physical);
        let have_gsis: Vec<String> = have
            .map(|t| t.global_secondary_indexes())
            .unwrap_or_default()
            .iter()
            .filter_map(|g| g.index_name().map(str::to_owned))
            .collect();
        let mut outcome = Outcome::Unchanged;
        // DynamoDB adds one index per update, each after the table is ACTIVE again.
        for (name, keys) in gsis.iter().filter(|(n, _)| !have_gsis.contains(n)) {
            let create = ddb::CreateGlobalSecondaryIndexAction::builder()
                .index_name(name)
                .set_key_schema(Some(keys.clone()))
                .projection(projection.clone())
                .build()
                .map_err(build)?;
            self.dynamodb
                .update_table()
                .table_name(physical)
                .set_attribute_definitions(Some(attributes.to_vec()))
                .global_secondary_index_updates(
                    ddb::GlobalSecondaryIndexUpdate::builder()
                        .create(create)
                        .build(),
                )
                .send()
                .await
                .map_err(sdk_error(kind, physical, "UpdateTable"))?;
            self.wait_for_table(physical).await?;
            outcome = Outcome::Updated;
        }
        Ok(outcome)
    }

    async fn create_table(
        &self,
        physical: &str,
        t: &Table,
        attributes: Vec<ddb::AttributeDefinition>,
        gsis: Vec<Index>,
        projection: &ddb::Projection,
    ) -> Result<(), DeployError> {
        let kind = ResourceKind::Table;
        let build = build_error(physical);
        let gsis = gsis
            .into_iter()
            .map(|(name, keys)| {
                ddb::GlobalSecondaryIndex::builder()
                    .index_name(name)
                    .set_key_schema(Some(keys))
                    .projection(projection.clone())
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(build)?;
        self.dynamodb
            .create_table()
            .table_name(physical)
            .billing_mode(ddb::BillingMode::PayPerRequest)
            .set_attribute_definitions(Some(attributes))
            .set_key_schema(Some(
                key_schema(&t.partition_key, t.sort_key.as_ref()).map_err(build)?,
            ))
            .set_global_secondary_indexes((!gsis.is_empty()).then_some(gsis))
            .send()
            .await
            .map_err(sdk_error(kind, physical, "CreateTable"))?;
        Ok(())
    }

    /// Turns TTL on for the topology's attribute, or off when it names none; whether it
    /// changed anything.
    async fn align_ttl(&self, physical: &str, t: &Table) -> Result<bool, DeployError> {
        let kind = ResourceKind::Table;
        let build = build_error(physical);
        let ttl = self
            .dynamodb
            .describe_time_to_live()
            .table_name(physical)
            .send()
            .await
            .map_err(sdk_error(kind, physical, "DescribeTimeToLive"))?;
        let ttl = ttl.time_to_live_description();
        let enabled = ttl.and_then(|d| d.time_to_live_status()).is_some_and(|s| {
            matches!(
                s,
                ddb::TimeToLiveStatus::Enabled | ddb::TimeToLiveStatus::Enabling
            )
        });
        let have_attribute = ttl.and_then(|d| d.attribute_name()).filter(|_| enabled);
        let change = match (&t.ttl_attribute, have_attribute) {
            (Some(want), Some(have)) if want == have => None,
            (Some(want), _) => Some((want.clone(), true)),
            (None, Some(have)) => Some((have.to_owned(), false)),
            (None, None) => None,
        };
        let Some((attribute, enabled)) = change else {
            return Ok(false);
        };
        let spec = ddb::TimeToLiveSpecification::builder()
            .attribute_name(attribute)
            .enabled(enabled)
            .build()
            .map_err(build)?;
        self.dynamodb
            .update_time_to_live()
            .table_name(physical)
            .time_to_live_specification(spec)
            .send()
            .await
            .map_err(sdk_error(kind, physical, "UpdateTimeToLive"))?;
        Ok(true)
    }

    /// Waits until the table is ACTIVE and returns its ARN.
    async fn wait_for_table(&self, physical: &str) -> Result<String, DeployError> {
        let kind = ResourceKind::Table;
        let start = Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            let out = self
                .dynamodb
                .describe_table()
                .table_name(physical)
                .send()
                .await
                .map_err(sdk_error(kind, physical, "DescribeTable"))?;
            let table = out.table();
            let active = table.and_then(|t| t.table_status()) == Some(&ddb::TableStatus::Active);
            let indexes_active = table
                .map(|t| t.global_secondary_indexes())
                .unwrap_or_default()
                .iter()
                .all(|g| {
                    g.index_status()
                        .is_none_or(|s| *s == ddb::IndexStatus::Active)
                });
            if active && indexes_active {
                return Ok(table
                    .and_then(|t| t.table_arn())
                    .unwrap_or_default()
                    .to_owned());
            }
            if start.elapsed() > READY_DEADLINE {
                return Err(DeployError::Timeout {
                    kind,
                    name: physical.to_owned(),
                    condition: "ACTIVE",
                    waited: start.elapsed(),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }
}

/// The table's key schema must be the topology's: keys cannot change in place.
fn check_key_schema(
    physical: &str,
    have: Option<&ddb::TableDescription>,
    t: &Table,
) -> Result<(), DeployError> {
    let kind = ResourceKind::Table;
    let build = build_error(physical);
    let have_keys: Vec<(String, String)> = have
        .map(|t| t.key_schema())
        .unwrap_or_default()
        .iter()
        .map(|k| {
            (
                k.attribute_name().to_owned(),
                k.key_type().as_str().to_owned(),
            )
        })
        .collect();
    let want_keys: Vec<(String, String)> = key_schema(&t.partition_key, t.sort_key.as_ref())
        .map_err(build)?
        .iter()
        .map(|k| {
            (
                k.attribute_name().to_owned(),
                k.key_type().as_str().to_owned(),
            )
        })
        .collect();
    if have_keys != want_keys {
        return Err(DeployError::Conflict {
            kind,
            name: physical.to_owned(),
            reason: format!(
                "exists with key schema {have_keys:?}, not {want_keys:?}; a key change needs a new table"
            ),
        });
    }
    Ok(())
}

fn key_schema(pk: &Key, sk: Option<&Key>) -> Result<Vec<ddb::KeySchemaElement>, BuildError> {
    let mut keys = vec![(pk.name.clone(), ddb::KeyType::Hash)];
    if let Some(sk) = sk {
        keys.push((sk.name.clone(), ddb::KeyType::Range));
    }
    keys.into_iter()
        .map(|(name, key_type)| {
            ddb::KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
        })
        .collect::<Result<Vec<_>, _>>()
}

/// Turns a request that could not be built into a [`DeployError::Sdk`] naming the table.
fn build_error(physical: &str) -> impl Fn(BuildError) -> DeployError + Copy {
    move |e| DeployError::Sdk {
        kind: ResourceKind::Table,
        name: physical.to_owned(),
        operation: "build request",
        detail: e.to_string(),
    }
}
