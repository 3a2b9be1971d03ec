//! Outbound transports, one folder per destination kind, each with its `config.rs`.
//! The registry below is the one place that knows which kinds exist.

pub mod http;

use serde_json::{Map, Value};
use switchyard_core::ValidationError;
use switchyard_core::destination::DestinationKind;

/// A kind's configuration after validation, with its secrets split out.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedConfig {
    /// What may be shown: the configuration without its secrets.
    pub config: Value,
    /// Secret values keyed by their dotted path in the configuration.
    pub secrets: Map<String, Value>,
}

/// Checks `config` against the rules of `kind` and fills in the kind's defaults. Errors name
/// fields relative to `config`.
pub fn validate_config(
    kind: DestinationKind,
    config: Value,
) -> Result<ValidatedConfig, ValidationError> {
    match kind {
        DestinationKind::Http => http::config::validate(config),
        other => Err(ValidationError::single(
            "kind",
            format!("destinations of kind {other} are not available in this release; use http"),
        )),
    }
}
