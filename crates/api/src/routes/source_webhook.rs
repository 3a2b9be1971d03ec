//! `POST /v1/sources/{id}/webhook`: the public endpoint of a webhook source. No bearer token:
//! the provider's signature is the authentication, checked over the body exactly as received.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use switchyard_core::ValidationError;
use switchyard_core::error::excerpt;
use switchyard_core::id::SourceId;
use switchyard_core::source::Headers;
use switchyard_core::store::StoreError;
use switchyard_core::time::now_millis;
use switchyard_core::trace::TraceParent;
use switchyard_engine::{IntakeError, WebhookRequest};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ApiState;
use crate::envelope::{Failure, Reply, Success};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(receive_webhook))
}

#[derive(Serialize, ToSchema)]
pub struct WebhookReceipt {
    /// The event the webhook became (the provider's id, or the digest of the body).
    #[schema(example = "72d3162e-cc78-11e3-81ab-4c9367dc0958")]
    event_id: String,
    /// The provider sent this id before; nothing new was stored.
    duplicate: bool,
}

/// The request's headers as verification reads them.
struct RequestHeaders<'a>(&'a HeaderMap);

impl Headers for RequestHeaders<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|value| value.to_str().ok())
    }
}

/// Receive a provider's webhook.
///
/// Authenticated by the signature the source's `verification` names, never by a bearer token.
/// The body must be a JSON object; it becomes the event's payload, committed with its
/// deliveries before the answer. A redelivery of an id already received answers 200 with
/// `duplicate: true` and stores nothing.
#[utoipa::path(
    post, path = "/v1/sources/{id}/webhook", tag = "sources",
    params(("id" = String, Path, description = "The source's id")),
    request_body(content = Object, description = "The provider's JSON body, verified as received"),
    responses(
        (status = 200, description = "Committed (or a duplicate)", body = Success<WebhookReceipt>),
        (status = 400, description = "The body is not a JSON object, or the event's type or id cannot be taken from it", body = Failure),
        (status = 401, description = "Missing or wrong signature, or a stale timestamp; nothing stored", body = Failure),
        (status = 404, description = "No such source, or it is disabled", body = Failure),
        (status = 409, description = "The event's id, and the id scoped by this source, both name events from elsewhere", body = Failure),
        (status = 413, description = "The body is larger than limits.max_body_bytes", body = Failure),
        (status = 429, description = "Over the source's rate limit; see Retry-After", body = Failure),
    ),
    security(()),
)]
async fn receive_webhook(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<String>,
    request: Request,
) -> ApiResult<Response> {
    let headers = request.headers().clone();
    let body = Bytes::from_request(request, &state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(
                "the request body is larger than the limit (limits.max_body_bytes)".into(),
            )
        } else {
            ApiError::Validation(ValidationError::single("body", "the request body could not be read"))
        }
    })?;
    // A guessed id costs no store read (and evicts nothing from the intake's cache).
    if !SourceId::is_well_formed(&id) {
        return Err(ApiError::NotFound(format!("no source with id {}", excerpt(&id))));
    }
    let id = SourceId::from_trusted(id);
    let webhook = WebhookRequest {
        headers: &RequestHeaders(&headers),
        body: &body,
        received_at: now_millis(),
        request_id: crate::request_id::current(),
        traceparent: traceparent(&headers),
        correlation_id: None,
        max_payload_bytes: state.settings().max_payload_bytes,
    };
    match state.source_intake().receive(state.ingestor(), &id, webhook).await {
        Ok(received) => {
            let receipt = WebhookReceipt { event_id: received.event_id, duplicate: received.duplicate };
            Ok(Reply::ok(receipt).into_response())
        }
        Err(IntakeError::NotFound) => {
            Err(ApiError::NotFound(format!("no source with id {}", excerpt(id.as_str()))))
        }
        Err(IntakeError::Unauthorized(rejection)) => {
            tracing::info!(source = %id, %rejection, "refused a webhook");
            Err(ApiError::Unauthorized("the webhook's signature could not be verified".into()))
        }
        Err(IntakeError::RateLimited { retry_after_ms }) => {
            let mut response =
                ApiError::RateLimited("this source's rate limit is reached; retry later".into())
                    .into_response();
            let seconds = ((retry_after_ms + 999) / 1_000).max(1);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            Ok(response)
        }
        Err(IntakeError::Invalid(error)) => Err(error.into()),
        Err(error @ IntakeError::IdTaken) => Err(ApiError::Conflict(error.to_string())),
        // The event holding the id vanished under us (retention): the provider must retry.
        Err(IntakeError::Store(StoreError::NotFound(_))) => {
            Err(ApiError::Unavailable("the event's id changed hands while it was stored; retry".into()))
        }
        Err(IntakeError::Store(error)) => Err(error.into()),
        Err(error @ IntakeError::Broken(_)) => Err(ApiError::Internal(error.into())),
    }
}

/// A valid W3C `traceparent` continues the provider's trace; anything else is ignored.
fn traceparent(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get("traceparent")?.to_str().ok()?;
    TraceParent::parse(raw.trim()).ok().map(|parent| parent.to_string())
}
