//! Extractors whose every rejection is an `ApiError`, so no framework-default error text ever
//! reaches a client.
//!
//! Every JSON body is read strictly, here and nowhere else (see `switchyard_core::json`): an
//! object that names a key twice is refused with the key's path, and a body is read only as
//! the JSON type it is, so an array never stands in for an object. Query parameters are held
//! to the same reading, and every message names fields and JSON types, repeating at most an
//! excerpt of what the client sent.

use axum::body::Bytes;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use switchyard_core::ValidationError;
use switchyard_core::error::excerpt;
use switchyard_core::json::{self, ParseError};

use crate::error::ApiError;
use crate::limits;

/// A JSON body (`Content-Type: application/json`) deserialised into `T`; type errors name the
/// offending field. Bodies are held to [`limits`]: nesting depth and string lengths.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        require_content_type(request.headers(), &["application/json"])?;
        let value = read_json(request, state).await?;
        from_value(value).map(ApiJson)
    }
}

/// A JSON Merge Patch (RFC 7396) body, sent as `application/merge-patch+json` or
/// `application/json`.
pub struct MergePatch(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for MergePatch {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        require_content_type(request.headers(), &["application/json", "application/merge-patch+json"])?;
        match read_json(request, state).await? {
            Value::Object(map) => Ok(MergePatch(map)),
            other => Err(ValidationError::single(
                "body",
                format!("a merge patch must be a JSON object; got {}", json::type_name(&other)),
            )
            .into()),
        }
    }
}

/// Reads `value` into `T` strictly, naming the field of the first mismatch.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    json::from_value(value).map_err(ApiError::Validation)
}

fn require_content_type(headers: &HeaderMap, accepted: &[&str]) -> Result<(), ApiError> {
    let given = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = given.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if accepted.contains(&essence.as_str()) {
        Ok(())
    } else {
        let shown = if given.is_empty() { "none".to_owned() } else { format!("{:?}", excerpt(given)) };
        Err(ApiError::UnsupportedMediaType(format!(
            "the body must be sent as {}; Content-Type was {shown}",
            accepted.join(" or ")
        )))
    }
}

async fn read_json<S: Send + Sync>(request: Request, state: &S) -> Result<Value, ApiError> {
    let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(
                "the request body is larger than the limit (limits.max_body_bytes)".into(),
            )
        } else {
            ApiError::Validation(ValidationError::single("body", "the request body could not be read"))
        }
    })?;
    if bytes.is_empty() {
        return Err(ApiError::MalformedJson("the body is empty".into()));
    }
    limits::check_depth(&bytes)?;
    let value = json::parse(&bytes).map_err(|error| match error {
        ParseError::Syntax(message) => ApiError::MalformedJson(message),
        ParseError::DuplicateKey(path) => {
            ApiError::Validation(ValidationError::single(path, "appears more than once in the same object"))
        }
    })?;
    limits::check_strings(&value)?;
    Ok(value)
}

/// Query parameters read into `T`; unknown, repeated or mistyped parameters are a 400 naming
/// the parameter.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri).map_err(|_| {
            ApiError::Validation(ValidationError::single("query", "the query string could not be read"))
        })?;
        let mut parameters = Map::new();
        for (name, value) in pairs {
            if parameters.contains_key(&name) {
                return Err(ValidationError::single(excerpt(&name), "is given more than once").into());
            }
            parameters.insert(name, Value::String(value));
        }
        json::from_text_fields(Value::Object(parameters)).map(ApiQuery).map_err(ApiError::Validation)
    }
}

/// The `If-Match` precondition of a write.
#[derive(Debug, Clone, Default)]
pub struct IfMatch(Option<Vec<String>>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let values: Vec<String> = parts
            .headers
            .get_all(header::IF_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|tag| tag.trim().to_owned())
            .collect();
        Ok(IfMatch(if values.is_empty() { None } else { Some(values) }))
    }
}

impl IfMatch {
    pub fn is_present(&self) -> bool {
        self.0.is_some()
    }

    /// Passes when no `If-Match` was sent, it is `*`, or one of its tags is `current`.
    pub fn check(&self, current: i64) -> Result<(), ApiError> {
        let Some(tags) = &self.0 else { return Ok(()) };
        let wanted = current.to_string();
        let matches = tags.iter().any(|tag| {
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            tag == "*" || tag.trim_matches('"') == wanted
        });
        if matches {
            Ok(())
        } else {
            Err(ApiError::PreconditionFailed(format!(
                "If-Match does not match the current version \"{current}\"; read the resource again"
            )))
        }
    }

    /// Maps a lost optimistic-update race to 412 when the client asked for a precondition.
    pub fn on_race(&self, error: switchyard_core::store::StoreError) -> ApiError {
        match error {
            switchyard_core::store::StoreError::VersionMismatch { current } if self.is_present() => {
                ApiError::PreconditionFailed(format!(
                    "the resource changed meanwhile; it is now at version \"{current}\""
                ))
            }
            other => other.into(),
        }
    }
}

/// RFC 7396: applies `patch` to `target` in place.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// Path parameters; a malformed one is a 400 in the envelope.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            // The only parameters are strings, so the one way to fail is a segment that does not
            // decode; axum's own text would name Rust types.
            .map_err(|rejection| {
                let field = match &rejection {
                    PathRejection::FailedToDeserializePathParams(failure) => match failure.kind() {
                        ErrorKind::InvalidUtf8InPathParam { key } => excerpt(key),
                        _ => "path".to_owned(),
                    },
                    _ => "path".to_owned(),
                };
                ApiError::Validation(ValidationError::single(
                    field,
                    "is not valid UTF-8 once percent-decoded",
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7396_examples() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "b"}), json!({"b": "c"}), json!({"a": "b", "b": "c"})),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (json!({"a": {"b": "c"}}), json!({"a": {"b": "d", "c": null}}), json!({"a": {"b": "d"}})),
            (json!({"a": [{"b": "c"}]}), json!({"a": [1]}), json!({"a": [1]})),
            (json!([1, 2]), json!({"a": "b"}), json!({"a": "b"})),
            (json!({"e": null}), json!({"a": 1}), json!({"e": null, "a": 1})),
        ];
        for (mut target, patch, expected) in cases {
            merge_patch(&mut target, &patch);
            assert_eq!(target, expected);
        }
    }

    #[test]
    fn if_match_accepts_current_weak_and_star() {
        let tags = |v: &[&str]| IfMatch(Some(v.iter().map(|s| s.to_string()).collect()));
        assert!(IfMatch::default().check(3).is_ok());
        assert!(tags(&["\"3\""]).check(3).is_ok());
        assert!(tags(&["W/\"3\""]).check(3).is_ok());
        assert!(tags(&["*"]).check(3).is_ok());
        assert!(tags(&["\"2\"", "\"3\""]).check(3).is_ok());
        assert!(tags(&["\"2\""]).check(3).is_err());
        assert!(tags(&["garbage"]).check(3).is_err());
    }
}
