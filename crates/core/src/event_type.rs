//! The optional registry of event types, each with an optional JSON Schema for its payload.

use serde::Serialize;
use serde_json::Value;

use crate::event::EventType;
use crate::time::{self, Millis};

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EventTypeDefinition {
    pub name: EventType,
    pub description: Option<String>,
    /// JSON Schema (draft 2020-12) every payload of this type must satisfy.
    #[schema(value_type = Option<Object>)]
    pub schema: Option<Value>,
    pub deprecated: bool,
    pub version: i64,
    #[serde(with = "time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    #[serde(with = "time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Millis,
}
