//! W3C Trace Context (`traceparent`): accepted at ingest, kept with the event and passed on to
//! its deliveries as a child of the publisher's span.

use crate::error::ValidationError;

/// A parsed `traceparent` header of version `00`: `00-<trace-id>-<parent-id>-<flags>`, with a
/// 32-hex-digit trace id and a 16-hex-digit parent id, neither all zeros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: String,
    parent_id: String,
    flags: String,
}

impl TraceParent {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let invalid = || {
            ValidationError::single(
                "traceparent",
                "must be a W3C traceparent: 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>",
            )
        };
        let parts: Vec<&str> = raw.split('-').collect();
        let [version, trace_id, parent_id, flags] = parts.as_slice() else {
            return Err(invalid());
        };
        let lower_hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let all_zero = |s: &str| s.bytes().all(|b| b == b'0');
        if *version != "00"
            || !lower_hex(trace_id, 32)
            || !lower_hex(parent_id, 16)
            || !lower_hex(flags, 2)
            || all_zero(trace_id)
            || all_zero(parent_id)
        {
            return Err(invalid());
        }
        Ok(Self {
            trace_id: (*trace_id).to_owned(),
            parent_id: (*parent_id).to_owned(),
            flags: (*flags).to_owned(),
        })
    }

    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    pub fn parent_id(&self) -> &str {
        &self.parent_id
    }

    /// The header of a child span `span_id` (a zero id is replaced, since it is invalid).
    pub fn child(&self, span_id: u64) -> String {
        format!("00-{}-{:016x}-{}", self.trace_id, span_id.max(1), self.flags)
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "00-{}-{}-{}", self.trace_id, self.parent_id, self.flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_round_trips() {
        let parsed = TraceParent::parse(VALID).unwrap();
        assert_eq!(parsed.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.to_string(), VALID);
    }

    #[test]
    fn a_child_keeps_the_trace_and_flags_with_a_new_parent() {
        let child = TraceParent::parse(VALID).unwrap().child(0xabc);
        assert_eq!(child, "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-01");
        assert!(TraceParent::parse(&child).is_ok());
        assert!(TraceParent::parse(&TraceParent::parse(VALID).unwrap().child(0)).is_ok());
    }

    #[test]
    fn malformed_headers_are_refused() {
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert!(TraceParent::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
