//! Authentication (API keys as bearer tokens) and role checks.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use switchyard_core::api_key::{Role, hash_token};
use switchyard_core::id::ApiKeyId;

use crate::ApiState;
use crate::error::ApiError;

/// Who is calling, as established by `authenticate`.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: ApiKeyId,
    pub name: String,
    pub role: Role,
}

impl Principal {
    pub fn require(&self, needed: Role) -> Result<(), ApiError> {
        if self.role.includes(needed) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this action needs the {needed} role; the key {} has the {} role",
                self.key_id, self.role
            )))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthorized("authentication is required".into()))
    }
}

/// Resolves the bearer token to a principal, or answers 401.
pub async fn authenticate(State(state): State<ApiState>, mut request: Request, next: Next) -> Response {
    match resolve(&state, request.headers()).await {
        Ok(principal) => {
            tracing::Span::current().record("key_id", principal.key_id.as_str());
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

async fn resolve(state: &ApiState, headers: &axum::http::HeaderMap) -> Result<Principal, ApiError> {
    let raw = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("send an API key as Authorization: Bearer <token>".into()))?;
    let token = raw
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::Unauthorized("the Authorization header must be Bearer <token>".into()))?;
    let key = state
        .store()
        .find_active_api_key(&hash_token(token))
        .await?
        .ok_or_else(|| ApiError::Unauthorized("the API key is unknown or revoked".into()))?;
    Ok(Principal { key_id: key.id, name: key.name, role: key.role })
}
