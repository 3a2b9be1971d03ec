//! The resources of the API, one module each: routes sit beside their OpenAPI annotations.

pub mod api_keys;
pub mod audit_log;
pub mod deliveries;
pub mod destination_actions;
pub mod destination_health;
pub mod destinations;
pub mod event_trace;
pub mod event_types;
pub mod events;
pub mod health;
pub mod metrics;
pub mod source_webhook;
pub mod sources;
pub mod status;
pub mod streams;
pub mod subscriptions;

use serde::Deserialize;
use switchyard_core::error::Violations;
use utoipa::IntoParams;

/// Longest name of a named resource (destination, subscription, source), in characters.
pub const MAX_NAME: usize = 200;

/// The `name` of a resource written by a client, trimmed; a violation when absent, empty or
/// over [`MAX_NAME`].
pub fn required_name(v: &mut Violations, raw: Option<&str>) -> Option<String> {
    match raw.map(str::trim) {
        Some(name) if !name.is_empty() && name.chars().count() <= MAX_NAME => Some(name.to_owned()),
        Some(_) => {
            v.push("name", format!("must be 1 to {MAX_NAME} characters"));
            None
        }
        None => {
            v.push("name", "is required");
            None
        }
    }
}

/// Paging of collections that are numbered only.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page number (1-based).
    #[param(minimum = 1, maximum = 4_294_967_295_u32, format = Int64)]
    pub page: Option<u32>,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}
