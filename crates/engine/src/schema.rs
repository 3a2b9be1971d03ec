//! JSON Schemas of registered event types: checked when written, compiled once, applied at ingest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonschema::{Draft, Validator};
use serde_json::Value;
use switchyard_core::ValidationError;
use switchyard_core::error::FieldError;
use switchyard_core::event::EventType;

/// Violations listed per schema before the rest are summarised, so one huge payload cannot
/// produce an unbounded error response.
const MAX_REPORTED_VIOLATIONS: usize = 50;

/// Compiles `schema` as draft 2020-12; every problem is reported against `field`.
pub fn compile(schema: &Value, field: &str) -> Result<Validator, ValidationError> {
    if !(schema.is_object() || schema.is_boolean()) {
        return Err(ValidationError::single(field, "must be a JSON Schema object"));
    }
    if let Err(error) = jsonschema::meta::validate(schema) {
        return Err(ValidationError::single(
            format!("{field}{}", error.instance_path().as_str()),
            format!("is not a valid JSON Schema: {error}"),
        ));
    }
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .build(schema)
        .map_err(|error| ValidationError::single(field, format!("cannot be compiled: {error}")))
}

/// Every violation of `instance` against `validator`, each named by a JSON pointer under `root`.
pub fn violations(validator: &Validator, instance: &Value, root: &str) -> Vec<FieldError> {
    let mut found: Vec<FieldError> = validator
        .iter_errors(instance)
        .take(MAX_REPORTED_VIOLATIONS + 1)
        .map(|e| FieldError::new(format!("{root}{}", e.instance_path().as_str()), e.to_string()))
        .collect();
    if found.len() > MAX_REPORTED_VIOLATIONS {
        found.truncate(MAX_REPORTED_VIOLATIONS);
        found.push(FieldError::new(root, "more violations were found and not listed"));
    }
    found
}

/// Compiled validators by event type, reused while the type's stored version is unchanged.
#[derive(Default)]
pub struct SchemaCache {
    compiled: Mutex<HashMap<EventType, (i64, Arc<Validator>)>>,
}

impl SchemaCache {
    pub fn get_or_compile(
        &self,
        event_type: &EventType,
        version: i64,
        schema: &Value,
    ) -> Result<Arc<Validator>, ValidationError> {
        if let Some((_, validator)) = self.lock().get(event_type).filter(|(cached, _)| *cached == version) {
            return Ok(validator.clone());
        }
        let validator = Arc::new(compile(schema, "schema")?);
        self.lock().insert(event_type.clone(), (version, validator.clone()));
        Ok(validator)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EventType, (i64, Arc<Validator>)>> {
        // A panic while holding this lock cannot leave the map inconsistent: it only caches.
        self.compiled.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn invalid_schemas_are_refused() {
        assert!(compile(&json!({"type": "no-such-type"}), "schema").is_err());
        assert!(compile(&json!([1]), "schema").is_err());
        assert!(compile(&json!({"type": "object"}), "schema").is_ok());
    }

    #[test]
    fn each_violation_is_a_pointer_under_the_root() {
        let validator = compile(
            &json!({"type": "object", "required": ["id"],
                    "properties": {"amount": {"type": "integer"}, "id": {"type": "string"}}}),
            "schema",
        )
        .unwrap();
        let mut fields: Vec<_> = violations(&validator, &json!({"amount": "x"}), "/payload")
            .into_iter()
            .map(|e| e.field)
            .collect();
        fields.sort();
        assert_eq!(fields, ["/payload", "/payload/amount"]);
    }
}
