//! Authentication (API keys and, when configured, JWTs as bearer tokens) and role checks.
//!
//! `Authorization: Bearer <token>` (the scheme in any case): a token starting with `sy_` is an API key, looked up by its
//! hash; any other token is verified as a JWT when `auth.jwt` is configured (see [`crate::jwt`])
//! and refused otherwise. Every refusal is a 401; a token without a valid role is refused too
//! (401, not 403: it establishes no principal at all).

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use switchyard_core::api_key::{Role, hash_token};
use switchyard_core::id::ApiKeyId;

use crate::ApiState;
use crate::error::ApiError;

/// Every API key token starts with this; other bearer tokens are taken for JWTs.
pub const API_KEY_PREFIX: &str = "sy_";

/// Who is calling, as established by `authenticate`.
#[derive(Debug, Clone)]
pub struct Principal {
    pub credential: Credential,
    /// The API key's name, or the JWT's subject.
    pub name: String,
    pub role: Role,
}

/// What the caller authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    ApiKey(ApiKeyId),
    /// A verified JWT: its `iss` (when it had one) and `sub`.
    Jwt {
        issuer: Option<String>,
        subject: String,
    },
}

impl Principal {
    /// A stable name of the caller, unique across kinds of credential: `key:<id>` or
    /// `jwt:<iss>|<sub>`. Idempotency keys and rate limits are scoped by it, and it is the actor
    /// to record.
    pub fn subject(&self) -> String {
        match &self.credential {
            Credential::ApiKey(id) => format!("key:{id}"),
            Credential::Jwt { issuer, subject } => {
                format!("jwt:{}|{subject}", issuer.as_deref().unwrap_or_default())
            }
        }
    }

    /// The API key the caller used, if it used one.
    pub fn api_key_id(&self) -> Option<&ApiKeyId> {
        match &self.credential {
            Credential::ApiKey(id) => Some(id),
            Credential::Jwt { .. } => None,
        }
    }

    pub fn require(&self, needed: Role) -> Result<(), ApiError> {
        if self.role.includes(needed) {
            return Ok(());
        }
        let who = match &self.credential {
            Credential::ApiKey(id) => format!("the key {id}"),
            Credential::Jwt { .. } => "the token".to_owned(),
        };
        Err(ApiError::Forbidden(format!(
            "this action needs the {needed} role; {who} has the {} role",
            self.role
        )))
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

/// Middleware: resolves the bearer token to a principal, or answers 401.
pub async fn authenticate(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    authenticated(&state, request, |request| next.run(request)).await
}

/// Runs `inner` with the principal the bearer token resolves to, or answers 401.
pub(crate) async fn authenticated<F, Fut>(state: &ApiState, mut request: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    match resolve(state, request.headers()).await {
        Ok(principal) => {
            tracing::Span::current().record("principal", principal.subject());
            request.extensions_mut().insert(principal);
            inner(request).await
        }
        Err(error) => error.into_response(),
    }
}

async fn resolve(state: &ApiState, headers: &axum::http::HeaderMap) -> Result<Principal, ApiError> {
    let raw = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::Unauthorized("send an API key or a JWT as Authorization: Bearer <token>".into())
    })?;
    let token =
        raw.to_str().ok().and_then(bearer_token).ok_or_else(|| {
            ApiError::Unauthorized("the Authorization header must be Bearer <token>".into())
        })?;
    resolve_token(state, token).await
}

/// Resolves a token as a bearer credential would be (the dashboard's session cookie holds one).
pub(crate) async fn resolve_token(state: &ApiState, token: &str) -> Result<Principal, ApiError> {
    if !token.starts_with(API_KEY_PREFIX)
        && let Some(jwt) = &state.settings().jwt
    {
        let identity = jwt
            .verify(token)
            .map_err(|error| ApiError::Unauthorized(format!("the bearer token is refused: {error}")))?;
        return Ok(Principal {
            name: identity.subject.clone(),
            credential: Credential::Jwt { issuer: identity.issuer, subject: identity.subject },
            role: identity.role,
        });
    }
    let unknown = || ApiError::Unauthorized("the API key is unknown or revoked".into());
    if !token.starts_with(API_KEY_PREFIX) {
        return Err(unknown());
    }
    let key = state.active_api_key(&hash_token(token)).await?.ok_or_else(unknown)?;
    Ok(Principal { credential: Credential::ApiKey(key.id), name: key.name, role: key.role })
}

/// The token of a `Bearer` credential. The scheme name is case-insensitive (RFC 9110 §11.1),
/// and spaces or tabs may separate it from the token.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once([' ', '\t'])?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer sy_a", "bearer sy_a", "BEARER sy_a", "bEaReR  sy_a ", "Bearer\tsy_a"] {
            assert_eq!(bearer_token(value), Some("sy_a"), "{value:?}");
        }
        for value in ["Bearer", "Bearer ", "Basic sy_a", "Bearersy_a", "Token sy_a", ""] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }

    #[test]
    fn subjects_cannot_collide_across_credentials() {
        let key = Principal {
            credential: Credential::ApiKey(ApiKeyId::from_trusted("key_1")),
            name: "k".into(),
            role: Role::Viewer,
        };
        let jwt = Principal {
            credential: Credential::Jwt { issuer: Some("https://idp".into()), subject: "key_1".into() },
            name: "key_1".into(),
            role: Role::Viewer,
        };
        assert_eq!(key.subject(), "key:key_1");
        assert_eq!(jwt.subject(), "jwt:https://idp|key_1");
        let error = jwt.require(Role::Admin).expect_err("viewer");
        assert_eq!(error.to_string(), "this action needs the admin role; the token has the viewer role");
    }
}
