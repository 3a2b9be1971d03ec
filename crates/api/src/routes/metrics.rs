//! `GET /metrics`: this node's Prometheus metrics, outside the API's rate limit and, unless
//! `auth.metrics_require_key` asks for a bearer token, unauthenticated like the health probes.
//! The gauges that describe the store (backlog, dead letters, circuits, connection pools) are
//! read when scraped, so they are exact at that moment.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use switchyard_engine::metrics::{CIRCUIT_STATES, DestinationGauges};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ApiState;
use crate::routes::status::survey;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Prometheus text exposition (version 0.0.4).
///
/// Series: `switchyard_http_requests_total` and `switchyard_http_request_duration_seconds`
/// (`method`, `route` template, `status`); `switchyard_events_ingested_total` (`event_type`,
/// capped at 200 values, the rest as `other`); `switchyard_deliveries_total` and
/// `switchyard_delivery_attempts_total` (`destination`, `outcome`);
/// `switchyard_delivery_attempt_duration_seconds` and `switchyard_delivery_latency_seconds`
/// (ingest to success, by `destination`); gauges `switchyard_deliveries_pending`,
/// `switchyard_deliveries_dead`, `switchyard_circuit_state` (`destination`, `state`: 1 for the
/// current one; a deleted destination's gauges all read 0), `switchyard_db_pool_connections` (`pool`, `state`) and
/// `switchyard_db_pool_max_connections`.
///
/// Open unless `auth.metrics_require_key` is set; then any API key or JWT (any role) reads it.
#[utoipa::path(get, path = "/metrics", tag = "health",
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "The metrics", content_type = "text/plain", body = String),
        (status = 401, description = "`auth.metrics_require_key` is set and no valid bearer token was sent"),
    ))]
async fn metrics(State(state): State<ApiState>) -> Response {
    let metrics = state.control().metrics();
    match survey(&state).await {
        Ok(surveys) => {
            let gauges: Vec<_> = surveys
                .iter()
                .map(|survey| DestinationGauges {
                    destination: survey.destination.id.as_str(),
                    pending: survey.pending,
                    dead: survey.dead,
                    circuit: match survey.health.circuit.state {
                        switchyard_core::circuit::CircuitState::Closed => CIRCUIT_STATES[0],
                        switchyard_core::circuit::CircuitState::HalfOpen => CIRCUIT_STATES[1],
                        switchyard_core::circuit::CircuitState::Open => CIRCUIT_STATES[2],
                    },
                })
                .collect();
            // Also zeroes the gauges of destinations deleted since the last scrape.
            metrics.set_destinations(&gauges);
        }
        // The counters are still worth scraping; the gauges keep their last values.
        Err(error) => tracing::warn!(%error, "reading the store for the metrics' gauges failed"),
    }
    metrics.refresh_pools();
    let mut response = metrics.render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}
