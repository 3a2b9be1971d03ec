//! The OpenAPI 3.1 document, assembled from the routes themselves so it cannot drift, plus
//! the error answers every authenticated operation shares.

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;

use crate::ApiState;
use crate::routes::{
    api_keys, audit_log, deliveries, destination_actions, destination_health, destinations, event_trace,
    event_types, events, health, metrics, source_webhook, sources, status, subscriptions,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchyard",
        description = "The integration hub's REST API. Every answer is an envelope \
            (`success`, `data` or `error`, `metadata`); authenticate with `Authorization: Bearer <API key or JWT>`.",
        license(name = "MIT OR Apache-2.0"),
    ),
    tags(
        (name = "events", description = "Publish and read domain events"),
        (name = "event types", description = "The optional registry of event types and their schemas"),
        (name = "destinations", description = "External services events are delivered to"),
        (name = "subscriptions", description = "Routes from event types to destinations"),
        (name = "deliveries", description = "Each event's deliveries and their attempts"),
        (name = "dead letters", description = "Deliveries that failed for good, and their replay"),
        (name = "sources", description = "Where events enter other than this API: signed provider webhooks"),
        (name = "api keys", description = "Credentials and their roles"),
        (name = "audit log", description = "Every control-plane write: who, what, and how it went"),
        (name = "health", description = "Liveness and readiness probes, and the Prometheus metrics"),
        (name = "status", description = "The live integration status report"),
    ),
)]
struct ApiDoc;

pub(crate) fn v1_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .merge(events::router())
        .merge(event_trace::router())
        .merge(event_types::router())
        .merge(destinations::router())
        .merge(destination_actions::router())
        .merge(destination_health::router())
        .merge(deliveries::router())
        .merge(subscriptions::router())
        .merge(sources::router())
        .merge(api_keys::router())
        .merge(audit_log::router())
        .merge(status::router())
}

pub(crate) fn webhook_routes() -> OpenApiRouter<ApiState> {
    source_webhook::router()
}

pub(crate) fn health_routes() -> OpenApiRouter<ApiState> {
    health::router()
}

pub(crate) fn metrics_routes() -> OpenApiRouter<ApiState> {
    metrics::router()
}

/// The API's OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.merge(v1_routes().into_openapi());
    doc.merge(webhook_routes().into_openapi());
    doc.merge(health_routes().into_openapi());
    doc.merge(metrics_routes().into_openapi());
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "api_key",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("sy_…").build()),
    );
    add_shared_failures(&mut doc);
    doc
}

/// Answers any `/v1` operation may give, documented once here instead of on every handler.
fn add_shared_failures(doc: &mut utoipa::openapi::OpenApi) {
    let failure = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("Failure"))).build(),
                )
                .build(),
        )
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with("/v1/") {
            continue;
        }
        let operations = [
            item.get.as_mut(),
            item.post.as_mut(),
            item.put.as_mut(),
            item.patch.as_mut(),
            item.delete.as_mut(),
        ];
        for operation in operations.into_iter().flatten() {
            let with_body = operation.request_body.is_some();
            let responses = &mut operation.responses.responses;
            let mut add = |status: &str, description: &str| {
                responses.entry(status.to_owned()).or_insert_with(|| failure(description));
            };
            add("400", "Invalid input (validation_error, malformed_json)");
            add("401", "No valid credentials: unknown or revoked API key, refused JWT (unauthorized)");
            add("403", "The key's role does not allow this (forbidden)");
            add("429", "Over the caller's rate limit (rate_limited); see Retry-After and RateLimit-*");
            add("500", "Unexpected failure (internal_error); the request id identifies it in the logs");
            if with_body {
                add("409", "Idempotency-Key reused with another body, or still in progress (conflict)");
                add("413", "The body exceeds limits.max_body_bytes (payload_too_large)");
                add("415", "The body is not JSON (unsupported_media_type)");
            }
        }
    }
}
