//! Configuration of `amqp` destinations (RabbitMQ, AMQP 0-9-1):
//! `{"url": "amqp://user:pass@host:5672/vhost", "exchange", "routing_key"}` (SPEC §5). The
//! password is taken out of the URL when written and kept as a secret (`password`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_core::ValidationError;
use switchyard_core::error::Violations;
use switchyard_core::transport::ValidatedConfig;
use url::Url;

use crate::config_io;
use crate::ssrf::UrlPolicy;
use crate::template::Template;

/// Paths of the secret values in an `amqp` configuration.
pub const SECRET_PATHS: [&str; 1] = ["password"];

/// The port an `amqp://` URL without one reaches.
pub const DEFAULT_PORT: u16 = 5672;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpConfig {
    /// `amqp://user@host:5672/vhost`, as kept: the password is [`AmqpConfig::password`].
    pub url: String,
    /// The exchange to publish to; `""` is the default exchange (the routing key names a queue).
    pub exchange: String,
    /// `{event_type}` and `{ordering_key}` are filled in per message.
    pub routing_key: String,
    /// The URL's password, write-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// Checks `raw`, a configuration as a client wrote it, and moves a password out of its URL.
/// The URL's host is checked against `policy` as written; what a name resolves to is checked
/// by the transport.
pub fn validate(raw: Value, policy: UrlPolicy) -> Result<ValidatedConfig, ValidationError> {
    let mut config: AmqpConfig = config_io::read(raw, |field| field == "password" || field == "url")?;
    let mut v = Violations::default();
    match parse_url(&config.url) {
        Ok(mut url) => {
            if let Err(forbidden) = policy.check_url(&url) {
                v.push("config.url", forbidden.to_string());
            }
            if let Some(password) = url.password().map(str::to_owned) {
                if config.password.is_some() {
                    v.push("config.url", "has a password and so does config.password; give it once");
                }
                let decoded = config_io::percent_decode(&password);
                // Removing the password of a URL that has a host always succeeds.
                let _ = url.set_password(None);
                config.url = url.to_string();
                config.password = Some(decoded);
            }
        }
        Err(reason) => v.push("config.url", reason),
    }
    if config.exchange.len() > 127 || config.exchange.chars().any(|c| c.is_whitespace() || c.is_control()) {
        v.push("config.exchange", "must be at most 127 bytes, without whitespace or control characters");
    }
    match Template::parse(&config.routing_key) {
        Ok(template) => {
            if let Err(reason) = check_routing_key(&template.sample("x")) {
                v.push("config.routing_key", reason);
            }
        }
        Err(reason) => v.push("config.routing_key", reason),
    }
    if config.password.as_deref().is_some_and(|p| p.chars().any(char::is_control)) {
        v.push("config.password", "must not contain control characters");
    }
    v.into_result()?;
    config_io::split(&config, &SECRET_PATHS)
}

/// The URL to connect to, or why it is not one. It may carry a user name, and a password.
pub fn parse_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|_| "is not a valid URL".to_owned())?;
    match url.scheme() {
        "amqp" => {}
        "amqps" => {
            return Err("uses TLS (amqps://), which this release does not speak to AMQP brokers".to_owned());
        }
        _ => return Err("must be an amqp:// URL".to_owned()),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must be only a user, a host, a port and a virtual host".to_owned());
    }
    Ok(url)
}

/// A routing key: at most 255 bytes, no control characters.
pub fn check_routing_key(key: &str) -> Result<(), String> {
    if key.len() > 255 {
        return Err("must be at most 255 bytes".to_owned());
    }
    if key.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields_of(raw: Value) -> Vec<String> {
        validate(raw, UrlPolicy::AllowPrivate).expect_err("refused").0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn the_password_leaves_the_url_for_a_secret() {
        let raw = json!({"url": "amqp://hub:p%40ss@127.0.0.1:5672/orders", "exchange": "events", "routing_key": "{event_type}"});
        let validated = validate(raw, UrlPolicy::AllowPrivate).expect("valid");
        assert_eq!(validated.config["url"], "amqp://hub@127.0.0.1:5672/orders");
        assert!(validated.config.get("password").is_none());
        assert_eq!(validated.secrets.get("password"), Some(&json!("p@ss")));
        // Written again as the API hands it back for a PUT (the secret beside the URL): the same.
        let mut again = validated.config.clone();
        again["password"] = json!("p@ss");
        assert_eq!(validate(again, UrlPolicy::AllowPrivate).expect("valid"), validated);
    }

    #[test]
    fn each_bad_field_is_named() {
        let url = "amqp://guest@127.0.0.1:5672/%2f";
        assert_eq!(fields_of(json!({"url": url, "routing_key": "k"})), ["config.exchange"]);
        assert_eq!(fields_of(json!({"url": url, "exchange": "e"})), ["config.routing_key"]);
        assert_eq!(
            fields_of(json!({"url": "amqps://h", "exchange": "e", "routing_key": "k"})),
            ["config.url"]
        );
        assert_eq!(
            fields_of(json!({"url": "http://h", "exchange": "e", "routing_key": "k"})),
            ["config.url"]
        );
        assert_eq!(
            fields_of(json!({"url": url, "exchange": "e", "routing_key": "{type}"})),
            ["config.routing_key"]
        );
        assert_eq!(
            fields_of(json!({"url": url, "exchange": "a b", "routing_key": "k"})),
            ["config.exchange"]
        );
        assert_eq!(
            fields_of(json!({"url": "amqp://u:p@h", "password": "q", "exchange": "e", "routing_key": "k"})),
            ["config.url"]
        );
    }

    #[test]
    fn private_addresses_are_refused_unless_allowed() {
        let raw = json!({"url": "amqp://127.0.0.1", "exchange": "e", "routing_key": "k"});
        let refused = validate(raw, UrlPolicy::PublicOnly).expect_err("refused");
        assert_eq!(refused.0[0].field, "config.url");
    }
}
