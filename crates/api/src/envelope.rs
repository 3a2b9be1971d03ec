//! The response envelope every answer uses, success or failure.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use switchyard_core::page::{Cursor, ListRequest, Listing};
use utoipa::ToSchema;

use crate::request_id;

pub const API_VERSION: &str = "1.0";

#[derive(Debug, Serialize, ToSchema)]
pub struct Metadata {
    /// When the answer was made (RFC 3339).
    #[schema(example = "2026-11-26T10:00:00.000Z")]
    pub timestamp: String,
    #[schema(example = "1.0")]
    pub version: &'static str,
    pub request_id: String,
    /// Present (true) when an ingest found the event stored already.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
}

impl Metadata {
    pub fn now() -> Self {
        Self {
            timestamp: switchyard_core::time::format_rfc3339(switchyard_core::time::now_millis()),
            version: API_VERSION,
            request_id: request_id::current().unwrap_or_default(),
            duplicate: None,
        }
    }
}

/// A successful answer: `{"success": true, "data": …, "metadata": …}`.
#[derive(Serialize, ToSchema)]
pub struct Success<T> {
    #[schema(example = true)]
    pub success: bool,
    pub data: T,
    pub metadata: Metadata,
}

/// A page of a list: `data` is an array and `pagination` says where it lies.
#[derive(Serialize, ToSchema)]
pub struct Paged<T> {
    #[schema(example = true)]
    pub success: bool,
    pub data: Vec<T>,
    pub pagination: Pagination,
    pub metadata: Metadata,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Pagination {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    pub per_page: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_items: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_pages: Option<u64>,
    /// Append-only collections only: pass as `after` to read on; null at the end.
    #[serde(skip_serializing_if = "NextCursor::is_absent")]
    #[schema(value_type = Option<String>)]
    pub next_cursor: NextCursor,
}

/// Whether a listing has cursors at all, and if so where the next page starts.
#[derive(Debug)]
pub enum NextCursor {
    Absent,
    Present(Option<String>),
}

impl NextCursor {
    fn is_absent(&self) -> bool {
        matches!(self, Self::Absent)
    }
}

impl Serialize for NextCursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Absent | Self::Present(None) => s.serialize_none(),
            Self::Present(Some(c)) => s.serialize_str(c),
        }
    }
}

/// A success answer with its status and headers, its envelope serialized once, straight into
/// the bytes of the body.
pub struct Reply {
    status: StatusCode,
    body: Vec<u8>,
    location: Option<String>,
    etag: Option<i64>,
}

impl Reply {
    pub fn ok<T: Serialize>(data: T) -> Self {
        Self::with_status(StatusCode::OK, data, None, false)
    }

    pub fn created<T: Serialize>(data: T, location: String) -> Self {
        Self::with_status(StatusCode::CREATED, data, Some(location), false)
    }

    /// The same event was stored before: 200 with `metadata.duplicate = true`.
    pub fn duplicate<T: Serialize>(data: T) -> Self {
        Self::with_status(StatusCode::OK, data, None, true)
    }

    pub fn list<T: Serialize>(listing: Listing<T>, request: ListRequest, cursors: bool) -> Self {
        let per_page = request.per_page();
        let next_cursor = if cursors {
            NextCursor::Present(listing.next_cursor.map(Cursor::encode))
        } else {
            NextCursor::Absent
        };
        let pagination = match request {
            ListRequest::Page { page, .. } => {
                let total = listing.total.unwrap_or(0);
                Pagination {
                    page: Some(page),
                    per_page,
                    total_items: Some(total),
                    total_pages: Some(total.div_ceil(u64::from(per_page.max(1)))),
                    next_cursor,
                }
            }
            ListRequest::After { .. } => {
                Pagination { page: None, per_page, total_items: None, total_pages: None, next_cursor }
            }
        };
        let page = Paged { success: true, data: listing.items, pagination, metadata: Metadata::now() };
        Self::serialized(StatusCode::OK, &page, None)
    }

    fn with_status<T: Serialize>(
        status: StatusCode,
        data: T,
        location: Option<String>,
        duplicate: bool,
    ) -> Self {
        let metadata = Metadata { duplicate: duplicate.then_some(true), ..Metadata::now() };
        Self::serialized(status, &Success { success: true, data, metadata }, location)
    }

    fn serialized<B: Serialize>(status: StatusCode, envelope: &B, location: Option<String>) -> Self {
        // Most answers fit; the rest grow it once or twice rather than from nothing.
        let mut body = Vec::with_capacity(512);
        match serde_json::to_writer(&mut body, envelope) {
            Ok(()) => Self { status, body, location, etag: None },
            Err(error) => {
                tracing::error!(%error, "an answer could not be serialised");
                let failure = failure_body("internal_error", "internal error", Vec::new());
                Self {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    body: failure.to_string().into_bytes(),
                    location: None,
                    etag: None,
                }
            }
        }
    }

    /// Adds an `ETag` carrying the resource's version.
    pub fn etag(mut self, version: i64) -> Self {
        self.etag = Some(version);
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let json = [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))];
        let mut response = (self.status, json, self.body).into_response();
        let headers = response.headers_mut();
        if let Some(location) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.insert(header::LOCATION, location);
        }
        if let Some(tag) = self.etag.and_then(|v| HeaderValue::from_str(&format!("\"{v}\"")).ok()) {
            headers.insert(header::ETAG, tag);
        }
        response
    }
}

/// The body of a failure answer.
pub fn failure_body(code: &str, message: &str, details: Vec<switchyard_core::FieldError>) -> Value {
    let mut error = Map::new();
    error.insert("code".into(), Value::from(code));
    error.insert("message".into(), Value::from(message));
    if !details.is_empty() {
        error.insert("details".into(), serde_json::to_value(details).unwrap_or(Value::Null));
    }
    serde_json::json!({"success": false, "error": error, "metadata": Metadata::now()})
}

/// A failure answer: `{"success": false, "error": {…}, "metadata": …}`.
#[derive(Serialize, ToSchema)]
pub struct Failure {
    #[schema(example = false)]
    pub success: bool,
    pub error: ErrorBody,
    pub metadata: Metadata,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// One of validation_error, malformed_json, unauthorized, forbidden, not_found,
    /// method_not_allowed, conflict, precondition_failed, payload_too_large,
    /// unsupported_media_type, rate_limited, internal_error, unavailable.
    #[schema(example = "validation_error")]
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<switchyard_core::FieldError>,
}
