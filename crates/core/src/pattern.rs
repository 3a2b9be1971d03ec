//! Event-type patterns of subscriptions: `order.created` (exact), `order.*` (one segment),
//! `order.#` (any depth below `order`, at least one segment) and `#` (everything).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::event::EventType;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "order.*")]
pub struct EventTypePattern(String);

impl EventTypePattern {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        if raw.is_empty() || raw.len() > 128 {
            return Err(ValidationError::single("", "must be 1 to 128 characters"));
        }
        let segments: Vec<&str> = raw.split('.').collect();
        let last = segments.len() - 1;
        for (i, segment) in segments.iter().enumerate() {
            let literal = !segment.is_empty()
                && segment.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            let valid = literal || *segment == "*" || (*segment == "#" && i == last);
            if !valid {
                return Err(ValidationError::single(
                    "",
                    "must be dotted lowercase segments, where a segment may be * (one segment) \
                     and the last may be # (any depth)",
                ));
            }
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, event_type: &EventType) -> bool {
        let mut wanted = self.0.split('.');
        let mut actual = event_type.segments();
        loop {
            match (wanted.next(), actual.next()) {
                (Some("#"), rest) => return self.0 == "#" || rest.is_some(),
                (Some("*"), Some(_)) => {}
                (Some(w), Some(a)) if w == a => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

impl TryFrom<String> for EventTypePattern {
    type Error = ValidationError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<EventTypePattern> for String {
    fn from(p: EventTypePattern) -> Self {
        p.0
    }
}

impl fmt::Display for EventTypePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, event_type: &str) -> bool {
        EventTypePattern::parse(pattern).unwrap().matches(&EventType::parse(event_type).unwrap())
    }

    #[test]
    fn exact_patterns_match_only_themselves() {
        assert!(matches("order.created", "order.created"));
        assert!(!matches("order.created", "order.created.v2"));
        assert!(!matches("order.created", "order"));
    }

    #[test]
    fn star_matches_exactly_one_segment() {
        assert!(matches("order.*", "order.created"));
        assert!(!matches("order.*", "order"));
        assert!(!matches("order.*", "order.created.v2"));
        assert!(matches("*.created", "invoice.created"));
    }

    #[test]
    fn hash_matches_any_depth_below() {
        assert!(matches("order.#", "order.created"));
        assert!(matches("order.#", "order.line.added"));
        assert!(!matches("order.#", "order"));
        assert!(!matches("order.#", "invoice.created"));
        assert!(matches("#", "anything.at.all"));
        assert!(matches("#", "x"));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in ["", "order.", "Order.*", "#.order", "order.#.x", "order.**", "a..b"] {
            assert!(EventTypePattern::parse(bad).is_err(), "{bad}");
        }
    }
}
