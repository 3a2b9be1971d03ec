//! The audit log: one entry for every control-plane request that may write (every method but
//! `GET`, `HEAD` and `OPTIONS`, on any route but the publishing ones), successful or not,
//! saying who did what to which resource and how it ended. Entries hold no request or response
//! bodies, so no secret can reach the log.
//!
//! Publishing events is the data plane: a row per request there would double the writes of
//! the hot path and bury the control plane's history. Each stored event records its publisher
//! instead ([`crate::event::PublishedBy`]: the same principal an entry names as its actor, and
//! the request id).
//!
//! Actions are derived from the route, not listed by hand, so a new route is audited with a
//! sensible name without touching this file: the resource type is the collection in the
//! singular (`/v1/destinations` → `destination`), and the action is the route's fixed words
//! after it (`/v1/destinations/{id}/pause` → `destination.pause`) or, when there are none, the
//! method's verb (`POST` → `create`, `PUT` → `replace`, `PATCH` → `update`, `DELETE` → `delete`).

use std::fmt;

use serde::Serialize;

use crate::api_key::Role;
use crate::time::{self, Millis};

/// Identifies an audit entry: `aud_` and a UUIDv7.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = json!("aud_0193d5a1e7f87c3a9a3b1c2d3e4f5a6b"))]
pub struct AuditEntryId(String);

impl AuditEntryId {
    pub const PREFIX: &'static str = "aud";

    pub fn generate() -> Self {
        Self(format!("{}_{}", Self::PREFIX, uuid::Uuid::now_v7().simple()))
    }

    pub fn from_trusted(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AuditEntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a request acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditResource {
    /// The resource type, e.g. `destination`.
    #[serde(rename = "type")]
    #[schema(example = "destination")]
    pub kind: String,
    /// The resource's id, when the route names one or a create answered with its `Location`.
    pub id: Option<String>,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditOutcome {
    /// The HTTP status answered.
    #[schema(example = 201)]
    pub status: u16,
    /// Whether the status is below 400.
    pub success: bool,
}

impl AuditOutcome {
    pub fn of_status(status: u16) -> Self {
        Self { status, success: status < 400 }
    }
}

/// One audited request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: AuditEntryId,
    /// When the request was answered.
    #[serde(with = "time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: Millis,
    /// Who made the request: the API key's id (or, for a JWT, its subject).
    #[schema(example = "key_0193d5a1e7f87c3a9a3b1c2d3e4f5a6b")]
    pub actor: String,
    /// The role the request was made with.
    pub role: Role,
    /// `<resource type>.<verb>`, e.g. `destination.create` or `destination.signing_secret.rotate`.
    #[schema(example = "destination.create")]
    pub action: String,
    #[schema(example = "POST")]
    pub method: String,
    /// The route template, e.g. `/v1/destinations/{id}`.
    #[schema(example = "/v1/destinations")]
    pub route: String,
    pub resource: AuditResource,
    /// The request's `X-Request-ID`, as in the logs.
    pub request_id: String,
    pub outcome: AuditOutcome,
    /// The store's append order; keyset cursors point at it. Ignored when appending.
    #[serde(skip)]
    pub seq: i64,
}

/// Which entries a listing returns; every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    /// At or after.
    pub since: Option<Millis>,
    /// Before.
    pub until: Option<Millis>,
}

/// Methods that never write, and so are not audited.
pub fn is_read_only(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS")
}

/// The route templates that publish events when `POST`ed to: the data plane.
pub const PUBLISH_ROUTES: [&str; 2] = ["/v1/events", "/v1/events/batch"];

/// Whether a request with `method` to `route` (a template) publishes events.
pub fn is_publish(method: &str, route: &str) -> bool {
    method == "POST" && PUBLISH_ROUTES.contains(&route)
}

/// Whether a request with `method` to `route` (a template) leaves an audit entry: every write
/// of the control plane, none of the data plane (see the module docs).
pub fn is_audited(method: &str, route: &str) -> bool {
    !is_read_only(method) && !is_publish(method, route)
}

/// The action and resource type of a request to `route` (a template such as
/// `/v1/destinations/{id}/pause`) with `method`; see the module docs.
pub fn describe(method: &str, route: &str) -> (String, String) {
    let mut segments = route.trim_start_matches('/').split('/').filter(|s| !s.is_empty());
    let mut collection = segments.next().unwrap_or("");
    if collection == "v1" {
        collection = segments.next().unwrap_or("");
    }
    let kind = singular(&snake(collection));
    let words: Vec<String> = segments.filter(|s| !s.starts_with('{')).map(snake).collect();
    let verb = if words.is_empty() {
        match method {
            "POST" => "create".to_owned(),
            "PUT" => "replace".to_owned(),
            "PATCH" => "update".to_owned(),
            "DELETE" => "delete".to_owned(),
            other => other.to_ascii_lowercase(),
        }
    } else {
        words.join(".")
    };
    let kind = if kind.is_empty() { "api".to_owned() } else { kind };
    (format!("{kind}.{verb}"), kind)
}

fn snake(word: &str) -> String {
    word.replace('-', "_")
}

fn singular(word: &str) -> String {
    if let Some(stem) = word.strip_suffix("ies") {
        format!("{stem}y")
    } else if let Some(stem) = word.strip_suffix('s') {
        stem.to_owned()
    } else {
        word.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_follow_the_route() {
        let cases = [
            ("POST", "/v1/destinations", "destination.create", "destination"),
            ("PUT", "/v1/destinations/{id}", "destination.replace", "destination"),
            ("PATCH", "/v1/destinations/{id}", "destination.update", "destination"),
            ("DELETE", "/v1/destinations/{id}", "destination.delete", "destination"),
            ("POST", "/v1/destinations/{id}/pause", "destination.pause", "destination"),
            (
                "POST",
                "/v1/destinations/{id}/signing-secret/rotate",
                "destination.signing_secret.rotate",
                "destination",
            ),
            ("POST", "/v1/events", "event.create", "event"),
            ("POST", "/v1/events/batch", "event.batch", "event"),
            ("POST", "/v1/deliveries/{id}/retry", "delivery.retry", "delivery"),
            ("POST", "/v1/dead-letters/replay", "dead_letter.replay", "dead_letter"),
            ("DELETE", "/v1/api-keys/{id}", "api_key.delete", "api_key"),
            ("PUT", "/v1/event-types/{name}", "event_type.replace", "event_type"),
            ("POST", "/v1/sources/{id}/webhook", "source.webhook", "source"),
            ("POST", "/", "api.create", "api"),
        ];
        for (method, route, action, kind) in cases {
            assert_eq!(describe(method, route), (action.to_owned(), kind.to_owned()), "{method} {route}");
        }
    }

    #[test]
    fn only_reads_are_not_audited() {
        for method in ["GET", "HEAD", "OPTIONS"] {
            assert!(is_read_only(method));
        }
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            assert!(!is_read_only(method));
        }
    }

    #[test]
    fn publishing_is_data_plane_and_not_audited() {
        for route in PUBLISH_ROUTES {
            assert!(is_publish("POST", route), "{route}");
            assert!(!is_audited("POST", route), "{route}");
        }
        let control_plane = [
            ("POST", "/v1/destinations"),
            ("POST", "/v1/destinations/{id}/test"),
            ("POST", "/v1/destinations/{id}/pause"),
            ("POST", "/v1/deliveries/{id}/retry"),
            ("POST", "/v1/dead-letters/replay"),
            ("POST", "/v1/api-keys"),
            ("DELETE", "/v1/api-keys/{id}"),
            ("PUT", "/v1/event-types/{name}"),
            // Only a POST publishes.
            ("DELETE", "/v1/events"),
        ];
        for (method, route) in control_plane {
            assert!(is_audited(method, route), "{method} {route}");
        }
        assert!(!is_audited("GET", "/v1/destinations"));
        assert!(!is_audited("GET", "/v1/events"));
    }

    #[test]
    fn outcomes_succeed_below_400() {
        assert!(AuditOutcome::of_status(204).success);
        assert!(AuditOutcome::of_status(302).success);
        assert!(!AuditOutcome::of_status(412).success);
        assert!(!AuditOutcome::of_status(500).success);
    }

    #[test]
    fn entries_render_without_their_sequence() {
        let entry = AuditEntry {
            id: AuditEntryId::from_trusted("aud_1"),
            at: 0,
            actor: "key_1".into(),
            role: Role::Admin,
            action: "destination.create".into(),
            method: "POST".into(),
            route: "/v1/destinations".into(),
            resource: AuditResource { kind: "destination".into(), id: Some("dst_1".into()) },
            request_id: "r1".into(),
            outcome: AuditOutcome::of_status(201),
            seq: 7,
        };
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(json["resource"]["type"], "destination");
        assert_eq!(json["at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(json["outcome"]["success"], true);
        assert!(json.get("seq").is_none());
    }
}
