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
pub mod subscriptions;

use serde::Deserialize;
use utoipa::IntoParams;

/// Paging of collections that are numbered only.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page number (1-based).
    pub page: Option<u32>,
    /// Items per page, 1 to 100 (default 20).
    pub per_page: Option<u32>,
}
