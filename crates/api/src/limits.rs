//! What a request may carry besides its body size (`limits.max_body_bytes`, 413): the size of
//! its header block, how deep its JSON nests and how long its strings are. Each refusal is a
//! 400 `validation_error` whose detail names the part and the limit.
//!
//! - Headers: at most [`MAX_HEADER_BYTES`] in all (names, values and their separators). SPEC §4
//!   has no code for 431, and 413 is about the body, so an oversized header block is a
//!   `validation_error` on the field `headers`. (A block past hyper's own parser limits, far
//!   larger or with more than twice [`crate::admission::MAX_HEADER_COUNT`] headers, is refused
//!   by hyper with a bodiless 431 before any handler runs.)
//! - JSON depth: at most [`MAX_JSON_DEPTH`] nested arrays and objects, counted on the raw
//!   bytes before parsing, so nothing deep is ever built.
//! - Strings: at most [`MAX_STRING_BYTES`] bytes of UTF-8 for every string and object key of a
//!   body, except inside an event's `payload` (the body's own, or that of each item of
//!   `events` in a batch), which `limits.max_payload_bytes` bounds as a whole instead.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use switchyard_core::ValidationError;
use switchyard_core::error::Violations;
use switchyard_core::json;

use crate::error::ApiError;

/// Largest header block, in bytes.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Deepest nesting of arrays and objects in a JSON body; a bare value is depth 0.
pub const MAX_JSON_DEPTH: usize = json::MAX_DEPTH;
/// Longest string or object key in a JSON body outside event payloads, in bytes.
pub const MAX_STRING_BYTES: usize = 64 * 1024;
/// Past this many, more long strings are not reported one by one.
const MAX_REPORTED: usize = 10;

/// Middleware: refuses a request whose header block is over [`MAX_HEADER_BYTES`].
pub async fn check_headers(request: Request, next: Next) -> Response {
    // As sent on the wire: `name: value\r\n`.
    let size: usize =
        request.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if size > MAX_HEADER_BYTES {
        let message = format!("are {size} bytes in all; the limit is {MAX_HEADER_BYTES} bytes");
        return ApiError::Validation(ValidationError::single("headers", message)).into_response();
    }
    next.run(request).await
}

/// Refuses a JSON text nested deeper than [`MAX_JSON_DEPTH`], before it is parsed.
pub fn check_depth(json: &[u8]) -> Result<(), ApiError> {
    if json::nests_deeper_than(json, MAX_JSON_DEPTH) {
        let message = format!("nests arrays and objects more than {MAX_JSON_DEPTH} levels deep");
        return Err(ValidationError::single("body", message).into());
    }
    Ok(())
}

/// Refuses strings and keys over [`MAX_STRING_BYTES`] anywhere in `body` but event payloads;
/// each detail names the string's path (`name`, `config.headers.x-team`, `events[2].event_type`).
pub fn check_strings(body: &Value) -> Result<(), ApiError> {
    let mut violations = Violations::default();
    let mut found = 0;
    let mut path = Vec::new();
    walk(body, &mut path, &mut |at, what, len| {
        found += 1;
        if found <= MAX_REPORTED {
            let field = if at.is_empty() { "body".to_owned() } else { at.to_owned() };
            violations.push(field, format!("{what} {len} bytes long; the limit is {MAX_STRING_BYTES} bytes"));
        }
    });
    violations.into_result().map_err(ApiError::from)
}

#[derive(Debug)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `payload` at the top of the body, or in an item of its `events` array.
fn is_payload(path: &[Step<'_>]) -> bool {
    matches!(path, [Step::Key("payload")] | [Step::Key("events"), Step::Index(_), Step::Key("payload")])
}

fn render(path: &[Step<'_>]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&switchyard_core::error::excerpt(key));
            }
            Step::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

/// Depth is bounded by [`check_depth`] before parsing, so the recursion is too.
fn walk<'a>(value: &'a Value, path: &mut Vec<Step<'a>>, report: &mut impl FnMut(&str, &str, usize)) {
    match value {
        Value::String(text) if text.len() > MAX_STRING_BYTES => {
            report(&render(path), "is a string", text.len());
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                path.push(Step::Index(index));
                walk(item, path, report);
                path.pop();
            }
        }
        Value::Object(members) => {
            for (key, member) in members {
                if key.len() > MAX_STRING_BYTES {
                    report(&render(path), "has a key", key.len());
                    continue;
                }
                path.push(Step::Key(key));
                if !is_payload(path) {
                    walk(member, path, report);
                }
                path.pop();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    fn fields(result: Result<(), ApiError>) -> Vec<String> {
        match result {
            Err(ApiError::Validation(ValidationError(details))) => {
                details.into_iter().map(|d| d.field).collect()
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn depth_is_counted_outside_strings_only() {
        assert!(check_depth(nested(MAX_JSON_DEPTH).as_bytes()).is_ok());
        assert_eq!(fields(check_depth(nested(MAX_JSON_DEPTH + 1).as_bytes())), ["body"]);
        let mixed = format!("{}1{}", r#"{"a":"#.repeat(20), "}".repeat(20));
        assert!(check_depth(mixed.as_bytes()).is_ok());
        let brackets_in_strings = format!(r#"{{"a": "{}", "b": "\"[{{"}}"#, "[".repeat(100));
        assert!(check_depth(brackets_in_strings.as_bytes()).is_ok());
        // Far past serde_json's own recursion limit, refused by the scan with a clear message.
        assert_eq!(fields(check_depth(nested(10_000).as_bytes())), ["body"]);
    }

    #[test]
    fn long_strings_and_keys_are_named_by_path() {
        let long = "x".repeat(MAX_STRING_BYTES + 1);
        let body = json!({
            "name": long,
            "config": {"headers": {"x-team": long}},
            "events": [{"event_type": "a"}, {"event_type": long}],
            long.clone(): 1,
        });
        let mut found = fields(check_strings(&body));
        found.sort();
        assert_eq!(found, ["body", "config.headers.x-team", "events[1].event_type", "name"]);
        assert!(check_strings(&json!({"name": "x".repeat(MAX_STRING_BYTES)})).is_ok());
    }

    #[test]
    fn event_payloads_are_left_to_their_own_limit() {
        let long = "x".repeat(MAX_STRING_BYTES + 1);
        assert!(check_strings(&json!({"payload": {"blob": long, "deep": [long]}})).is_ok());
        assert!(check_strings(&json!({"events": [{"payload": long}, {"payload": {"a": long}}]})).is_ok());
        assert_eq!(fields(check_strings(&json!({"metadata": {"payload": long}}))), ["metadata.payload"]);
        assert_eq!(fields(check_strings(&json!({"events": [{"metadata": long}]}))), ["events[0].metadata"]);
    }

    #[test]
    fn only_the_first_few_long_strings_are_reported() {
        let long = "x".repeat(MAX_STRING_BYTES + 1);
        let body = Value::Array(vec![Value::String(long); 50]);
        assert_eq!(fields(check_strings(&body)).len(), MAX_REPORTED);
    }
}
