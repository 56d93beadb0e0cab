//! The one error type of the contracts: always names the field and the fix.

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ContractError {
    /// A field is missing, has the wrong type or an invalid value.
    #[error("invalid {what}: field `{field}`: {message}")]
    Invalid {
        what: String,
        field: String,
        message: String,
    },
    /// The producer speaks a newer schema than this build understands.
    #[error(
        "unsupported {what}: field `meta.schemaVersion` is {found}, this build understands versions up to {supported}; upgrade the consumer or send version {supported}"
    )]
    UnsupportedVersion {
        what: String,
        found: u32,
        supported: u32,
    },
    #[error("unknown detail-type `{detail_type}` for source `{source_name}`; known: {known}")]
    UnknownDetailType {
        source_name: String,
        detail_type: String,
        known: String,
    },
}

impl ContractError {
    /// The field the error is about (`detail-type` for unknown types).
    pub fn field(&self) -> &str {
        match self {
            ContractError::Invalid { field, .. } => field,
            ContractError::UnsupportedVersion { .. } => "meta.schemaVersion",
            ContractError::UnknownDetailType { .. } => "detail-type",
        }
    }

    pub(crate) fn invalid(
        what: &str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ContractError::Invalid {
            what: what.to_string(),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Deserializes `T`, reporting the path of the offending field.
pub(crate) fn from_value<T: serde::de::DeserializeOwned>(
    what: &str,
    value: &serde_json::Value,
) -> Result<T, ContractError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde names a missing field only in its message; surface it as the field.
        let field = match (path.as_str(), missing_field(&inner)) {
            (".", Some(name)) => name.to_string(),
            (".", None) => "(root)".to_string(),
            (p, Some(name)) => format!("{p}.{name}"),
            (p, None) => p.to_string(),
        };
        ContractError::invalid(what, field, strip_position(&inner))
    })
}

fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}
