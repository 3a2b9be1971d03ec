//! Domain events: the immutable facts components hand to the hub.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::digest::Sha256Writer;
use crate::error::{ValidationError, Violations};
use crate::id::is_link_id;
use crate::time::{self, Millis};

/// A client-chosen or generated event id: 1–128 characters of `[A-Za-z0-9._:-]`, other than
/// `.` and `..`, which name no event in a URL path (`/v1/events/..` is the collection's parent).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, min_length = 1, max_length = 128, pattern = r"^(?!\.\.?$)[A-Za-z0-9._:-]+$", example = "ord-1001-created")]
pub struct EventId(String);

impl EventId {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
        if raw.is_empty() || raw.len() > 128 {
            return Err(ValidationError::single("event_id", "must be 1 to 128 characters"));
        }
        if !raw.chars().all(ok_char) {
            return Err(ValidationError::single("event_id", "may contain only letters, digits and . _ : -"));
        }
        if raw == "." || raw == ".." {
            return Err(ValidationError::single(
                "event_id",
                "cannot be . or .., which are path segments in URLs",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// A fresh UUIDv7, so generated ids sort by time of receipt.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    pub fn from_trusted(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EventId {
    type Error = ValidationError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<EventId> for String {
    fn from(id: EventId) -> Self {
        id.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event type name: dotted lowercase segments (`order.created`), at most 128 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, min_length = 1, max_length = 128, pattern = r"^[a-z0-9_]+(\.[a-z0-9_]+)*$", example = "order.created")]
pub struct EventType(String);

impl EventType {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let segment_ok = |s: &str| {
            !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if raw.is_empty() || raw.len() > 128 {
            return Err(ValidationError::single("event_type", "must be 1 to 128 characters"));
        }
        if !raw.split('.').all(segment_ok) {
            return Err(ValidationError::single(
                "event_type",
                "must be dotted lowercase segments of a-z, 0-9 and _ (e.g. order.created)",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn from_trusted(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }
}

impl TryFrom<String> for EventType {
    type Error = ValidationError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<EventType> for String {
    fn from(t: EventType) -> Self {
        t.0
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an event entered the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(value_type = String, example = "api")]
#[serde(transparent)]
pub struct EventSource(String);

impl EventSource {
    pub fn api() -> Self {
        Self("api".to_owned())
    }

    pub fn from_trusted(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventMetadata {
    /// Groups every event of one business flow; defaults to the request's `X-Correlation-ID`,
    /// else to the event id.
    pub correlation_id: String,
    /// The `event_id` of the event that caused this one.
    pub causation_id: Option<String>,
    /// The W3C `traceparent` the event arrived with; its deliveries continue that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The id of the API request that published the event (its `X-Request-ID`); the log
    /// lines of its deliveries carry it. Kept for operators' logs, not part of the resource.
    #[serde(skip)]
    pub request_id: Option<String>,
    /// The request headers a webhook source forwards (its `forward_headers`), by lowercase name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub headers: Option<Map<String, Value>>,
}

/// Who published an event through the API. Publishing writes no audit entry (see
/// [`crate::audit::is_audited`]); the event carries this instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PublishedBy {
    /// The authenticated caller, named as the audit log names its actors: `key:<API key id>`
    /// or `jwt:<issuer>|<subject>`.
    #[schema(example = "key:key_0193d5a1e7f87c3a9a3b1c2d3e4f5a6b")]
    pub principal: String,
    /// The `X-Request-ID` of the request that published the event.
    #[schema(example = "0193d5a1-e7f8-7c3a-9a3b-1c2d3e4f5a6b")]
    pub request_id: Option<String>,
}

impl PublishedBy {
    /// The publisher of an event stored with `principal` (absent for events no authenticated
    /// caller published) and `request_id`.
    pub fn of(principal: Option<String>, request_id: Option<&str>) -> Option<Self> {
        principal.map(|principal| Self { principal, request_id: request_id.map(str::to_owned) })
    }
}

/// A stored event, immutable once written.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Event {
    pub event_id: EventId,
    pub event_type: EventType,
    /// When the event happened (RFC 3339), as given by the publisher or the time of receipt.
    #[serde(with = "time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: Millis,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub metadata: EventMetadata,
    pub ordering_key: Option<String>,
    pub source: EventSource,
    /// When the hub committed the event (RFC 3339).
    #[serde(with = "time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub received_at: Millis,
    /// Who published the event and with which request; null for events that entered the hub
    /// without an authenticated caller.
    pub published_by: Option<PublishedBy>,
    /// Hash of what the publisher sent, compared when the same `event_id` arrives again.
    #[serde(skip)]
    pub content_hash: String,
    /// Position in ingest order; the keyset cursor of event listings.
    #[serde(skip)]
    pub seq: i64,
}

/// How a stored event sits in its flow: what a causation tree shows of it, without its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct EventLink {
    pub event_id: EventId,
    pub event_type: EventType,
    pub causation_id: Option<String>,
    pub timestamp: Millis,
    pub received_at: Millis,
}

/// An event the hub has validated and is about to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: EventId,
    pub event_type: EventType,
    pub timestamp: Millis,
    pub payload: Value,
    pub metadata: EventMetadata,
    pub ordering_key: Option<String>,
    pub source: EventSource,
    /// The principal publishing the event (see [`PublishedBy::principal`]), if any; its
    /// request id is `metadata.request_id`.
    pub publisher: Option<String>,
    pub content_hash: String,
}

/// What a publisher sends for one event, before validation.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    /// 1–128 characters of `[A-Za-z0-9._:-]`; generated (UUIDv7) when omitted.
    #[schema(value_type = Option<EventId>, example = "ord-1001-created")]
    pub event_id: Option<String>,
    #[schema(value_type = EventType, required = true, example = "order.created")]
    pub event_type: Option<String>,
    /// RFC 3339; defaults to the time of receipt.
    #[schema(format = DateTime)]
    pub timestamp: Option<String>,
    #[schema(value_type = Object, required = true)]
    pub payload: Option<Value>,
    pub metadata: Option<EventInputMetadata>,
    /// Events with the same key reach ordered subscriptions in ingest order (≤ 256 chars).
    #[schema(min_length = 1, max_length = 256)]
    pub ordering_key: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventInputMetadata {
    /// 1 to 128 visible ASCII characters: it travels as the `X-Correlation-ID` header.
    #[schema(pattern = "^[!-~]{1,128}$")]
    pub correlation_id: Option<String>,
    /// 1 to 128 visible ASCII characters: it travels as the `X-Causation-ID` header.
    #[schema(pattern = "^[!-~]{1,128}$")]
    pub causation_id: Option<String>,
}

/// Context of the request an event arrived with.
#[derive(Debug, Clone)]
pub struct IngestContext {
    pub source: EventSource,
    pub correlation_id: Option<String>,
    /// The request's validated `traceparent` header.
    pub traceparent: Option<String>,
    /// The id of the request publishing the events.
    pub request_id: Option<String>,
    /// The authenticated caller publishing the events, named as the audit log names actors.
    pub principal: Option<String>,
    /// Request headers kept in each event's `metadata.headers` (a webhook source's
    /// `forward_headers`).
    pub headers: Option<Map<String, Value>>,
    pub received_at: Millis,
    pub max_payload_bytes: usize,
}

const MAX_ORDERING_KEY: usize = 256;

impl EventInput {
    /// Checks every rule of the event contract and builds the event to store.
    pub fn into_new_event(self, ctx: &IngestContext) -> Result<NewEvent, ValidationError> {
        let content_hash = self.content_hash();
        let mut violations = Violations::default();
        let event_id = match &self.event_id {
            Some(raw) => violations.check(EventId::parse(raw)),
            None => Some(EventId::generate()),
        };
        let event_type = match &self.event_type {
            Some(raw) => violations.check(EventType::parse(raw)),
            None => {
                violations.push("event_type", "is required");
                None
            }
        };
        let timestamp = match &self.timestamp {
            Some(raw) => {
                let parsed = time::parse_rfc3339(raw);
                if parsed.is_none() {
                    violations.push("timestamp", "must be an RFC 3339 date-time");
                }
                parsed
            }
            None => Some(ctx.received_at),
        };
        match &self.payload {
            Some(Value::Object(_)) => {
                let size = serde_json::to_vec(&self.payload).map(|b| b.len()).unwrap_or(usize::MAX);
                if size > ctx.max_payload_bytes {
                    violations.push(
                        "payload",
                        format!("is {size} bytes; the limit is {} bytes", ctx.max_payload_bytes),
                    );
                }
            }
            Some(_) => violations.push("payload", "must be a JSON object"),
            None => violations.push("payload", "is required"),
        }
        if self
            .ordering_key
            .as_ref()
            .is_some_and(|key| key.is_empty() || key.chars().count() > MAX_ORDERING_KEY)
        {
            violations.push("ordering_key", "must be 1 to 256 characters");
        }
        let metadata = self.metadata.unwrap_or_default();
        for (field, value) in [
            ("metadata.correlation_id", &metadata.correlation_id),
            ("metadata.causation_id", &metadata.causation_id),
        ] {
            // They travel as HTTP headers (X-Correlation-ID, X-Causation-ID), which carry
            // visible ASCII only.
            if value.as_ref().is_some_and(|v| !is_link_id(v)) {
                violations.push(field, "must be 1 to 128 visible ASCII characters");
            }
        }
        violations.into_result()?;
        let (Some(event_id), Some(event_type), Some(timestamp)) = (event_id, event_type, timestamp) else {
            unreachable!("violations were empty, so every field parsed");
        };
        let correlation_id = metadata
            .correlation_id
            .or_else(|| ctx.correlation_id.clone())
            .unwrap_or_else(|| event_id.as_str().to_owned());
        Ok(NewEvent {
            event_id,
            event_type,
            timestamp,
            payload: self.payload.unwrap_or(Value::Object(Map::new())),
            metadata: EventMetadata {
                correlation_id,
                causation_id: metadata.causation_id,
                traceparent: ctx.traceparent.clone(),
                request_id: ctx.request_id.clone(),
                headers: ctx.headers.clone(),
            },
            ordering_key: self.ordering_key,
            source: ctx.source.clone(),
            publisher: ctx.principal.clone(),
            content_hash,
        })
    }

    /// Hashes exactly what the publisher sent (defaults excluded), so a retry of the same
    /// request is recognised as a duplicate even though its defaults would differ.
    /// The JSON array `[event_type, timestamp, payload, [correlation_id, causation_id] or
    /// null, ordering_key]`, hashed as it is written (stored hashes depend on these bytes).
    fn content_hash(&self) -> String {
        let canonical = (
            &self.event_type,
            &self.timestamp,
            &self.payload,
            self.metadata.as_ref().map(|m| (&m.correlation_id, &m.causation_id)),
            &self.ordering_key,
        );
        let mut hasher = Sha256Writer::default();
        // Writing to a hasher cannot fail, and these values always serialize.
        serde_json::to_writer(&mut hasher, &canonical).expect("a JSON value serializes");
        hasher.finish_hex()
    }
}

/// The result of storing one event.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestOutcome {
    Created(Event),
    Duplicate(Event),
    /// The id is taken by an event with different content.
    Conflict(EventId),
}

impl IngestOutcome {
    /// The outcome of `new` when its id is taken by `stored`: a duplicate when the publisher
    /// sent the same content, a conflict otherwise.
    pub fn of_taken(stored: Event, new: NewEvent) -> Self {
        if stored.content_hash == new.content_hash {
            Self::Duplicate(stored)
        } else {
            Self::Conflict(new.event_id)
        }
    }
}

impl NewEvent {
    /// The event as stored at sequence number `seq`, received at `received_at`.
    pub fn stored(self, seq: i64, received_at: Millis) -> Event {
        let published_by = PublishedBy::of(self.publisher, self.metadata.request_id.as_deref());
        Event {
            event_id: self.event_id,
            event_type: self.event_type,
            timestamp: self.timestamp,
            payload: self.payload,
            metadata: self.metadata,
            ordering_key: self.ordering_key,
            source: self.source,
            received_at,
            published_by,
            content_hash: self.content_hash,
            seq,
        }
    }
}

/// Filters of the event listing.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub event_type: Option<EventType>,
    pub correlation_id: Option<String>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> IngestContext {
        IngestContext {
            source: EventSource::api(),
            correlation_id: None,
            traceparent: None,
            request_id: None,
            principal: None,
            headers: None,
            received_at: 1_700_000_000_000,
            max_payload_bytes: 64,
        }
    }

    fn input(value: Value) -> EventInput {
        serde_json::from_value(value).expect("valid input shape")
    }

    #[test]
    fn event_ids_accept_the_documented_alphabet_only() {
        assert!(EventId::parse("a.b_c:d-1").is_ok());
        assert!(EventId::parse("").is_err());
        assert!(EventId::parse("has space").is_err());
        assert!(EventId::parse(&"x".repeat(129)).is_err());
        assert!(EventId::parse(&"x".repeat(128)).is_ok());
        assert!(EventId::parse(".").is_err());
        assert!(EventId::parse("..").is_err());
        assert!(EventId::parse("...").is_ok());
        assert!(EventId::parse(".hidden").is_ok());
    }

    #[test]
    fn event_types_are_dotted_lowercase_segments() {
        for ok in ["order", "order.created", "a_1.b2.c_3"] {
            assert!(EventType::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Order", "order.", ".order", "order..created", "order-created", "ördér"] {
            assert!(EventType::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_violation_is_reported() {
        let err = input(serde_json::json!({"event_id": "bad id", "payload": [1]}))
            .into_new_event(&ctx())
            .unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["event_id", "event_type", "payload"]);
    }

    #[test]
    fn payload_over_the_limit_is_refused() {
        let big = "x".repeat(100);
        let err = input(serde_json::json!({"event_type": "a", "payload": {"k": big}}))
            .into_new_event(&ctx())
            .unwrap_err();
        assert_eq!(err.0[0].field, "payload");
    }

    #[test]
    fn correlation_defaults_to_request_header_then_event_id() {
        let plain = input(serde_json::json!({"event_id": "e1", "event_type": "a", "payload": {}}));
        let event = plain.clone().into_new_event(&ctx()).unwrap();
        assert_eq!(event.metadata.correlation_id, "e1");
        let with_header = IngestContext { correlation_id: Some("corr-9".into()), ..ctx() };
        assert_eq!(plain.into_new_event(&with_header).unwrap().metadata.correlation_id, "corr-9");
    }

    #[test]
    fn correlation_and_causation_ids_must_be_sendable_as_headers() {
        for bad in ["", "with space", "caf\u{e9}", "tab\there", &"x".repeat(129)] {
            let err = input(serde_json::json!({"event_type": "a", "payload": {},
                "metadata": {"correlation_id": bad, "causation_id": bad}}))
            .into_new_event(&ctx())
            .unwrap_err();
            let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
            assert_eq!(fields, ["metadata.correlation_id", "metadata.causation_id"], "{bad:?}");
        }
        let good = input(serde_json::json!({"event_type": "a", "payload": {},
            "metadata": {"correlation_id": "checkout/42:a_b", "causation_id": "evt-1"}}));
        assert_eq!(good.into_new_event(&ctx()).unwrap().metadata.correlation_id, "checkout/42:a_b");
    }

    #[test]
    fn content_hash_ignores_defaults_but_not_content() {
        let a = input(serde_json::json!({"event_id": "e1", "event_type": "a", "payload": {"n": 1}}));
        let later = IngestContext { received_at: 1_800_000_000_000, ..ctx() };
        let first = a.clone().into_new_event(&ctx()).unwrap();
        let again = a.into_new_event(&later).unwrap();
        assert_eq!(first.content_hash, again.content_hash);
        let other = input(serde_json::json!({"event_id": "e1", "event_type": "a", "payload": {"n": 2}}))
            .into_new_event(&ctx())
            .unwrap();
        assert_ne!(first.content_hash, other.content_hash);
    }

    #[test]
    fn content_hashes_keep_the_bytes_of_the_canonical_array() {
        let full = input(serde_json::json!({"event_id": "e1", "event_type": "order.created",
            "timestamp": "2026-11-27T06:00:00Z", "payload": {"b": [1, "x", 2.5], "a": null, "é": "tab\tquote\""},
            "metadata": {"correlation_id": "c-1", "causation_id": "p-1"}, "ordering_key": "k"}));
        let bare = input(serde_json::json!({"event_type": "a", "payload": {}}));
        for sent in [full, bare] {
            let canonical = serde_json::json!([
                sent.event_type,
                sent.timestamp,
                sent.payload,
                sent.metadata.as_ref().map(|m| (&m.correlation_id, &m.causation_id)),
                sent.ordering_key,
            ]);
            let stored_before = crate::digest::sha256_hex(canonical.to_string().as_bytes());
            assert_eq!(sent.content_hash(), stored_before, "{sent:?}");
        }
    }

    #[test]
    fn the_publisher_is_the_principal_with_the_request_id() {
        let publishing =
            IngestContext { principal: Some("key:key_1".into()), request_id: Some("req-1".into()), ..ctx() };
        let new =
            input(serde_json::json!({"event_type": "a", "payload": {}})).into_new_event(&publishing).unwrap();
        assert_eq!(new.publisher.as_deref(), Some("key:key_1"));
        let stored = serde_json::to_value(new.stored(1, 0)).unwrap();
        assert_eq!(
            stored["published_by"],
            serde_json::json!({"principal": "key:key_1", "request_id": "req-1"})
        );

        let anonymous = IngestContext { request_id: Some("req-2".into()), ..ctx() };
        let new =
            input(serde_json::json!({"event_type": "a", "payload": {}})).into_new_event(&anonymous).unwrap();
        let stored = serde_json::to_value(new.stored(2, 0)).unwrap();
        assert_eq!(stored["published_by"], Value::Null, "shown as null rather than left out");
    }
}
