//! DynamoDB tables, with their global secondary indexes and TTL.

use serde_json::{Value, json};

use topology::Table;

use super::Synth;
use super::values::Kind;

impl Synth<'_> {
    pub(super) fn table(&mut self, at: usize, t: &Table) {
        let key_schema = |pk: &topology::Key, sk: Option<&topology::Key>| {
            let mut keys = vec![json!({ "AttributeName": pk.name, "KeyType": "HASH" })];
            if let Some(sk) = sk {
                keys.push(json!({ "AttributeName": sk.name, "KeyType": "RANGE" }));
            }
            Value::Array(keys)
        };
        let mut props = json!({
            "TableName": self.names.table(&t.name),
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": t.key_attributes().iter().map(|k| json!({
                "AttributeName": k.name,
                "AttributeType": k.kind.as_str(),
            })).collect::<Vec<_>>(),
            "KeySchema": key_schema(&t.partition_key, t.sort_key.as_ref()),
        });
        if !t.gsis.is_empty() {
            props["GlobalSecondaryIndexes"] = t
                .gsis
                .iter()
                .map(|g| {
                    json!({
                        "IndexName": g.name,
                        "KeySchema": key_schema(&g.partition_key, g.sort_key.as_ref()),
                        "Projection": { "ProjectionType": "ALL" },
                    })
                })
                .collect();
        }
        if let Some(ttl) = &t.ttl_attribute {
            props["TimeToLiveSpecification"] = json!({ "AttributeName": ttl, "Enabled": true });
        }
        self.stacks[at].resource(
            Kind::Table.logical_id(&t.name),
            "AWS::DynamoDB::Table",
            props,
        );
        self.exported(at, Kind::Table, &t.name);
    }
}
