//! Unions written with their variant in a `type` member (`{"type": "bearer", "token": …}`).
//!
//! serde's own `#[serde(tag = "type")]` reads such an object into a buffer before it knows the
//! variant, and a mismatch found in that buffer has lost where it was: `{"type": "bearer",
//! "token": 5}` would be refused at `auth`, not `auth.token`. A union declared with
//! [`tagged_union!`](crate::tagged_union) instead derives serde's externally tagged form
//! (`#[serde(remote = "Self")]`), and the strict reader hands it the variant named by `type`
//! first and the other members as the variant's fields, so every mismatch keeps its path.
//! Any other deserializer (a stored configuration read by `serde_json`) gets the same JSON
//! through [`external_form`].

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::EnumAccessDeserializer;
use serde::de::{self, Deserializer, EnumAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::Serializer as ValueSerializer;
use serde_json::{Map, Value};

/// The newtype name by which the strict reader recognises a tagged union.
pub(crate) const TAGGED_UNION: &str = "$switchyard::json::TaggedUnion";

/// The member naming a tagged union's variant.
pub(crate) const TAG: &str = "type";

/// A union whose derived (externally tagged) `Deserialize` [`tagged_union!`](crate::tagged_union)
/// turns into the `{"type": …}` form.
pub trait TaggedUnion: Sized {
    fn deserialize_variant<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error>;
}

/// Implements `Deserialize` (and, unless given `deserialize`, `Serialize`) in the `{"type": …}`
/// form for an enum deriving them with `#[serde(remote = "Self")]`.
#[macro_export]
macro_rules! tagged_union {
    (deserialize $union:ty) => {
        impl $crate::json::TaggedUnion for $union {
            fn deserialize_variant<'de, D: ::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> ::std::result::Result<Self, D::Error> {
                <$union>::deserialize(deserializer)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $union {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> ::std::result::Result<Self, D::Error> {
                $crate::json::deserialize_tagged(deserializer)
            }
        }
    };
    ($union:ty) => {
        $crate::tagged_union!(deserialize $union);

        impl ::serde::Serialize for $union {
            fn serialize<S: ::serde::Serializer>(
                &self,
                serializer: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                $crate::json::serialize_tagged(self, <$union>::serialize, serializer)
            }
        }
    };
}

/// Reads a [`TaggedUnion`] in the `{"type": …}` form (what [`tagged_union!`](crate::tagged_union)
/// makes its `Deserialize`).
pub fn deserialize_tagged<'de, T: TaggedUnion, D: Deserializer<'de>>(deserializer: D) -> Result<T, D::Error> {
    deserializer.deserialize_newtype_struct(TAGGED_UNION, UnionVisitor(PhantomData))
}

/// `union` written by `serialize_variant` (its derived, externally tagged `Serialize`) in the
/// `{"type": …}` form.
pub fn serialize_tagged<T, S: Serializer>(
    union: &T,
    serialize_variant: fn(&T, ValueSerializer) -> Result<Value, serde_json::Error>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let external = serialize_variant(union, ValueSerializer).map_err(serde::ser::Error::custom)?;
    internal_form(external).serialize(serializer)
}

struct UnionVisitor<T>(PhantomData<T>);

impl<'de, T: TaggedUnion> Visitor<'de> for UnionVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with a \"type\"")
    }

    /// The strict reader: the variant comes first, with the remaining members as its content.
    fn visit_enum<A: EnumAccess<'de>>(self, variant: A) -> Result<T, A::Error> {
        T::deserialize_variant(EnumAccessDeserializer::new(variant))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let candidates = external_form(value).map_err(de::Error::custom)?;
        let mut last = None;
        for candidate in candidates {
            match T::deserialize_variant(candidate) {
                Ok(union) => return Ok(union),
                Err(error) => last = Some(error),
            }
        }
        Err(de::Error::custom(last.map_or_else(|| "no variant".to_owned(), |e| e.to_string())))
    }
}

/// `{"type": "bearer", "token": "t"}` as serde's externally tagged forms: `{"bearer": {"token":
/// "t"}}`, and also `"bearer"` when there are no other members (a unit variant).
fn external_form(value: Value) -> Result<Vec<Value>, String> {
    let Value::Object(mut members) = value else { return Err("must be a JSON object".into()) };
    let tag = match members.remove(TAG) {
        Some(Value::String(tag)) => tag,
        Some(_) => return Err("\"type\" must be a string".into()),
        None => return Err("\"type\" is required".into()),
    };
    let mut candidates = Vec::with_capacity(2);
    if members.is_empty() {
        candidates.push(Value::String(tag.clone()));
    }
    candidates.push(Value::Object(Map::from_iter([(tag, Value::Object(members))])));
    Ok(candidates)
}

/// The reverse of [`external_form`].
fn internal_form(external: Value) -> Value {
    match external {
        Value::String(tag) => Value::Object(Map::from_iter([(TAG.to_owned(), Value::String(tag))])),
        Value::Object(outer) if outer.len() == 1 => {
            let Some((tag, content)) = outer.into_iter().next() else { return Value::Null };
            let mut members = Map::from_iter([(TAG.to_owned(), Value::String(tag))]);
            if let Value::Object(fields) = content {
                members.extend(fields);
            }
            Value::Object(members)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    use crate::json::from_value;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(remote = "Self", rename_all = "snake_case", deny_unknown_fields)]
    enum Auth {
        None,
        Bearer { token: String },
        Basic { username: String, password: String, retries: Option<u32> },
        Empty {},
    }

    crate::tagged_union!(Auth);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Config {
        auth: Auth,
    }

    fn refusal(value: serde_json::Value) -> (String, String) {
        let error = from_value::<Config>(value).expect_err("refused");
        (error.0[0].field.clone(), error.0[0].message.clone())
    }

    #[test]
    fn every_variant_reads_and_writes_the_type_member_form() {
        let cases = [
            (json!({"auth": {"type": "none"}}), Auth::None),
            (json!({"auth": {"type": "bearer", "token": "t"}}), Auth::Bearer { token: "t".into() }),
            (json!({"auth": {"type": "empty"}}), Auth::Empty {}),
        ];
        for (value, auth) in cases {
            let strict: Config = from_value(value.clone()).unwrap();
            let stored: Config = serde_json::from_value(value.clone()).unwrap();
            assert_eq!(strict.auth, auth);
            assert_eq!(stored.auth, auth);
            assert_eq!(serde_json::to_value(&strict).unwrap(), value);
        }
    }

    #[test]
    fn mismatches_inside_a_variant_keep_their_path() {
        let cases = [
            (json!({"type": "bearer", "token": 5}), "auth.token", "must be a string; got a number"),
            (json!({"type": "basic", "username": "u"}), "auth.password", "is required"),
            (json!({"type": "basic", "username": "u", "password": "p", "retries": -1}), "auth.retries", ""),
            (json!({"type": "bearer", "token": "t", "colour": 1}), "auth.colour", ""),
            (json!({"type": "kerberos"}), "auth.type", "must be one of"),
            (json!({"type": 7}), "auth.type", "must be a string; got a number"),
            (json!({"token": "t"}), "auth.type", "is required"),
            (json!({"type": "none", "token": "t"}), "auth.token", "is not a known field"),
            (json!(["bearer"]), "auth", "must be a JSON object; got an array"),
        ];
        for (auth, field, message) in cases {
            let (got_field, got_message) = refusal(json!({"auth": auth}));
            assert_eq!(got_field, field, "{auth}");
            assert!(got_message.starts_with(message), "{auth}: {got_message}");
        }
    }
}
