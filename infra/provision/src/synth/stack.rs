//! A template under construction: its resources, outputs and the parameters they use.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use topology::{Names, TokenSetting};

use super::{
    PARAM_ARTIFACT_BUCKET, PARAM_ARTIFACT_PREFIX, PARAM_ASSIGN_PUBLIC_IP, PARAM_SUBNETS, PARAM_VPC,
    PARAM_WORKER_IMAGE, SynthError, Template,
};

/// A template under construction.
pub(super) struct Stack {
    pub(super) name: String,
    pub(super) description: String,
    pub(super) resources: Map<String, Value>,
    pub(super) outputs: Map<String, Value>,
    pub(super) uses_artifacts: bool,
    pub(super) uses_workers: bool,
    /// A function reads the identity provider's settings
    /// ([`ValueRef::Token`](topology::ValueRef::Token)).
    pub(super) uses_tokens: bool,
    /// The deployment's other settings its functions read
    /// ([`ValueRef::Setting`](topology::ValueRef::Setting)).
    pub(super) settings: BTreeMap<&'static str, &'static str>,
    pub(super) duplicate: Option<String>,
}

impl Stack {
    pub(super) fn new(name: String, names: &Names, service: &str) -> Self {
        Stack {
            name,
            description: format!("fleet {}: the {service} service", names.stage()),
            resources: Map::new(),
            outputs: Map::new(),
            uses_artifacts: false,
            uses_workers: false,
            uses_tokens: false,
            settings: BTreeMap::new(),
            duplicate: None,
        }
    }

    pub(super) fn has(&self, id: &str) -> bool {
        self.resources.contains_key(id)
    }

    pub(super) fn resource(&mut self, id: String, ty: &str, properties: Value) {
        if self.has(&id) {
            self.duplicate.get_or_insert(id.clone());
        }
        self.resources
            .insert(id, json!({ "Type": ty, "Properties": properties }));
    }

    pub(super) fn export(&mut self, key: String, value: Value) {
        let export = format!("{}:{key}", self.name);
        self.outputs
            .insert(key, json!({ "Value": value, "Export": { "Name": export } }));
    }

    pub(super) fn finish(self) -> Result<Template, SynthError> {
        if let Some(id) = self.duplicate {
            return Err(SynthError::DuplicateLogicalId {
                stack: self.name,
                id,
            });
        }
        let mut parameters = Map::new();
        if self.uses_artifacts {
            parameters.insert(
                PARAM_ARTIFACT_BUCKET.into(),
                json!({ "Type": "String", "Description": "The S3 bucket holding the Lambda artifacts." }),
            );
            parameters.insert(
                PARAM_ARTIFACT_PREFIX.into(),
                json!({ "Type": "String", "Description": "The key prefix of this build's artifacts: each function's code is <prefix>/<function>.zip." }),
            );
        }
        if self.uses_workers {
            parameters.insert(
                PARAM_WORKER_IMAGE.into(),
                json!({ "Type": "String", "Description": "The worker's container image (linux/arm64)." }),
            );
            parameters.insert(
                PARAM_VPC.into(),
                json!({ "Type": "AWS::EC2::VPC::Id", "Description": "The VPC the workers run in." }),
            );
            parameters.insert(
                PARAM_SUBNETS.into(),
                json!({ "Type": "List<AWS::EC2::Subnet::Id>", "Description": "The subnets the workers run in; they need a route to AWS APIs." }),
            );
            parameters.insert(
                PARAM_ASSIGN_PUBLIC_IP.into(),
                json!({
                    "Type": "String",
                    "AllowedValues": ["ENABLED", "DISABLED"],
                    "Default": "ENABLED",
                    "Description": "ENABLED for public subnets without a NAT gateway.",
                }),
            );
        }
        for (parameter, description) in &self.settings {
            parameters.insert(
                (*parameter).into(),
                json!({ "Type": "String", "MinLength": 1, "Description": description }),
            );
        }
        if self.uses_tokens {
            for setting in TokenSetting::ALL {
                parameters.insert(
                    setting.parameter().into(),
                    json!({ "Type": "String", "MinLength": 1, "Description": setting.description() }),
                );
            }
        }
        let mut body = json!({
            "AWSTemplateFormatVersion": "2010-09-09",
            "Description": self.description,
            "Resources": self.resources,
        });
        if !parameters.is_empty() {
            body["Parameters"] = parameters.into();
        }
        if !self.outputs.is_empty() {
            body["Outputs"] = self.outputs.into();
        }
        Ok(Template {
            stack_name: self.name,
            body,
        })
    }
}
