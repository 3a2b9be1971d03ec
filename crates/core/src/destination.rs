//! Destinations: external services behind an adapter, with their delivery policies.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ValidationError, Violations};
use crate::id::DestinationId;
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
    pub max_attempts: u32,
    pub initial_delay_ms: u64,
    pub max_delay_ms: u64,
    pub multiplier: f64,
    /// Fraction of each delay added or removed at random (0.2 = ±20 %).
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
    pub per_second: u32,
    /// Tokens the bucket holds when full; defaults to `per_second`.
    #[serde(default)]
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
    pub consecutive_failures: u32,
    pub failure_ratio: f64,
    pub min_requests: u32,
    pub window_ms: u64,
    pub cooldown_ms: u64,
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

/// How the API shows a destination: secrets are replaced by `<name>_set: true`.
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
        for path in self.secrets.keys() {
            mark_secret_set(&mut config, path);
        }
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
}

/// Prepares a configuration written by a client for validation against a stored destination:
/// drops the `<name>_set` markers the API showed, and puts back each stored secret the client
/// left out (so read-modify-write keeps secrets), unless the object holding it changed `type`
/// (a new auth scheme starts without the old one's secrets).
pub fn restore_absent_secrets(config: &mut Value, stored: &Destination) {
    for (path, secret) in &stored.secrets {
        let old_type = parent(&stored.config, path).and_then(|o| o.get("type")).cloned();
        let leaf = leaf(path);
        let Some(map) = parent_mut(config, path) else {
            continue;
        };
        map.remove(&format!("{leaf}_set"));
        if map.get("type").cloned() == old_type && !map.contains_key(leaf) {
            map.insert(leaf.to_owned(), secret.clone());
        }
    }
}

/// Moves the string values at `paths` (dotted) out of `config` into a map keyed by path.
pub fn split_secrets(config: &mut Value, paths: &[&str]) -> Map<String, Value> {
    let mut secrets = Map::new();
    for path in paths {
        let secret = parent_mut(config, path).and_then(|map| map.remove(leaf(path)));
        if let Some(secret) = secret.filter(|s| !s.is_null()) {
            secrets.insert((*path).to_owned(), secret);
        }
    }
    secrets
}

fn set_path(config: &mut Value, path: &str, secret: Value) {
    if let Some(map) = parent_mut(config, path) {
        map.remove(&format!("{}_set", leaf(path)));
        map.insert(leaf(path).to_owned(), secret);
    }
}

fn mark_secret_set(config: &mut Value, path: &str) {
    if let Some(map) = parent_mut(config, path) {
        map.insert(format!("{}_set", leaf(path)), Value::Bool(true));
    }
}

fn leaf(path: &str) -> &str {
    path.rsplit_once('.').map_or(path, |(_, leaf)| leaf)
}

/// The object holding the value at dotted `path`.
fn parent_mut<'a>(config: &'a mut Value, path: &str) -> Option<&'a mut Map<String, Value>> {
    let holder = match path.rsplit_once('.') {
        Some((parent, _)) => parent.split('.').try_fold(config, |v, key| v.as_object_mut()?.get_mut(key))?,
        None => config,
    };
    holder.as_object_mut()
}

fn parent<'a>(config: &'a Value, path: &str) -> Option<&'a Map<String, Value>> {
    let holder = match path.rsplit_once('.') {
        Some((parent, _)) => parent.split('.').try_fold(config, |v, key| v.as_object()?.get(key))?,
        None => config,
    };
    holder.as_object()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_split_out_and_shown_as_set_flags() {
        let mut config = json!({"url": "https://x", "signing_secret": "whsec_a",
                                "auth": {"type": "bearer", "token": "t0k"}});
        let secrets = split_secrets(&mut config, &["signing_secret", "auth.token", "auth.password"]);
        assert_eq!(secrets.len(), 2);
        let destination = Destination {
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
        };
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
        let mut config = json!({"url": "https://x", "signing_secret": "whsec_a",
                                "auth": {"type": "bearer", "token": "t0k"}});
        let secrets = split_secrets(&mut config, &["signing_secret", "auth.token"]);
        let stored = Destination {
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
        };
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
