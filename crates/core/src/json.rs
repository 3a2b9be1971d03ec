//! Strict reading of client JSON: a body is parsed refusing duplicate object keys at any depth
//! ([`parse`]), then read into a typed input by a deserializer that takes every value for the
//! JSON type it is (an object is never read as an array, nor an array as an object) and words
//! each mismatch with the field's path and JSON types, never Rust types ([`from_value`]).
//! Every value a message repeats is cut to an [`excerpt`](crate::error::excerpt).

mod de;
mod parse;
mod tagged;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ValidationError, excerpt};

pub use parse::{ParseError, parse};
pub use tagged::{TaggedUnion, deserialize_tagged, serialize_tagged};

/// `value`, a request body, read into `T`; a mismatch names the field's path
/// (`retry.max_attempts`, `event_types[2]`, or `body` for the whole) and what it must be.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ValidationError> {
    T::deserialize(de::Strict::json(value)).map_err(|mismatch| mismatch.into_validation("", "body"))
}

/// `value`, found at `path` in a request body (`config`), read into `T`; a mismatch names the
/// full path (`config.auth.token`, or `config` for the whole; "" for the whole when `path` is
/// "", as [`ValidationError::nested`] reads it).
pub fn from_value_at<T: DeserializeOwned>(value: Value, path: &str) -> Result<T, ValidationError> {
    T::deserialize(de::Strict::json(value)).map_err(|mismatch| mismatch.into_validation(path, ""))
}

/// `value`, an object of strings (query parameters), read into `T`; numbers and booleans are
/// read from their text, and a mismatch names the parameter.
pub fn from_text_fields<T: DeserializeOwned>(value: Value) -> Result<T, ValidationError> {
    T::deserialize(de::Strict::text(value)).map_err(|mismatch| mismatch.into_validation("", "query"))
}

/// The canonical form of a JSON text: keys sorted, no insignificant whitespace. `None` when
/// `bytes` is not JSON this module accepts.
pub fn canonical(bytes: &[u8]) -> Option<Vec<u8>> {
    parse(bytes).ok().and_then(|value| serde_json::to_vec(&value).ok())
}

/// The JSON type of `value`, with its article, as messages name it.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One step from a value into a member: an object key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// `name`, `config.headers.x-team`, `events[2].event_type` under `root` (a path itself, or "");
/// "" for the root itself. Keys are cut to an excerpt.
fn render(root: &str, path: &[Step]) -> String {
    let mut out = root.to_owned();
    for step in path {
        match step {
            Step::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&excerpt(key));
            }
            Step::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

/// The JSON pointer `pointer` into `value` as a path under `root`: `/allOf/0/type` into
/// `{"allOf": [{…}]}` is `root.allOf[0].type` (a segment is an index only where `value` holds an
/// array).
pub fn pointer_to_path(root: &str, pointer: &str, value: &Value) -> String {
    let mut steps = Vec::new();
    let mut at = Some(value);
    for segment in pointer.split('/').skip(1) {
        let key = segment.replace("~1", "/").replace("~0", "~");
        let step = match (at, key.parse::<usize>()) {
            (Some(Value::Array(_)), Ok(index)) => Step::Index(index),
            _ => Step::Key(key),
        };
        at = match &step {
            Step::Index(index) => at.and_then(|v| v.get(index)),
            Step::Key(key) => at.and_then(|v| v.get(key)),
        };
        steps.push(step);
    }
    render(root, &steps)
}

/// Deepest nesting of arrays and objects the hub accepts in a JSON body; a bare value is
/// depth 0.
pub const MAX_DEPTH: usize = 32;

/// Whether the JSON text `json` nests arrays and objects deeper than `max`. One pass over the
/// bytes that only tracks strings and brackets (syntax is the parser's business), so nothing
/// deep is ever built.
pub fn nests_deeper_than(json: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod depth_tests {
    use super::nests_deeper_than;

    #[test]
    fn depth_counts_brackets_outside_strings_only() {
        assert!(!nests_deeper_than(br#"{"a":[{"b":1}]}"#, 3));
        assert!(nests_deeper_than(br#"{"a":[{"b":[]}]}"#, 3));
        assert!(!nests_deeper_than(br#"{"a":"[[[[\"[[[["}"#, 1));
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;
    use crate::destination::RetryPolicy;
    use crate::subscription::Ordering;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Input {
        name: Option<String>,
        tags: Option<Vec<String>>,
        retry: Option<RetryPolicy>,
        ordering: Option<Ordering>,
        config: Option<Value>,
        count: Option<u32>,
    }

    fn refusal<T: DeserializeOwned + std::fmt::Debug>(value: Value) -> (String, String) {
        let error = from_value::<T>(value).expect_err("refused");
        assert_eq!(error.0.len(), 1, "{error:?}");
        (error.0[0].field.clone(), error.0[0].message.clone())
    }

    /// Words of serde's own messages that name Rust rather than JSON.
    const RUST_WORDS: [&str; 8] = ["struct", "enum", "sequence", "map", "Option", "u32", "Input", "Ordering"];

    fn assert_json_words(message: &str) {
        for word in RUST_WORDS {
            assert!(!message.contains(word), "{word:?} in {message:?}");
        }
    }

    #[test]
    fn reads_what_serde_json_reads_from_objects() {
        let value = json!({"name": "n", "tags": ["a", "b"], "retry": {"max_attempts": 3},
            "ordering": "key", "config": {"x": [1, {"y": null}]}, "count": 7});
        let read: Input = from_value(value.clone()).unwrap();
        let expected: Input = serde_json::from_value(value).unwrap();
        assert_eq!(read, expected);
        assert_eq!(read.retry.map(|r| r.max_attempts), Some(3));
    }

    #[test]
    fn an_array_is_never_read_as_an_object() {
        let (field, message) = refusal::<Input>(json!(["n", ["a"], null, null, null, 1]));
        assert_eq!(field, "body");
        assert_eq!(message, "must be a JSON object; got an array");
        let (field, message) = refusal::<Input>(json!({"retry": [3, 1000, 2000, 2.0, 0.1, false]}));
        assert_eq!((field.as_str(), message.as_str()), ("retry", "must be a JSON object; got an array"));
    }

    #[test]
    fn mismatches_name_the_path_and_json_types() {
        let cases = [
            (json!({"name": ["x"]}), "name", "must be a string; got an array"),
            (json!({"tags": ["a", 5]}), "tags[1]", "must be a string; got a number"),
            (json!({"count": -1}), "count", "must be an integer from 0 to 4294967295"),
            (json!({"count": 1.5}), "count", "must be an integer from 0 to 4294967295"),
            (json!({"count": "7"}), "count", "must be an integer from 0 to 4294967295; got a string"),
            (json!({"retry": {"jitter": "x"}}), "retry.jitter", "must be a number; got a string"),
            (json!({"retry": {"retry_on_4xx": 1}}), "retry.retry_on_4xx", "must be a boolean; got a number"),
            (json!({"ordering": 1}), "ordering", "must be a string; got a number"),
            (
                json!({"ordering": "sideways"}),
                "ordering",
                "must be one of \"none\", \"key\"; got \"sideways\"",
            ),
            (
                json!({"colour": 1}),
                "colour",
                "is not a known field; the fields are \"name\", \"tags\", \"retry\", \"ordering\", \"config\", \"count\"",
            ),
            (
                json!({"retry": {"tries": 1}}),
                "retry.tries",
                "is not a known field; the fields are \"max_attempts\", \"initial_delay_ms\", \"max_delay_ms\", \"multiplier\", \"jitter\", \"retry_on_4xx\"",
            ),
        ];
        for (value, field, message) in cases {
            let (got_field, got_message) = refusal::<Input>(value.clone());
            assert_eq!((got_field.as_str(), got_message.as_str()), (field, message), "{value}");
            assert_json_words(&got_message);
        }
    }

    #[test]
    fn repeated_client_values_are_cut_short() {
        let long = "v".repeat(5000);
        let (field, message) = refusal::<Input>(json!({"ordering": long}));
        assert_eq!(field, "ordering");
        assert!(message.len() < 200, "{message}");
        let (field, _) = refusal::<Input>(json!({long.clone(): 1}));
        assert!(field.chars().count() <= crate::error::EXCERPT_CHARS + 1, "{field}");
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Query {
        page: Option<u32>,
        active: Option<bool>,
        after: Option<String>,
    }

    #[test]
    fn text_fields_read_numbers_and_booleans_from_text() {
        let read: Query = from_text_fields(json!({"page": "2", "active": "true", "after": "c"})).unwrap();
        assert_eq!((read.page, read.active, read.after.as_deref()), (Some(2), Some(true), Some("c")));
        let error = from_text_fields::<Query>(json!({"page": "abc"})).unwrap_err();
        assert_eq!(error.0[0].field, "page");
        assert_eq!(error.0[0].message, "must be an integer from 0 to 4294967295");
        let error = from_text_fields::<Query>(json!({"active": "yes"})).unwrap_err();
        assert_eq!(error.0[0].message, "must be true or false");
    }

    #[test]
    fn canonical_forms_ignore_whitespace_and_key_order_only() {
        let a = canonical(br#"{"b": [1, 2], "a": {"y": 1, "x": null}}"#);
        let b = canonical(b"{\"a\":{\"x\":null,\"y\":1},\n \"b\":[1,2]}");
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_ne!(a, canonical(br#"{"a": {"x": null, "y": 1}, "b": [2, 1]}"#));
        assert_eq!(canonical(b"{\"a\": 1"), None);
        assert_eq!(canonical(br#"{"a": 1, "a": 1}"#), None);
    }

    #[test]
    fn pointers_become_paths_with_indexes_where_the_value_has_arrays() {
        let schema = json!({"allOf": [{"type": "x"}], "properties": {"0": {"a/b": 1}}});
        assert_eq!(pointer_to_path("schema", "", &schema), "schema");
        assert_eq!(pointer_to_path("schema", "/allOf/0/type", &schema), "schema.allOf[0].type");
        assert_eq!(pointer_to_path("schema", "/properties/0/a~1b", &schema), "schema.properties.0.a/b");
        assert_eq!(pointer_to_path("schema", "/missing/1", &schema), "schema.missing.1");
    }

    #[test]
    fn paths_name_keys_and_indexes() {
        assert_eq!(render("", &[]), "");
        assert_eq!(render("config", &[]), "config");
        let path = [Step::Key("events".into()), Step::Index(2), Step::Key("event_type".into())];
        assert_eq!(render("", &path), "events[2].event_type");
        assert_eq!(render("config", &path[..2]), "config.events[2]");
        let long = render("", &[Step::Key("k".repeat(1000))]);
        assert!(long.chars().count() <= crate::error::EXCERPT_CHARS + 1, "{long}");
    }
}
