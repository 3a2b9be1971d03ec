//! Reading a destination's configuration as a client wrote it, and splitting it for storage:
//! what every kind's `config.rs` does first and last.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use switchyard_core::ValidationError;
use switchyard_core::destination::{Destination, split_secrets};
use switchyard_core::error::FieldError;
use switchyard_core::event::Event;
use switchyard_core::transport::{DeliveryError, ValidatedConfig};

use crate::template::Template;

/// Reads `raw` as a `T`, naming fields from `config` down. Where `hides_value(field)` (`field`
/// a path inside the configuration) a message never quotes the value (it may be, or hold, a
/// secret).
pub fn read<T: DeserializeOwned>(
    raw: Value,
    hides_value: impl Fn(&str) -> bool,
) -> Result<T, ValidationError> {
    if !raw.is_object() {
        return Err(ValidationError::single(CONFIG, "must be an object"));
    }
    switchyard_core::json::from_value_at(raw, CONFIG).map_err(|error| unquoted_secrets(error, hides_value))
}

/// Where a destination's configuration is in the request body.
const CONFIG: &str = "config";

/// `error` (fields from `config` down), its messages at the fields `hides_value` names replaced
/// by one that quotes nothing.
pub fn unquoted_secrets(error: ValidationError, hides_value: impl Fn(&str) -> bool) -> ValidationError {
    let hide = |field: &str| {
        field.strip_prefix(CONFIG).and_then(|rest| rest.strip_prefix('.')).is_some_and(&hides_value)
    };
    ValidationError(
        error
            .0
            .into_iter()
            .map(|e| {
                if hide(&e.field) {
                    FieldError::new(
                        e.field,
                        "has the wrong type (its value is not quoted back: it may be a secret)",
                    )
                } else {
                    e
                }
            })
            .collect(),
    )
}

/// Whether `field` is one of `secret_paths` or lies inside one.
pub fn is_secret(field: &str, secret_paths: &[&str]) -> bool {
    secret_paths
        .iter()
        .any(|secret| field.strip_prefix(secret).is_some_and(|rest| rest.is_empty() || rest.starts_with('.')))
}

/// The checked `config`, with the values at `secret_paths` split out to be sealed.
pub fn split<T: Serialize>(config: &T, secret_paths: &[&str]) -> Result<ValidatedConfig, ValidationError> {
    let mut value =
        serde_json::to_value(config).map_err(|e| ValidationError::single("config", e.to_string()))?;
    let secrets = split_secrets(&mut value, secret_paths);
    Ok(ValidatedConfig { config: value, secrets })
}

/// The configuration `destination` was stored with, secrets included, as its transport reads
/// it when it delivers.
pub fn stored<T: DeserializeOwned>(destination: &Destination) -> Result<T, DeliveryError> {
    serde_json::from_value(destination.full_config()).map_err(|_| {
        DeliveryError::permanent(format!(
            "the destination's configuration is not a valid {} configuration",
            destination.kind
        ))
    })
}

/// The name (`what`: a subject, stream, routing key or topic) that `template` gives `event`,
/// held to the broker's syntax by `check`. Failures are permanent: another attempt would make
/// the same name.
pub fn name_for(
    what: &str,
    template: &str,
    event: &Event,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<String, DeliveryError> {
    let template = Template::parse(template)
        .map_err(|reason| DeliveryError::permanent(format!("the {what} {reason}")))?;
    let name = template.render(event).map_err(DeliveryError::permanent)?;
    check(&name).map_err(|reason| DeliveryError::permanent(format!("the {what} {name:?} {reason}")))?;
    Ok(name)
}

/// `%xx` sequences of a URL's userinfo as the bytes they stand for (a password moved out of a
/// URL is kept decoded).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}
