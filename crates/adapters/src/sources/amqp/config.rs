//! Configuration of `amqp` sources (SPEC §5): `{"url", "queue", "prefetch", "batch_size",
//! "poll_interval_ms"}`. The URL follows the rules of the `amqp` destination: a password in it
//! is taken out when written and kept as the secret `password`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchyard_core::ValidationError;
use switchyard_core::error::Violations;
use switchyard_core::transport::ValidatedConfig;
use url::Url;

use crate::amqp::config::{self as destination, SECRET_PATHS, parse_url};
use crate::config_io;
use crate::ssrf::UrlPolicy;

pub const DEFAULT_PREFETCH: u32 = 100;
/// The most unacknowledged messages a channel may hold (`basic.qos` takes 16 bits).
pub const MAX_PREFETCH: u32 = 65_535;
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 500;
pub const POLL_INTERVAL_MS: std::ops::RangeInclusive<u64> = 10..=60_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSourceConfig {
    /// `amqp://user@host:5672/vhost`, as kept: the password is [`AmqpSourceConfig::password`].
    pub url: String,
    /// The queue to consume; it must exist.
    pub queue: String,
    /// Unacknowledged messages the broker sends ahead (`basic.qos`).
    #[serde(default = "default_prefetch")]
    pub prefetch: u32,
    /// Messages read at most per batch; at most `prefetch`, which it is when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// How long a read waits for the first message before it answers an empty batch.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// The URL's password, write-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

fn default_prefetch() -> u32 {
    DEFAULT_PREFETCH
}

fn default_poll_interval_ms() -> u64 {
    DEFAULT_POLL_INTERVAL_MS
}

impl AmqpSourceConfig {
    pub fn batch_size(&self) -> u32 {
        self.batch_size.unwrap_or(self.prefetch)
    }

    /// The URL to connect to, password included.
    pub fn connect_url(&self) -> Result<Url, String> {
        let mut url = parse_url(&self.url).map_err(|reason| format!("the url {reason}"))?;
        if let Some(password) = &self.password {
            url.set_password(Some(password))
                .map_err(|()| "the password does not fit in the url".to_owned())?;
        }
        Ok(url)
    }
}

/// Reads and checks `raw` as a client wrote it, without reaching the broker; the password
/// leaves the URL and the batch size is filled in.
pub fn parse(raw: Value) -> Result<AmqpSourceConfig, ValidationError> {
    let mut config: AmqpSourceConfig = config_io::read(raw, |field| field == "password" || field == "url")?;
    let mut v = Violations::default();
    // The URL and its password are the destination's: its checks and its split, on those only.
    let mut connection = json!({"url": config.url, "exchange": "", "routing_key": "switchyard"});
    if let Some(password) = &config.password {
        connection["password"] = json!(password);
    }
    if let Some(split) = v.check(destination::validate(connection, UrlPolicy::AllowPrivate)) {
        config.url = split.config["url"].as_str().unwrap_or_default().to_owned();
        config.password = split.secrets.get("password").and_then(Value::as_str).map(str::to_owned);
    }
    if config.queue.is_empty() || config.queue.len() > 255 || config.queue.chars().any(char::is_control) {
        v.push("config.queue", "must be 1 to 255 bytes, without control characters");
    }
    if !(1..=MAX_PREFETCH).contains(&config.prefetch) {
        v.push("config.prefetch", format!("must be between 1 and {MAX_PREFETCH}"));
    }
    match config.batch_size {
        Some(size) if size == 0 || size > config.prefetch => {
            v.push("config.batch_size", "must be between 1 and config.prefetch");
        }
        Some(_) => {}
        None => config.batch_size = Some(config.prefetch),
    }
    if !POLL_INTERVAL_MS.contains(&config.poll_interval_ms) {
        v.push(
            "config.poll_interval_ms",
            format!("must be between {} and {}", POLL_INTERVAL_MS.start(), POLL_INTERVAL_MS.end()),
        );
    }
    v.into_result()?;
    Ok(config)
}

/// The checked configuration with its defaults, the password split out to be sealed.
pub fn split(config: &AmqpSourceConfig) -> Result<ValidatedConfig, ValidationError> {
    config_io::split(config, &SECRET_PATHS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields_of(raw: Value) -> Vec<String> {
        parse(raw).expect_err("refused").0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn the_password_leaves_the_url_and_defaults_are_filled_in() {
        let raw = json!({"url": "amqp://hub:p%40ss@127.0.0.1:5672/orders", "queue": "events"});
        let validated = split(&parse(raw).expect("valid")).expect("split");
        assert_eq!(
            validated.config,
            json!({
                "url": "amqp://hub@127.0.0.1:5672/orders",
                "queue": "events",
                "prefetch": 100,
                "batch_size": 100,
                "poll_interval_ms": 500
            })
        );
        assert_eq!(validated.secrets.get("password"), Some(&json!("p@ss")));
        // Written again as the API hands it back for a PUT (the secret beside the URL): the same.
        let mut again = validated.config.clone();
        again["password"] = json!("p@ss");
        assert_eq!(split(&parse(again).expect("valid")).expect("split"), validated);
    }

    #[test]
    fn the_connect_url_carries_the_password_again() {
        let config =
            parse(json!({"url": "amqp://hub:p%40ss@127.0.0.1/orders", "queue": "q"})).expect("valid");
        let url = config.connect_url().expect("a url");
        assert_eq!(url.password(), Some("p%40ss"));
    }

    #[test]
    fn each_bad_field_is_named() {
        let ok = json!({"url": "amqp://guest@127.0.0.1:5672/%2f", "queue": "q", "prefetch": 10});
        let with = |field: &str, value: Value| {
            let mut raw = ok.clone();
            raw[field] = value;
            fields_of(raw)
        };
        assert_eq!(with("url", json!("amqps://h")), ["config.url"]);
        assert_eq!(with("url", json!("http://h")), ["config.url"]);
        assert_eq!(with("queue", json!("")), ["config.queue"]);
        assert_eq!(with("prefetch", json!(0)), ["config.prefetch"]);
        assert_eq!(with("prefetch", json!(70_000)), ["config.prefetch"]);
        assert_eq!(with("batch_size", json!(11)), ["config.batch_size"]);
        assert_eq!(with("batch_size", json!(0)), ["config.batch_size"]);
        assert_eq!(with("poll_interval_ms", json!(0)), ["config.poll_interval_ms"]);
        assert_eq!(with("exchange", json!("e")), ["config.exchange"]);
        assert_eq!(fields_of(json!({"url": "amqp://h"})), ["config.queue"]);
        assert_eq!(fields_of(json!({"url": "amqp://u:p@h", "password": "q", "queue": "q"})), ["config.url"]);
    }
}
