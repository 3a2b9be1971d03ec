//! Destinations: external services behind an adapter, with their delivery policies.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ValidationError, Violations};
use crate::id::DestinationId;
pub use crate::secret_paths::split_secrets;
use crate::secret_paths::{leaf, mark_secret_set, parent, parent_mut, set_path};
use crate::time::{self, Millis};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DestinationKind {
    Http,
    Nats,
    Amqp,
    Redis,
    Mqtt,
}

impl DestinationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Nats => "nats",
            Self::Amqp => "amqp",
            Self::Redis => "redis",
            Self::Mqtt => "mqtt",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Http, Self::Nats, Self::Amqp, Self::Redis, Self::Mqtt].into_iter().find(|k| k.as_str() == raw)
    }
}

impl fmt::Display for DestinationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When and how often a failed delivery is tried again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: u32,
    /// At most `max_delay_ms`.
    #[schema(minimum = 1)]
    pub initial_delay_ms: u64,
    /// At most 7 days.
    #[schema(maximum = 604_800_000)]
    pub max_delay_ms: u64,
    #[schema(minimum = 1, maximum = 100)]
    pub multiplier: f64,
    /// Fraction of each delay added or removed at random (0.2 = ±20 %).
    #[schema(minimum = 0, maximum = 1)]
    pub jitter: f64,
    /// Retry 4xx answers (other than 408, 425 and 429, which are always retried).
    pub retry_on_4xx: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 12,
            initial_delay_ms: 1_000,
            max_delay_ms: 3_600_000,
            multiplier: 3.0,
            jitter: 0.2,
            retry_on_4xx: false,
        }
    }
}

impl RetryPolicy {
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut v = Violations::default();
        if !(1..=100).contains(&self.max_attempts) {
            v.push("max_attempts", "must be between 1 and 100");
        }
        if self.initial_delay_ms == 0 || self.initial_delay_ms > self.max_delay_ms {
            v.push("initial_delay_ms", "must be at least 1 and at most max_delay_ms");
        }
        if self.max_delay_ms > 7 * 24 * 3_600_000 {
            v.push("max_delay_ms", "must be at most 7 days");
        }
        if !(1.0..=100.0).contains(&self.multiplier) {
            v.push("multiplier", "must be between 1 and 100");
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            v.push("jitter", "must be between 0 and 1");
        }
        v.into_result()
    }
}

/// A token bucket: deliveries wait for a token, they never fail for want of one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub per_second: u32,
    /// Tokens the bucket holds when full; defaults to `per_second`.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub burst: Option<u32>,
}

impl RateLimit {
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut v = Violations::default();
        if !(1..=1_000_000).contains(&self.per_second) {
            v.push("per_second", "must be between 1 and 1000000");
        }
        if self.burst.is_some_and(|b| !(1..=1_000_000).contains(&b)) {
            v.push("burst", "must be between 1 and 1000000");
        }
        v.into_result()
    }

    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.per_second)
    }
}

/// When a destination's circuit opens, and how long it stays open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerPolicy {
    #[schema(minimum = 1, maximum = 10_000)]
    pub consecutive_failures: u32,
    #[schema(exclusive_minimum = 0, maximum = 1)]
    pub failure_ratio: f64,
    #[schema(minimum = 1)]
    pub min_requests: u32,
    #[schema(minimum = 1_000, maximum = 86_400_000)]
    pub window_ms: u64,
    /// At most `max_cooldown_ms`.
    #[schema(minimum = 1)]
    pub cooldown_ms: u64,
    /// At most 1 day.
    #[schema(maximum = 86_400_000)]
    pub max_cooldown_ms: u64,
}

impl Default for CircuitBreakerPolicy {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_ratio: 0.5,
            min_requests: 20,
            window_ms: 60_000,
            cooldown_ms: 30_000,
            max_cooldown_ms: 600_000,
        }
    }
}

impl CircuitBreakerPolicy {
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut v = Violations::default();
        if !(1..=10_000).contains(&self.consecutive_failures) {
            v.push("consecutive_failures", "must be between 1 and 10000");
        }
        if !(self.failure_ratio > 0.0 && self.failure_ratio <= 1.0) {
            v.push("failure_ratio", "must be greater than 0 and at most 1");
        }
        if self.min_requests == 0 {
            v.push("min_requests", "must be at least 1");
        }
        if !(1_000..=86_400_000).contains(&self.window_ms) {
            v.push("window_ms", "must be between 1000 and 86400000");
        }
        if self.cooldown_ms == 0 || self.cooldown_ms > self.max_cooldown_ms {
            v.push("cooldown_ms", "must be at least 1 and at most max_cooldown_ms");
        }
        if self.max_cooldown_ms > 86_400_000 {
            v.push("max_cooldown_ms", "must be at most 1 day");
        }
        v.into_result()
    }
}

pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;

/// The signing secret a rotation replaced (kept among the secrets) and when it stops signing
/// (milliseconds since the Unix epoch, kept in the configuration). Only
/// `POST /v1/destinations/{id}/signing-secret/rotate` sets them: a write may not name them, and
/// keeps the stored ones ([`Destination::keep_rotation_of`]).
pub const PREVIOUS_SIGNING_SECRET: &str = "previous_signing_secret";
pub const PREVIOUS_SIGNING_SECRET_EXPIRES_AT: &str = "previous_signing_secret_expires_at";

/// A stored destination. `config` is the kind's configuration without its secrets, which live
/// apart in `secrets` (write-only: never rendered by the API, and `Debug` shows only their names).
#[derive(Clone, PartialEq)]
pub struct Destination {
    pub id: DestinationId,
    pub name: String,
    pub kind: DestinationKind,
    pub config: Value,
    pub secrets: Map<String, Value>,
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub retry: RetryPolicy,
    pub rate_limit: Option<RateLimit>,
    pub circuit_breaker: CircuitBreakerPolicy,
    pub enabled: bool,
    pub version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Destination")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("config", &self.config)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("timeout_ms", &self.timeout_ms)
            .field("enabled", &self.enabled)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// How the API shows a destination: secrets are replaced by `<name>_set: true` (a secret map,
/// such as `secret_headers`, by its names each set to `true`), and the rotation's expiry is an
/// RFC 3339 time.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DestinationView {
    pub id: DestinationId,
    pub name: String,
    pub kind: DestinationKind,
    #[schema(value_type = Object)]
    pub config: Value,
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub retry: RetryPolicy,
    pub rate_limit: Option<RateLimit>,
    pub circuit_breaker: CircuitBreakerPolicy,
    pub enabled: bool,
    pub version: i64,
    #[serde(with = "time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    #[serde(with = "time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Millis,
}

impl Destination {
    pub fn view(&self) -> DestinationView {
        let mut config = self.config.clone();
        for (path, secret) in &self.secrets {
            mark_secret_set(&mut config, path, secret);
        }
        show_rotation_expiry(&mut config);
        DestinationView {
            id: self.id.clone(),
            name: self.name.clone(),
            kind: self.kind,
            config,
            timeout_ms: self.timeout_ms,
            connect_timeout_ms: self.connect_timeout_ms,
            retry: self.retry.clone(),
            rate_limit: self.rate_limit.clone(),
            circuit_breaker: self.circuit_breaker.clone(),
            enabled: self.enabled,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    /// The configuration as a client would write it, secrets included: the base that PUT and
    /// PATCH bodies are applied to, so omitted secrets are kept.
    pub fn full_config(&self) -> Value {
        let mut config = self.config.clone();
        for (path, secret) in &self.secrets {
            set_path(&mut config, path, secret.clone());
        }
        config
    }

    /// [`Destination::full_config`] without the rotation state, which writes cannot set: the
    /// base a merge patch is applied to.
    pub fn writable_config(&self) -> Value {
        let mut config = self.full_config();
        if let Some(map) = config.as_object_mut() {
            map.remove(PREVIOUS_SIGNING_SECRET);
            map.remove(PREVIOUS_SIGNING_SECRET_EXPIRES_AT);
        }
        config
    }

    /// Takes over the rotation state of `stored`, the destination this one replaces: a write
    /// never sets it, and a rotation's grace period outlives edits of the destination.
    pub fn keep_rotation_of(&mut self, stored: &Destination) {
        if self.kind != stored.kind {
            return;
        }
        if let Some(secret) = stored.secrets.get(PREVIOUS_SIGNING_SECRET) {
            self.secrets.insert(PREVIOUS_SIGNING_SECRET.to_owned(), secret.clone());
        }
        let expires_at = stored.config.get(PREVIOUS_SIGNING_SECRET_EXPIRES_AT);
        if let (Some(expires_at), Some(config)) = (expires_at, self.config.as_object_mut()) {
            config.insert(PREVIOUS_SIGNING_SECRET_EXPIRES_AT.to_owned(), expires_at.clone());
        }
    }
}

/// Drops from a written configuration what the API showed of `stored`'s rotation state
/// (`previous_signing_secret_set`, the expiry), so a destination read, changed and written back
/// passes; any other value naming the rotation stays, for validation to refuse.
pub fn forget_shown_rotation(config: &mut Value, stored: &Destination) {
    let shown = stored.view().config;
    let Some(map) = config.as_object_mut() else {
        return;
    };
    for key in [format!("{PREVIOUS_SIGNING_SECRET}_set"), PREVIOUS_SIGNING_SECRET_EXPIRES_AT.to_owned()] {
        if map.get(&key).is_some_and(|written| shown.get(&key) == Some(written)) {
            map.remove(&key);
        }
    }
}

/// Prepares a configuration written by a client for validation against a stored destination:
/// drops the `<name>_set` markers and the rotation state the API showed, and puts back each
/// stored secret the client left out (so read-modify-write keeps secrets), unless the object
/// holding it changed `type` (a new auth scheme starts without the old one's secrets). The
/// rotation's secret is not put back: [`Destination::keep_rotation_of`] carries it over.
pub fn restore_absent_secrets(config: &mut Value, stored: &Destination) {
    forget_shown_rotation(config, stored);
    for (path, secret) in &stored.secrets {
        let old_type = parent(&stored.config, path).and_then(|o| o.get("type")).cloned();
        let leaf = leaf(path);
        let Some(map) = parent_mut(config, path) else {
            continue;
        };
        map.remove(&format!("{leaf}_set"));
        if path == PREVIOUS_SIGNING_SECRET {
            continue;
        }
        if map.get("type").cloned() == old_type && !map.contains_key(leaf) {
            map.insert(leaf.to_owned(), secret.clone());
        }
    }
}

/// The rotation's expiry is stored in milliseconds and shown as an RFC 3339 time.
fn show_rotation_expiry(config: &mut Value) {
    let Some(map) = config.as_object_mut() else {
        return;
    };
    if let Some(at) = map.get(PREVIOUS_SIGNING_SECRET_EXPIRES_AT).and_then(Value::as_i64) {
        map.insert(PREVIOUS_SIGNING_SECRET_EXPIRES_AT.to_owned(), Value::from(time::format_rfc3339(at)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A destination as the store holds it: the secrets at `paths` split out of `config`.
    fn stored(mut config: Value, paths: &[&str]) -> Destination {
        let secrets = split_secrets(&mut config, paths);
        Destination {
            id: DestinationId::generate(),
            name: "d".into(),
            kind: DestinationKind::Http,
            config,
            secrets,
            timeout_ms: 1,
            connect_timeout_ms: 1,
            retry: RetryPolicy::default(),
            rate_limit: None,
            circuit_breaker: CircuitBreakerPolicy::default(),
            enabled: true,
            version: 1,
            created_at: 0,
            updated_at: 0,
        }
    }

    /// Mid-rotation: the replaced secret signs until 2030-01-01T00:00:00Z.
    fn rotating() -> Destination {
        stored(
            json!({"url": "https://x", "signing_secret": "whsec_new", "previous_signing_secret": "whsec_old",
                   "previous_signing_secret_expires_at": 1_893_456_000_000i64}),
            &["signing_secret", "previous_signing_secret"],
        )
    }

    #[test]
    fn a_secret_map_shows_its_names_and_no_value() {
        let destination = stored(
            json!({"url": "https://x", "secret_headers": {"X-API-Key": "k3y", "X-Tenant-Token": "t0k"}}),
            &["secret_headers"],
        );
        let shown = serde_json::to_value(destination.view()).unwrap();
        assert_eq!(shown["config"]["secret_headers_set"], json!({"X-API-Key": true, "X-Tenant-Token": true}));
        assert!(shown["config"].get("secret_headers").is_none());
        assert!(!shown.to_string().contains("k3y") && !shown.to_string().contains("t0k"), "{shown}");
    }

    #[test]
    fn the_rotation_expiry_is_shown_as_rfc3339() {
        let shown = serde_json::to_value(rotating().view()).unwrap();
        assert_eq!(shown["config"]["previous_signing_secret_expires_at"], "2030-01-01T00:00:00.000Z");
        assert_eq!(shown["config"]["previous_signing_secret_set"], true);
        assert!(!shown.to_string().contains("whsec_old"));
    }

    #[test]
    fn a_write_carries_back_the_shown_rotation_but_never_restores_it() {
        let stored = rotating();
        let mut echoed = serde_json::to_value(stored.view()).unwrap()["config"].clone();
        restore_absent_secrets(&mut echoed, &stored);
        assert_eq!(echoed, json!({"url": "https://x", "signing_secret": "whsec_new"}));

        let mut planted = json!({"url": "https://x", "previous_signing_secret": "whsec_planted",
                                 "previous_signing_secret_expires_at": 1});
        restore_absent_secrets(&mut planted, &stored);
        assert_eq!(planted["previous_signing_secret"], "whsec_planted", "left for validation to refuse");
        assert_eq!(planted["previous_signing_secret_expires_at"], 1);

        assert!(stored.writable_config().get("previous_signing_secret").is_none());
        assert!(stored.writable_config().get("previous_signing_secret_expires_at").is_none());
        assert_eq!(stored.full_config()["previous_signing_secret"], "whsec_old");
    }

    #[test]
    fn an_edit_keeps_the_stored_rotation() {
        let stored = rotating();
        let mut next =
            self::stored(json!({"url": "https://y", "signing_secret": "whsec_new"}), &["signing_secret"]);
        next.keep_rotation_of(&stored);
        assert_eq!(next.secrets["previous_signing_secret"], "whsec_old");
        assert_eq!(next.config["previous_signing_secret_expires_at"], 1_893_456_000_000i64);
        assert_eq!(next.config["url"], "https://y");

        let mut unrotated = self::stored(json!({"url": "https://y"}), &[]);
        unrotated.keep_rotation_of(&self::stored(json!({"url": "https://x"}), &[]));
        assert!(unrotated.secrets.is_empty());
        assert_eq!(unrotated.config, json!({"url": "https://y"}));
    }

    #[test]
    fn secrets_are_split_out_and_shown_as_set_flags() {
        let destination = stored(
            json!({"url": "https://x", "signing_secret": "whsec_a",
                   "auth": {"type": "bearer", "token": "t0k"}}),
            &["signing_secret", "auth.token", "auth.password"],
        );
        assert_eq!(destination.secrets.len(), 2);
        let shown = serde_json::to_value(destination.view()).unwrap();
        assert_eq!(shown["config"]["signing_secret_set"], true);
        assert_eq!(shown["config"]["auth"]["token_set"], true);
        assert!(!shown.to_string().contains("t0k"));
        assert!(!shown.to_string().contains("whsec_a"));
        assert_eq!(destination.full_config()["auth"]["token"], "t0k");
        let debugged = format!("{destination:?}");
        assert!(!debugged.contains("t0k") && !debugged.contains("whsec_a"), "{debugged}");
    }

    #[test]
    fn absent_secrets_are_restored_unless_their_scheme_changed() {
        let stored = stored(
            json!({"url": "https://x", "signing_secret": "whsec_a",
                   "auth": {"type": "bearer", "token": "t0k"}}),
            &["signing_secret", "auth.token"],
        );
        let mut same_scheme = serde_json::to_value(stored.view()).unwrap()["config"].clone();
        restore_absent_secrets(&mut same_scheme, &stored);
        assert_eq!(same_scheme, stored.full_config());

        let mut new_scheme =
            json!({"url": "https://y", "auth": {"type": "basic", "username": "u", "password": "p"}});
        restore_absent_secrets(&mut new_scheme, &stored);
        assert_eq!(new_scheme["signing_secret"], "whsec_a");
        assert!(new_scheme["auth"].get("token").is_none());
    }

    #[test]
    fn default_policies_are_valid_and_match_the_spec() {
        let retry = RetryPolicy::default();
        assert!(retry.validate().is_ok());
        assert_eq!((retry.max_attempts, retry.initial_delay_ms, retry.max_delay_ms), (12, 1_000, 3_600_000));
        assert!(CircuitBreakerPolicy::default().validate().is_ok());
    }

    #[test]
    fn out_of_range_policies_name_each_field() {
        let retry = RetryPolicy { max_attempts: 0, jitter: 2.0, ..RetryPolicy::default() };
        let fields: Vec<_> = retry.validate().unwrap_err().0.into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["max_attempts", "jitter"]);
    }
}
