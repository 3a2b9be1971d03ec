//! The OpenAPI 3.1 document, assembled from the routes themselves so it cannot drift, plus
//! the error answers every authenticated operation shares.

use utoipa::OpenApi;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::schema::{
    AdditionalProperties, AllOfBuilder, AnyOfBuilder, ObjectBuilder, Schema, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;

use crate::ApiState;
use crate::routes::{
    api_keys, audit_log, deliveries, destination_actions, destination_health, destinations, event_trace,
    event_types, events, health, metrics, source_webhook, sources, status, streams, subscriptions,
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
        .merge(streams::router())
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
    let mut v1 = v1_routes().into_openapi();
    for item in v1.paths.paths.values_mut() {
        if let Some(post) = item.post.as_mut() {
            declare_idempotency_key(post);
        }
    }
    doc.merge(v1);
    doc.merge(webhook_routes().into_openapi());
    doc.merge(health_routes().into_openapi());
    doc.merge(metrics_routes().into_openapi());
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "api_key",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("sy_…").build()),
    );
    require_name_to_register(&mut doc);
    declare_merge_patches(&mut doc);
    add_shared_failures(&mut doc);
    link_creations(&mut doc);
    doc
}

fn failure(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new().schema(Some(Ref::from_schema_name("Failure"))).build(),
            )
            .build(),
    )
}

/// Answers any `/v1` operation may give, documented once here instead of on every handler.
fn add_shared_failures(doc: &mut utoipa::openapi::OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with("/v1/") {
            continue;
        }
        for operation in operations_mut(item) {
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
            if operation.parameters.iter().flatten().any(|p| is_named(p, "If-Match")) {
                add("412", "If-Match names another version than the current one (precondition_failed)");
            }
            if with_body {
                add("409", "Idempotency-Key reused with another body, or still in progress (conflict)");
                add("413", "The body exceeds limits.max_body_bytes (payload_too_large)");
                add("415", "The body is not JSON (unsupported_media_type)");
            }
        }
    }
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [item.get.as_mut(), item.post.as_mut(), item.put.as_mut(), item.patch.as_mut(), item.delete.as_mut()]
        .into_iter()
        .flatten()
}

/// Links each create's 201 answer to every operation under the created resource's path
/// (`/v1/things` to `/v1/things/{id}` and `/v1/things/{id}/…`), taking the id from the answer's
/// `data`. Derived from the paths rather than written on
/// each handler, so a new operation under a resource is linked without anyone remembering to.
fn link_creations(doc: &mut utoipa::openapi::OpenApi) {
    struct Target {
        collection: String,
        parameter: String,
        operation_id: String,
    }
    let mut targets = Vec::new();
    // The public webhook answers for a disabled source as if it did not exist: it is the
    // provider's endpoint, not one the creator goes on to use.
    let public = webhook_routes().into_openapi().paths.paths;
    for (path, item) in doc.paths.paths.iter_mut() {
        if public.contains_key(path) {
            continue;
        }
        let Some((collection, rest)) = path.split_once("/{") else { continue };
        let Some((parameter, tail)) = rest.split_once('}') else { continue };
        // A sub-resource may be absent by design (an `amqp` destination has no signing secret),
        // so only actions are linked below the resource itself.
        let read = if tail.is_empty() { item.get.as_mut() } else { None };
        let writes = [item.post.as_mut(), item.put.as_mut(), item.patch.as_mut(), item.delete.as_mut()];
        for operation in [read].into_iter().chain(writes).flatten() {
            let Some(operation_id) = operation.operation_id.clone() else { continue };
            targets.push(Target {
                collection: collection.to_owned(),
                parameter: parameter.to_owned(),
                operation_id,
            });
        }
    }
    for target in targets {
        let Some(create) = doc.paths.paths.get_mut(&target.collection).and_then(|item| item.post.as_mut())
        else {
            continue;
        };
        let Some(RefOr::T(created)) = create.responses.responses.get_mut("201") else { continue };
        let link = LinkBuilder::new().operation_id(&target.operation_id).parameter(
            format!("path.{}", target.parameter),
            format!("$response.body#/data/{}", target.parameter),
        );
        created.links.insert(target.operation_id, RefOr::T(link.build()));
    }
}

/// `Idempotency-Key`, which the idempotency layer reads on every POST of `/v1` (webhooks are
/// deduplicated by event id instead).
fn declare_idempotency_key(operation: &mut Operation) {
    let key = ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .description(Some(
            "Replays the first answer for a retried request with the same body; another body answers 409. \
             1 to 255 visible ASCII characters, else 400",
        ))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[!-~]{1,255}$"))))
        .build();
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    parameters.retain(|p| !is_named(p, &key.name));
    parameters.push(RefOr::T(key));
    operation.responses.responses.entry("409".to_owned()).or_insert_with(|| {
        failure("Idempotency-Key reused with another request, or still in progress (conflict)")
    });
}

/// Header names compare without regard to case.
fn is_named(parameter: &RefOr<Parameter>, name: &str) -> bool {
    matches!(parameter, RefOr::T(p) if p.name.eq_ignore_ascii_case(name))
}

/// Registering an event type needs the `name` that a replacement takes from its path, so the
/// two share `EventTypeInput` but only the registration requires the field.
fn require_name_to_register(doc: &mut utoipa::openapi::OpenApi) {
    let Some(RefOr::T(body)) = doc
        .paths
        .paths
        .get_mut("/v1/event-types")
        .and_then(|item| item.post.as_mut())
        .and_then(|post| post.request_body.as_mut())
    else {
        return;
    };
    for content in body.content.values_mut() {
        let RefOr::T(content) = content else { continue };
        let Some(input) = content.schema.take() else { continue };
        let required = ObjectBuilder::new()
            .property("name", Ref::from_schema_name("EventType"))
            .required("name")
            .build();
        content.schema = Some(RefOr::T(AllOfBuilder::new().item(input).item(required).build().into()));
    }
}

/// A PATCH is a JSON Merge Patch of what its PUT replaces: the same fields, each optional, and
/// `null` to remove one. Derived from the PUT's body so the two cannot disagree.
fn declare_merge_patches(doc: &mut utoipa::openapi::OpenApi) {
    let schemas = doc.components.as_ref().map(|c| c.schemas.clone()).unwrap_or_default();
    for item in doc.paths.paths.values_mut() {
        let Some(RefOr::T(replacement)) = item.put.as_ref().and_then(|put| put.request_body.as_ref()) else {
            continue;
        };
        let Some(RefOr::T(content)) = replacement.content.get("application/json") else { continue };
        let Some(RefOr::Ref(input)) = &content.schema else { continue };
        let name = input.ref_location.trim_start_matches("#/components/schemas/");
        let Some(RefOr::T(Schema::Object(fields))) = schemas.get(name) else { continue };
        // Removing a member that is not there changes nothing (RFC 7396), so any name may be
        // `null`; only the resource's own fields may hold a value.
        let absent = ObjectBuilder::new().schema_type(Type::Null).build();
        let mut patch = ObjectBuilder::new()
            .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(absent.into()))));
        for (field, schema) in &fields.properties {
            let removable =
                AnyOfBuilder::new().item(schema.clone()).item(ObjectBuilder::new().schema_type(Type::Null));
            patch = patch.property(field, removable);
        }
        let patch: RefOr<Schema> = RefOr::T(patch.build().into());
        let Some(RefOr::T(body)) = item.patch.as_mut().and_then(|patch| patch.request_body.as_mut()) else {
            continue;
        };
        for content in body.content.values_mut() {
            if let RefOr::T(content) = content {
                content.schema = Some(patch.clone());
            }
        }
    }
}
