//! `ApiError`: every failure the API can answer, rendered into the envelope in one place.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use switchyard_core::FieldError;
use switchyard_core::ValidationError;
use switchyard_core::error::excerpt;
use switchyard_core::store::{StorageFailure, StoreError};
use switchyard_engine::IngestError;

use crate::envelope::failure_body;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Validation(#[from] ValidationError),
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("this method is not allowed on this resource")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Over the principal's rate limit; `rate_limit::around` adds `Retry-After` and `RateLimit-*`.
    #[error("{0}")]
    RateLimited(String),
    #[error("{0}")]
    Unavailable(String),
    /// Anything unexpected: logged with its cause, answered without internals.
    #[error(transparent)]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// `id` came from the client's path, so only an excerpt of it is repeated.
    pub fn not_found(what: &str, id: impl std::fmt::Display) -> Self {
        Self::NotFound(format!("no {what} with id {}", excerpt(&id.to_string())))
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation(_) => "validation_error",
            Self::MalformedJson(_) => "malformed_json",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::PreconditionFailed(_) => "precondition_failed",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::RateLimited(_) => "rate_limited",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal_error",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::MalformedJson(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (message, details) = match &self {
            Self::Validation(ValidationError(details)) => {
                ("the request is invalid; see details".to_owned(), details.clone())
            }
            Self::Internal(source) => {
                tracing::error!(error = %source, source = ?source, "request failed unexpectedly");
                (
                    "internal error; the request id identifies it in the logs".to_owned(),
                    Vec::<FieldError>::new(),
                )
            }
            other => (other.to_string(), Vec::new()),
        };
        let body = failure_body(self.code(), &message, details);
        let mut response = (self.status(), axum::Json(body)).into_response();
        if matches!(self, Self::Unauthorized(_)) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(self, Self::Unavailable(_)) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => Self::NotFound(format!("no such {what}")),
            StoreError::Conflict(message) => Self::Conflict(message),
            StoreError::VersionMismatch { current } => Self::Conflict(format!(
                "the resource was changed by another request (now at version {current}); read it again and retry"
            )),
            StoreError::InvalidReference { field, message } => {
                Self::Validation(ValidationError::single(field, message))
            }
            StoreError::Unavailable(source) => {
                tracing::warn!(error = %source, "the database is unavailable; answering 503");
                match source.downcast_ref::<StorageFailure>() {
                    Some(failure) => Self::Unavailable(format!("{}; try again later", failure.kind)),
                    None => {
                        Self::Unavailable("the database is busy or unreachable; try again shortly".into())
                    }
                }
            }
            StoreError::Backend(source) => Self::Internal(source),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(error: IngestError) -> Self {
        match error {
            IngestError::Invalid(invalid) => Self::Validation(invalid),
            IngestError::Store(store) => store.into(),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
