//! Positions in the live streams of events and of delivery changes, and what a stream shows.
//!
//! A stream position is a pair: the commit position of a row (0 for events on SQLite, whose
//! single writer commits in `seq` order; the writing transaction's id on PostgreSQL; the
//! change counter or changing transaction of a delivery) and the row's `seq`. It is opaque to
//! clients and distinct from a listing's [`crate::page::Cursor`], so one is never mistaken for
//! the other.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::delivery::{Delivery, DeliveryStatus};
use crate::error::ValidationError;
use crate::event::{Event, EventId};
use crate::id::{DestinationId, SubscriptionId};
use crate::pattern::EventTypePattern;

/// Which stream a cursor belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Events,
    Deliveries,
}

impl StreamKind {
    fn prefix(self) -> &'static str {
        match self {
            Self::Events => "se1:",
            Self::Deliveries => "sd1:",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::Deliveries => "deliveries",
        }
    }
}

/// A position in a stream: what was shown up to and including it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamCursor {
    position: i64,
    seq: i64,
}

impl StreamCursor {
    pub fn new(position: i64, seq: i64) -> Self {
        Self { position, seq }
    }

    /// The start of a stream: before every row.
    pub fn origin() -> Self {
        Self { position: 0, seq: 0 }
    }

    pub fn position(self) -> i64 {
        self.position
    }

    pub fn seq(self) -> i64 {
        self.seq
    }

    pub fn encode(self, kind: StreamKind) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}{}.{}", kind.prefix(), self.position, self.seq))
    }

    /// Reads a cursor of the `kind` stream given in `field`; a listing's cursor or the other
    /// stream's is refused with a message that says so.
    pub fn decode(raw: &str, kind: StreamKind, field: &str) -> Result<Self, ValidationError> {
        let invalid = |why: &str| ValidationError::single(field, why);
        let text = URL_SAFE_NO_PAD
            .decode(raw.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                invalid("is not a cursor of this stream: resume from the `id` of one of its frames")
            })?;
        if text.starts_with("c1:") {
            return Err(invalid(
                "is a listing's cursor (pagination.next_cursor); a stream resumes from the `id` of one of its frames",
            ));
        }
        let other = match kind {
            StreamKind::Events => StreamKind::Deliveries,
            StreamKind::Deliveries => StreamKind::Events,
        };
        if text.starts_with(other.prefix()) {
            return Err(invalid(&format!(
                "is a cursor of the {} stream, not of the {} stream",
                other.name(),
                kind.name()
            )));
        }
        let parsed = text.strip_prefix(kind.prefix()).and_then(|rest| {
            let (position, seq) = rest.split_once('.')?;
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if !digits(position) || !digits(seq) {
                return None;
            }
            Some(Self { position: position.parse().ok()?, seq: seq.parse().ok()? })
        });
        parsed.ok_or_else(|| {
            invalid("is not a cursor of this stream: resume from the `id` of one of its frames")
        })
    }
}

/// One read of a stream: the matching items after a cursor, each with its own cursor, and
/// where the read ended (past items that did not match too).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamPage<T> {
    pub items: Vec<(StreamCursor, T)>,
    /// The position of the last row read, matching or not; `None` when nothing was read.
    pub end: Option<StreamCursor>,
    /// Whether the read was cut at its limit, so more may follow at once.
    pub more: bool,
}

/// What the events stream shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventStreamFilter {
    pub event_type: Option<EventTypePattern>,
    pub source: Option<String>,
    pub correlation_id: Option<String>,
}

impl EventStreamFilter {
    pub fn matches(&self, event: &Event) -> bool {
        self.event_type.as_ref().is_none_or(|p| p.matches(&event.event_type))
            && self.source.as_deref().is_none_or(|s| s == event.source.as_str())
            && self.correlation_id.as_deref().is_none_or(|c| c == event.metadata.correlation_id)
    }
}

/// What the deliveries stream shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryStreamFilter {
    pub status: Option<DeliveryStatus>,
    pub event_id: Option<EventId>,
    pub destination_id: Option<DestinationId>,
    pub subscription_id: Option<SubscriptionId>,
}

impl DeliveryStreamFilter {
    pub fn matches(&self, delivery: &Delivery) -> bool {
        self.status.is_none_or(|s| s == delivery.status)
            && self.event_id.as_ref().is_none_or(|e| *e == delivery.event_id)
            && self.destination_id.as_ref().is_none_or(|d| *d == delivery.destination_id)
            && self.subscription_id.as_ref().is_none_or(|s| *s == delivery.subscription_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::Cursor;

    #[test]
    fn cursors_round_trip_per_stream() {
        for (position, seq) in [(0, 0), (0, 7), (812_345, 3), (i64::MAX, i64::MAX)] {
            let cursor = StreamCursor::new(position, seq);
            for kind in [StreamKind::Events, StreamKind::Deliveries] {
                assert_eq!(StreamCursor::decode(&cursor.encode(kind), kind, "after").unwrap(), cursor);
            }
        }
    }

    #[test]
    fn foreign_cursors_are_refused_with_a_reason() {
        let listing = Cursor::at(4).encode();
        let error = StreamCursor::decode(&listing, StreamKind::Events, "after").unwrap_err();
        assert!(format!("{error:?}").contains("listing"), "{error:?}");
        let other = StreamCursor::new(1, 2).encode(StreamKind::Deliveries);
        let error = StreamCursor::decode(&other, StreamKind::Events, "after").unwrap_err();
        assert!(format!("{error:?}").contains("deliveries stream"), "{error:?}");
        for bad in ["", "x", "!!", &URL_SAFE_NO_PAD.encode("se1:-1.2"), &URL_SAFE_NO_PAD.encode("se1:1")] {
            assert!(StreamCursor::decode(bad, StreamKind::Events, "after").is_err(), "{bad}");
        }
    }
}
