//! Event-type patterns of subscriptions: `order.created` (exact), `order.*` (one segment),
//! `order.#` (any depth below `order`, at least one segment) and `#` (everything).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::event::EventType;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(
    value_type = String,
    min_length = 1,
    max_length = 128,
    pattern = r"^(?:(?:[a-z0-9_]+|\*)(?:\.(?:[a-z0-9_]+|\*))*(?:\.#)?|#)$",
    example = "order.*"
)]
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
    use proptest::prelude::*;

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

    /// The matching rule spelled out segment by segment, independently of the iterator walk
    /// above: a literal matches itself, `*` any one segment, and a final `#` one or more.
    fn reference_matches(pattern: &[&str], event_type: &[&str]) -> bool {
        match (pattern.split_first(), event_type.split_first()) {
            (None, None) => true,
            (Some((&"#", _)), _) => !event_type.is_empty(),
            (Some((&"*", more)), Some((_, rest))) => reference_matches(more, rest),
            (Some((literal, more)), Some((segment, rest))) => {
                literal == segment && reference_matches(more, rest)
            }
            _ => false,
        }
    }

    /// Segments from a small alphabet, so that patterns and types often share them.
    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![Just("a".to_owned()), Just("b".to_owned()), Just("order".to_owned()), "[a-z0-9_]{1,4}"]
    }

    fn event_type() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(segment(), 1..6)
    }

    /// Literal or `*` segments, the last possibly `#`.
    fn pattern() -> impl Strategy<Value = Vec<String>> {
        let part = prop_oneof![3 => segment(), 1 => Just("*".to_owned())];
        (proptest::collection::vec(part, 0..5), any::<bool>()).prop_map(|(mut segments, hash)| {
            if hash || segments.is_empty() {
                segments.push("#".to_owned());
            }
            segments
        })
    }

    fn pattern_of(segments: &[String]) -> EventTypePattern {
        EventTypePattern::parse(&segments.join(".")).expect("a valid pattern")
    }

    fn type_of(segments: &[String]) -> EventType {
        EventType::parse(&segments.join(".")).expect("a valid event type")
    }

    proptest! {
        #[test]
        fn matching_agrees_with_the_reference(pattern in pattern(), event_type in event_type()) {
            let wanted: Vec<&str> = pattern.iter().map(String::as_str).collect();
            let actual: Vec<&str> = event_type.iter().map(String::as_str).collect();
            let (pattern, event_type) = (pattern_of(&pattern), type_of(&event_type));
            prop_assert_eq!(
                pattern.matches(&event_type),
                reference_matches(&wanted, &actual),
                "{} against {}", pattern, event_type.as_str()
            );
        }

        #[test]
        fn a_type_as_a_pattern_matches_itself_alone(segments in event_type(), other in event_type()) {
            let (exact, itself, other) = (pattern_of(&segments), type_of(&segments), type_of(&other));
            prop_assert!(exact.matches(&itself));
            prop_assert_eq!(exact.matches(&other), other == itself);
        }

        #[test]
        fn a_star_for_any_segment_still_matches_at_the_same_depth_only(
            segments in event_type(),
            at in any::<prop::sample::Index>(),
            extra in segment(),
        ) {
            let mut starred = segments.clone();
            starred[at.index(segments.len())] = "*".to_owned();
            let starred = pattern_of(&starred);
            prop_assert!(starred.matches(&type_of(&segments)));
            let deeper = [segments.as_slice(), &[extra]].concat();
            prop_assert!(!starred.matches(&type_of(&deeper)), "* is one segment, not more");
            if segments.len() > 1 {
                let shallower = &segments[..segments.len() - 1];
                prop_assert!(!starred.matches(&type_of(shallower)), "* is one segment, not none");
            }
        }

        #[test]
        fn a_trailing_hash_matches_everything_strictly_below_its_prefix(
            prefix in proptest::collection::vec(segment(), 0..4),
            below in event_type(),
        ) {
            let hash = pattern_of(&[prefix.as_slice(), &["#".to_owned()]].concat());
            prop_assert!(hash.matches(&type_of(&[prefix.as_slice(), below.as_slice()].concat())));
            if !prefix.is_empty() {
                prop_assert!(!hash.matches(&type_of(&prefix)), "# needs at least one segment below");
            }
        }

        #[test]
        fn parsing_accepts_exactly_the_pattern_grammar(raw in "[a-z_A-Z.*#]{0,12}") {
            let segments: Vec<&str> = raw.split('.').collect();
            let last = segments.len() - 1;
            let well_formed = segments.iter().enumerate().all(|(i, s)| {
                *s == "*"
                    || (*s == "#" && i == last)
                    || (!s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            });
            match EventTypePattern::parse(&raw) {
                Ok(parsed) => {
                    prop_assert!(well_formed, "{} was accepted", raw);
                    prop_assert_eq!(parsed.as_str(), raw.as_str());
                }
                Err(_) => prop_assert!(!well_formed, "{} was refused", raw),
            }
        }
    }
}
