//! Configuration of `nats` sources (SPEC §5): `{"url", "subject", "stream", "durable", "auth"?,
//! "batch_size", "poll_interval_ms", "ack_wait_ms"}`. The URL and `auth` follow the rules of the
//! `nats` destination, and their secrets are split out the same way.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchyard_core::ValidationError;
use switchyard_core::error::Violations;
use switchyard_core::transport::ValidatedConfig;

use crate::config_io;
use crate::nats::config::{self as destination, NatsAuth, SECRET_PATHS};
use crate::ssrf::UrlPolicy;

/// The durable consumer's name when the configuration names none.
pub const DEFAULT_DURABLE: &str = "switchyard";
pub const DEFAULT_BATCH_SIZE: u32 = 100;
pub const MAX_BATCH_SIZE: u32 = 1_000;
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 500;
pub const POLL_INTERVAL_MS: std::ops::RangeInclusive<u64> = 10..=60_000;
/// How long the server waits for an acknowledgement before it delivers a message again.
pub const DEFAULT_ACK_WAIT_MS: u64 = 30_000;
pub const ACK_WAIT_MS: std::ops::RangeInclusive<u64> = 1_000..=3_600_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSourceConfig {
    /// `nats://host:4222`, or `tls://host:4222`.
    pub url: String,
    /// The consumer's filter subject; may hold wildcards (`orders.*`, `orders.>`).
    pub subject: String,
    /// The JetStream stream to read; it must exist.
    pub stream: String,
    /// The durable pull consumer's name, created on the stream when absent.
    #[serde(default = "default_durable")]
    pub durable: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<NatsAuth>,
    /// Messages read at most per batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// How long a read waits for the first message before it answers an empty batch.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// The durable consumer's ack wait.
    #[serde(default = "default_ack_wait_ms")]
    pub ack_wait_ms: u64,
}

fn default_durable() -> String {
    DEFAULT_DURABLE.to_owned()
}

fn default_batch_size() -> u32 {
    DEFAULT_BATCH_SIZE
}

fn default_poll_interval_ms() -> u64 {
    DEFAULT_POLL_INTERVAL_MS
}

fn default_ack_wait_ms() -> u64 {
    DEFAULT_ACK_WAIT_MS
}

/// Reads and checks `raw` as a client wrote it, without reaching the server.
pub fn parse(raw: Value) -> Result<NatsSourceConfig, ValidationError> {
    let config: NatsSourceConfig = config_io::read(raw, |field| config_io::is_secret(field, &SECRET_PATHS))?;
    let mut v = Violations::default();
    // The URL and the credentials are the destination's: its checks, on those two fields only.
    let mut connection = json!({"url": config.url, "subject": "switchyard"});
    if let Some(auth) = &config.auth {
        connection["auth"] = json!(auth);
    }
    v.check(destination::validate(connection, UrlPolicy::AllowPrivate));
    if let Err(reason) = check_filter_subject(&config.subject) {
        v.push("config.subject", reason);
    }
    if let Err(reason) = check_name(&config.stream) {
        v.push("config.stream", reason);
    }
    if let Err(reason) = check_name(&config.durable) {
        v.push("config.durable", reason);
    }
    if !(1..=MAX_BATCH_SIZE).contains(&config.batch_size) {
        v.push("config.batch_size", format!("must be between 1 and {MAX_BATCH_SIZE}"));
    }
    if !POLL_INTERVAL_MS.contains(&config.poll_interval_ms) {
        v.push(
            "config.poll_interval_ms",
            format!("must be between {} and {}", POLL_INTERVAL_MS.start(), POLL_INTERVAL_MS.end()),
        );
    }
    if !ACK_WAIT_MS.contains(&config.ack_wait_ms) {
        v.push(
            "config.ack_wait_ms",
            format!("must be between {} and {}", ACK_WAIT_MS.start(), ACK_WAIT_MS.end()),
        );
    }
    v.into_result()?;
    Ok(config)
}

/// The checked configuration with its defaults, secrets split out to be sealed.
pub fn split(config: &NatsSourceConfig) -> Result<ValidatedConfig, ValidationError> {
    config_io::split(config, &SECRET_PATHS)
}

/// A subject a consumer may filter on: dot-separated tokens, none empty, where a token may be
/// the wildcard `*` and the last one `>`; no whitespace or control characters.
pub fn check_filter_subject(subject: &str) -> Result<(), String> {
    if subject.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if subject.len() > 255 {
        return Err("must be at most 255 bytes".to_owned());
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".to_owned());
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    if tokens.iter().any(|token| token.is_empty()) {
        return Err("must be dot-separated tokens, none empty".to_owned());
    }
    if tokens.iter().rev().skip(1).any(|token| *token == ">") {
        return Err("may hold the wildcard > only as its last token".to_owned());
    }
    Ok(())
}

/// A stream or consumer name: not empty, at most 255 bytes, none of `.`, `*`, `>`, `/`, `\`,
/// whitespace or control characters.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.len() > 255 {
        return Err("must be at most 255 bytes".to_owned());
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Err("must not contain whitespace, control characters, or any of . * > / \\".to_owned());
    }
    Ok(())
}

/// Whether every subject `filter` matches is one `pattern` (a stream's subject) takes.
pub fn is_within(filter: &str, pattern: &str) -> bool {
    let (mut filter, mut pattern) = (filter.split('.'), pattern.split('.'));
    loop {
        match (filter.next(), pattern.next()) {
            (None, None) => return true,
            (Some(_), Some(">")) => return true,
            (Some(">"), Some("*")) => return false,
            (Some(_), Some("*")) => {}
            (Some(token), Some(literal)) if token == literal => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields_of(raw: Value) -> Vec<String> {
        parse(raw).expect_err("refused").0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn defaults_are_filled_in_and_secrets_split_out() {
        let raw = json!({
            "url": "nats://127.0.0.1:4222",
            "subject": "orders.>",
            "stream": "ORDERS",
            "auth": {"type": "user_password", "username": "hub", "password": "s3cret"}
        });
        let validated = split(&parse(raw).expect("valid")).expect("split");
        assert_eq!(
            validated.config,
            json!({
                "url": "nats://127.0.0.1:4222",
                "subject": "orders.>",
                "stream": "ORDERS",
                "durable": "switchyard",
                "auth": {"type": "user_password", "username": "hub"},
                "batch_size": 100,
                "poll_interval_ms": 500,
                "ack_wait_ms": 30_000
            })
        );
        assert_eq!(validated.secrets.get("auth.password"), Some(&json!("s3cret")));
    }

    #[test]
    fn each_bad_field_is_named() {
        let ok = json!({"url": "nats://127.0.0.1:4222", "subject": "a.*", "stream": "S"});
        let with = |field: &str, value: Value| {
            let mut raw = ok.clone();
            raw[field] = value;
            fields_of(raw)
        };
        assert_eq!(with("url", json!("http://h")), ["config.url"]);
        assert_eq!(with("url", json!("nats://u:p@h")), ["config.url"]);
        assert_eq!(with("subject", json!("a.>.b")), ["config.subject"]);
        assert_eq!(with("subject", json!("a..b")), ["config.subject"]);
        assert_eq!(with("subject", json!("")), ["config.subject"]);
        assert_eq!(with("stream", json!("a.b")), ["config.stream"]);
        assert_eq!(with("durable", json!("has space")), ["config.durable"]);
        assert_eq!(with("batch_size", json!(0)), ["config.batch_size"]);
        assert_eq!(with("batch_size", json!(1001)), ["config.batch_size"]);
        assert_eq!(with("poll_interval_ms", json!(5)), ["config.poll_interval_ms"]);
        assert_eq!(with("ack_wait_ms", json!(999)), ["config.ack_wait_ms"]);
        assert_eq!(with("auth", json!({"type": "token", "token": " "})), ["config.auth.token"]);
        assert_eq!(with("queue", json!("q")), ["config.queue"]);
        assert_eq!(fields_of(json!({"url": "nats://h", "subject": "a"})), ["config.stream"]);
    }

    #[test]
    fn a_filter_lies_within_a_stream_subject_or_not() {
        assert!(is_within("orders.created", "orders.*"));
        assert!(is_within("orders.*", "orders.*"));
        assert!(is_within("orders.eu.>", "orders.>"));
        assert!(is_within("orders.>", "orders.>"));
        assert!(is_within("orders", "orders"));
        assert!(!is_within("orders.>", "orders.*"));
        assert!(!is_within("orders", "orders.>"));
        assert!(!is_within("orders.*", "orders.created"));
        assert!(!is_within("billing.x", "orders.>"));
        assert!(!is_within("orders.a.b", "orders.*"));
    }
}
