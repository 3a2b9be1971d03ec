//! A `serde` deserializer over an owned `Value` that only hands a visitor what the JSON type
//! is: a struct or map needs an object, a sequence an array, an integer a number in the target's
//! range. `serde_json`'s own reads a struct from an array too (by position) and words its
//! errors with Rust types ("expected struct X with 8 elements"); this one names JSON types, and
//! its errors carry the path they happened at.

use std::fmt;

use serde::de::value::StringDeserializer;
use serde::de::{
    self, DeserializeSeed, EnumAccess, Expected, IntoDeserializer, MapAccess, SeqAccess, Unexpected,
    VariantAccess, Visitor,
};
use serde_json::Value;

use super::tagged::{TAG, TAGGED_UNION};
use super::{Step, render, type_name};
use crate::error::{ValidationError, excerpt};

/// A value to read, and whether its scalars are text to read numbers and booleans from (query
/// parameters) or JSON.
pub struct Strict {
    value: Value,
    text: bool,
}

impl Strict {
    pub fn json(value: Value) -> Self {
        Self { value, text: false }
    }

    pub fn text(value: Value) -> Self {
        Self { value, text: true }
    }

    fn mismatch(&self, expected: &str) -> Mismatch {
        Mismatch::new(format!("must be {expected}; got {}", type_name(&self.value)))
    }

    /// The value as a whole number, if it is one (or, for text, reads as one).
    fn whole(&self) -> Option<i128> {
        match &self.value {
            Value::Number(n) => n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from)),
            Value::String(s) if self.text => s.parse().ok(),
            _ => None,
        }
    }

    fn integer<T: TryFrom<i128> + fmt::Display>(&self, min: T, max: T) -> Result<T, Mismatch> {
        self.whole().and_then(|n| T::try_from(n).ok()).ok_or_else(|| {
            let wanted = format!("an integer from {min} to {max}");
            match &self.value {
                Value::Number(_) => Mismatch::new(format!("must be {wanted}")),
                Value::String(_) if self.text => Mismatch::new(format!("must be {wanted}")),
                _ => self.mismatch(&wanted),
            }
        })
    }

    fn float(&self) -> Result<f64, Mismatch> {
        let read = match &self.value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) if self.text => s.parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        };
        read.ok_or_else(|| self.mismatch("a number"))
    }

    fn boolean(&self) -> Result<bool, Mismatch> {
        match &self.value {
            Value::Bool(b) => Ok(*b),
            Value::String(s) if self.text && (s == "true" || s == "false") => Ok(s == "true"),
            _ if self.text => Err(Mismatch::new("must be true or false")),
            _ => Err(self.mismatch("a boolean")),
        }
    }
}

fn read_array<'de, V: Visitor<'de>>(items: Vec<Value>, text: bool, visitor: V) -> Result<V::Value, Mismatch> {
    let mut access = Items { items: items.into_iter().enumerate(), text };
    let value = visitor.visit_seq(&mut access)?;
    if access.items.len() > 0 {
        return Err(Mismatch::new("has more items than expected"));
    }
    Ok(value)
}

fn read_object<'de, V: Visitor<'de>>(
    members: serde_json::Map<String, Value>,
    text: bool,
    visitor: V,
) -> Result<V::Value, Mismatch> {
    let mut access = Members { members: members.into_iter(), pending: None, text };
    let value = visitor.visit_map(&mut access)?;
    if access.members.len() > 0 {
        return Err(Mismatch::new("has more members than expected"));
    }
    Ok(value)
}

macro_rules! integers {
    ($($method:ident $visit:ident $ty:ty;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
            visitor.$visit(self.integer::<$ty>(<$ty>::MIN, <$ty>::MAX)?)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Strict {
    type Error = Mismatch;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Number(ref n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => visitor.visit_string(s),
            Value::Array(items) => read_array(items, self.text, visitor),
            Value::Object(members) => read_object(members, self.text, visitor),
        }
    }

    integers! {
        deserialize_i8 visit_i8 i8;
        deserialize_i16 visit_i16 i16;
        deserialize_i32 visit_i32 i32;
        deserialize_i64 visit_i64 i64;
        deserialize_u8 visit_u8 u8;
        deserialize_u16 visit_u16 u16;
        deserialize_u32 visit_u32 u32;
        deserialize_u64 visit_u64 u64;
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        visitor.visit_bool(self.boolean()?)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        visitor.visit_f64(self.float()?)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        let mut chars = match &self.value {
            Value::String(s) => s.chars(),
            _ => return Err(self.mismatch("a single character")),
        };
        match (chars.next(), chars.next()) {
            (Some(c), None) => visitor.visit_char(c),
            _ => Err(Mismatch::new("must be a single character")),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        match self.value {
            Value::String(s) => visitor.visit_string(s),
            _ => Err(self.mismatch("a string")),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        self.deserialize_string(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        self.deserialize_byte_buf(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        match self.value {
            Value::String(s) => visitor.visit_string(s),
            Value::Array(items) => read_array(items, self.text, visitor),
            _ => Err(self.mismatch("a string or an array")),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        match self.value {
            Value::Null => visitor.visit_unit(),
            _ => Err(self.mismatch("null")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Mismatch> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Mismatch> {
        if name == TAGGED_UNION { self.tagged_union(visitor) } else { visitor.visit_newtype_struct(self) }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        match self.value {
            Value::Array(items) => read_array(items, self.text, visitor),
            _ => Err(self.mismatch("an array")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Mismatch> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Mismatch> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        match self.value {
            Value::Object(members) => read_object(members, self.text, visitor),
            _ => Err(self.mismatch("a JSON object")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Mismatch> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Mismatch> {
        let text = self.text;
        match self.value {
            Value::String(name) => visitor.visit_enum(name.into_deserializer()),
            Value::Object(members) if members.len() == 1 => {
                let Some((name, value)) = members.into_iter().next() else {
                    return Err(Mismatch::new("must be a string"));
                };
                visitor.visit_enum(Variant { name, value: Strict { value, text }, named_by_tag: false })
            }
            _ => Err(Strict { value: self.value, text }.mismatch("a string")),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        visitor.visit_unit()
    }
}

impl Strict {
    /// An object naming its variant in its `type` member (see [`super::tagged`]): the variant,
    /// then the other members as its content, at the object's own path.
    fn tagged_union<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        let text = self.text;
        let Value::Object(mut members) = self.value else {
            return Err(self.mismatch("a JSON object"));
        };
        let name = match members.remove(TAG) {
            Some(Value::String(name)) => name,
            Some(other) => {
                return Err(Mismatch::at_field(TAG, format!("must be a string; got {}", type_name(&other))));
            }
            None => return Err(Mismatch::at_field(TAG, "is required")),
        };
        let value = Strict { value: Value::Object(members), text };
        visitor.visit_enum(Variant { name, value, named_by_tag: true })
    }
}

struct Items {
    items: std::iter::Enumerate<std::vec::IntoIter<Value>>,
    text: bool,
}

impl<'de> SeqAccess<'de> for Items {
    type Error = Mismatch;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Mismatch> {
        let Some((index, value)) = self.items.next() else { return Ok(None) };
        seed.deserialize(Strict { value, text: self.text })
            .map(Some)
            .map_err(|error| error.under(Step::Index(index)))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Members {
    members: serde_json::map::IntoIter,
    pending: Option<(String, Value)>,
    text: bool,
}

impl<'de> MapAccess<'de> for Members {
    type Error = Mismatch;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Mismatch> {
        let Some((key, value)) = self.members.next() else { return Ok(None) };
        let read = seed.deserialize(StringDeserializer::<Mismatch>::new(key.clone()))?;
        self.pending = Some((key, value));
        Ok(Some(read))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Mismatch> {
        let (key, value) =
            self.pending.take().ok_or_else(|| Mismatch::new("a member's value was read before its key"))?;
        seed.deserialize(Strict { value, text: self.text }).map_err(|error| error.under(Step::Key(key)))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.members.len())
    }
}

/// An enum written as `{"variant": content}`, or (`named_by_tag`) as an object whose `type`
/// member names the variant and whose other members are its content.
struct Variant {
    name: String,
    value: Strict,
    named_by_tag: bool,
}

/// Where a mismatch in a variant's content was found: under the variant's key, or at the
/// object itself when the variant was named by its tag.
fn in_variant(name: String, named_by_tag: bool) -> impl FnOnce(Mismatch) -> Mismatch {
    move |error| if named_by_tag { error } else { error.under(Step::Key(name)) }
}

impl<'de> EnumAccess<'de> for Variant {
    type Error = Mismatch;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), Mismatch> {
        match seed.deserialize(StringDeserializer::<Mismatch>::new(self.name.clone())) {
            Ok(read) => Ok((read, self)),
            Err(error) if self.named_by_tag => Err(error.under(Step::Key(TAG.to_owned()))),
            Err(error) => Err(error),
        }
    }
}

impl<'de> VariantAccess<'de> for Variant {
    type Error = Mismatch;

    fn unit_variant(self) -> Result<(), Mismatch> {
        if self.named_by_tag {
            return match &self.value.value {
                Value::Object(members) => match members.keys().next() {
                    Some(key) => Err(de::Error::unknown_field(key, &[])),
                    None => Ok(()),
                },
                _ => Err(self.value.mismatch("a JSON object")),
            };
        }
        let name = self.name.clone();
        de::Deserializer::deserialize_unit(self.value, de::IgnoredAny)
            .map(|_| ())
            .map_err(|error| error.under(Step::Key(name)))
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, Mismatch> {
        let Variant { name, value, named_by_tag } = self;
        seed.deserialize(value).map_err(in_variant(name, named_by_tag))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Mismatch> {
        let Variant { name, value, named_by_tag } = self;
        de::Deserializer::deserialize_seq(value, visitor).map_err(in_variant(name, named_by_tag))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Mismatch> {
        let Variant { name, value, named_by_tag } = self;
        de::Deserializer::deserialize_map(value, visitor).map_err(in_variant(name, named_by_tag))
    }
}

/// A value that is not what its field needs: where (innermost step first, as it is found on
/// the way out) and what it must be.
#[derive(Debug)]
pub struct Mismatch {
    steps_inside_out: Vec<Step>,
    message: String,
}

impl Mismatch {
    fn new(message: impl Into<String>) -> Self {
        Self { steps_inside_out: Vec::new(), message: message.into() }
    }

    fn at_field(field: &str, message: impl Into<String>) -> Self {
        Self { steps_inside_out: vec![Step::Key(field.to_owned())], message: message.into() }
    }

    fn under(mut self, step: Step) -> Self {
        self.steps_inside_out.push(step);
        self
    }

    fn path(&self, root: &str) -> String {
        let path: Vec<Step> = self.steps_inside_out.iter().rev().cloned().collect();
        render(root, &path)
    }

    /// The violation, its field named from `root` down; `whole` names the root itself when
    /// `root` is "".
    pub fn into_validation(self, root: &str, whole: &str) -> ValidationError {
        let path = self.path(root);
        ValidationError::single(if path.is_empty() { whole.to_owned() } else { path }, self.message)
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path("");
        write!(f, "{}: {}", if path.is_empty() { "body" } else { &path }, self.message)
    }
}

impl std::error::Error for Mismatch {}

impl de::Error for Mismatch {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Self::new(message.to_string())
    }

    fn invalid_type(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Self::new(format!("must be {}; got {}", expected_type(expected), unexpected_type(&unexpected)))
    }

    fn invalid_value(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Self::new(format!(
            "must be {}; {} is not accepted",
            expected_type(expected),
            unexpected_value(&unexpected)
        ))
    }

    fn invalid_length(len: usize, _expected: &dyn Expected) -> Self {
        Self::new(format!("has the wrong number of items ({len})"))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::new(format!("must be one of {}; got \"{}\"", quoted_list(expected), excerpt(variant)))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self::at_field(field, format!("is not a known field; the fields are {}", quoted_list(expected)))
    }

    fn missing_field(field: &'static str) -> Self {
        Self::at_field(field, "is required")
    }

    fn duplicate_field(field: &'static str) -> Self {
        Self::at_field(field, "is given more than once")
    }
}

fn quoted_list(names: &[&str]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    names.iter().map(|name| format!("\"{name}\"")).collect::<Vec<_>>().join(", ")
}

/// The JSON type a visitor's expectation amounts to. Its text is written for Rust readers
/// ("struct Input", "u32", "a sequence"), so only its kind is kept.
fn expected_type(expected: &dyn Expected) -> &'static str {
    let text = expected.to_string().to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|word| text.contains(word));
    if has(&["struct", "map", "object"]) {
        "an object"
    } else if has(&["sequence", "tuple", "array", "vec"]) {
        "an array"
    } else if has(&["bool"]) {
        "a boolean"
    } else if has(&["f32", "f64", "float"]) {
        "a number"
    } else if has(&["integer", "u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "usize", "isize"]) {
        "an integer"
    } else if has(&["str", "char", "identifier", "variant", "enum"]) {
        "a string"
    } else if has(&["unit", "null"]) {
        "null"
    } else {
        "a value of another type"
    }
}

fn unexpected_type(unexpected: &Unexpected<'_>) -> &'static str {
    match unexpected {
        Unexpected::Bool(_) => "a boolean",
        Unexpected::Unsigned(_) | Unexpected::Signed(_) => "an integer",
        Unexpected::Float(_) => "a number",
        Unexpected::Char(_) | Unexpected::Str(_) | Unexpected::Bytes(_) => "a string",
        Unexpected::Unit | Unexpected::Option => "null",
        Unexpected::Seq => "an array",
        Unexpected::Map => "an object",
        _ => "a value of another type",
    }
}

/// The offending value as a message may repeat it: scalars shown (strings cut to an excerpt),
/// anything else by its type.
fn unexpected_value(unexpected: &Unexpected<'_>) -> String {
    match unexpected {
        Unexpected::Bool(b) => b.to_string(),
        Unexpected::Unsigned(n) => n.to_string(),
        Unexpected::Signed(n) => n.to_string(),
        Unexpected::Float(n) => n.to_string(),
        Unexpected::Char(c) => format!("\"{c}\""),
        Unexpected::Str(s) => format!("\"{}\"", excerpt(s)),
        other => unexpected_type(other).to_owned(),
    }
}
