//! Parsing a JSON text into a `Value` as `serde_json` does, except that an object naming the
//! same key twice is refused rather than keeping the last: two readers of such a body can
//! disagree about what it says.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::{Step, render};

/// Why a JSON text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON: the parser's own account, with its line and column.
    #[error("{0}")]
    Syntax(String),
    /// The key at this path (`payload.a`) appears twice in its object.
    #[error("{0}: appears more than once in the same object")]
    DuplicateKey(String),
}

/// Parses `bytes` as one JSON value, refusing duplicate keys at any depth.
pub fn parse(bytes: &[u8]) -> Result<Value, ParseError> {
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let mut trail = Trail::default();
    match (ValueSeed { trail: &mut trail }).deserialize(&mut reader) {
        Ok(value) => {
            reader.end().map_err(|error| ParseError::Syntax(error.to_string()))?;
            Ok(value)
        }
        Err(error) => Err(match trail.duplicate {
            Some(path) => ParseError::DuplicateKey(path),
            None => ParseError::Syntax(error.to_string()),
        }),
    }
}

/// Where the parser is, and the duplicate it found, if any.
#[derive(Default)]
struct Trail {
    path: Vec<Step>,
    duplicate: Option<String>,
}

struct ValueSeed<'t> {
    trail: &'t mut Trail,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Value, A::Error> {
        let mut values = Vec::new();
        loop {
            self.trail.path.push(Step::Index(values.len()));
            let item = items.next_element_seed(ValueSeed { trail: &mut *self.trail })?;
            self.trail.path.pop();
            match item {
                Some(value) => values.push(value),
                None => return Ok(Value::Array(values)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = members.next_key::<String>()? {
            if map.contains_key(&key) {
                self.trail.path.push(Step::Key(key));
                self.trail.duplicate = Some(render("", &self.trail.path));
                return Err(A::Error::custom("duplicate key"));
            }
            self.trail.path.push(Step::Key(key.clone()));
            let value = members.next_value_seed(ValueSeed { trail: &mut *self.trail })?;
            self.trail.path.pop();
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_like_serde_json() {
        let text = br#"{"a": [1, -2, 2.5, "x", true, null, {"b": {}}], "c": 18446744073709551615}"#;
        let expected: Value = serde_json::from_slice(text).unwrap();
        assert_eq!(parse(text), Ok(expected));
        assert_eq!(parse(b"\"s\""), Ok(json!("s")));
    }

    #[test]
    fn duplicate_keys_are_named_by_path_at_any_depth() {
        assert_eq!(parse(br#"{"a": 1, "a": 2}"#), Err(ParseError::DuplicateKey("a".into())));
        assert_eq!(
            parse(br#"{"payload": {"x": {"k": 1, "k": 1}}}"#),
            Err(ParseError::DuplicateKey("payload.x.k".into()))
        );
        assert_eq!(
            parse(br#"{"events": [{}, {"payload": {"n": 1, "n": 2}}]}"#),
            Err(ParseError::DuplicateKey("events[1].payload.n".into()))
        );
        // The same key in sibling objects is no duplicate.
        assert!(parse(br#"[{"a": 1}, {"a": 1}]"#).is_ok());
    }

    #[test]
    fn syntax_errors_stay_syntax_errors() {
        for text in ["{\"a\": ", "", "nul", "{\"a\":1}}", "[1,]"] {
            assert!(matches!(parse(text.as_bytes()), Err(ParseError::Syntax(_))), "{text}");
        }
    }
}
