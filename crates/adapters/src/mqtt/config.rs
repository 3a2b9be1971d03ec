//! Configuration of `mqtt` destinations (MQTT 5): `{"url": "mqtt://host:1883", "topic",
//! "qos": 1, "auth"?}` (SPEC §5).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_core::ValidationError;
use switchyard_core::error::Violations;
use switchyard_core::transport::ValidatedConfig;
use url::Url;

use crate::config_io;
use crate::ssrf::UrlPolicy;
use crate::template::Template;

/// Paths of the secret values in an `mqtt` configuration.
pub const SECRET_PATHS: [&str; 1] = ["auth.password"];

/// The port an `mqtt://` URL without one reaches.
pub const DEFAULT_PORT: u16 = 1883;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    pub url: String,
    /// `{event_type}` and `{ordering_key}` are filled in per message.
    pub topic: String,
    /// 1: the broker's PUBACK is the success. Other levels could not say a message arrived.
    #[serde(default = "at_least_once")]
    pub qos: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<MqttAuth>,
}

fn at_least_once() -> u8 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "snake_case", deny_unknown_fields)]
pub enum MqttAuth {
    UserPassword { username: String, password: String },
}

switchyard_core::tagged_union!(MqttAuth);

/// Checks `raw`, a configuration as a client wrote it. The URL's host is checked against
/// `policy` as written; what a name resolves to is checked by the transport.
pub fn validate(raw: Value, policy: UrlPolicy) -> Result<ValidatedConfig, ValidationError> {
    let config: MqttConfig = config_io::read(raw, |field| config_io::is_secret(field, &SECRET_PATHS))?;
    let mut v = Violations::default();
    match parse_url(&config.url) {
        Ok(url) => {
            if let Err(forbidden) = policy.check_url(&url) {
                v.push("config.url", forbidden.to_string());
            }
        }
        Err(reason) => v.push("config.url", reason),
    }
    match Template::parse(&config.topic) {
        Ok(template) => {
            if let Err(reason) = check_topic(&template.sample("x")) {
                v.push("config.topic", reason);
            }
        }
        Err(reason) => v.push("config.topic", reason),
    }
    if config.qos != 1 {
        v.push("config.qos", "must be 1 (at least once: the broker's PUBACK says the message arrived)");
    }
    if let Some(MqttAuth::UserPassword { username, password }) = &config.auth {
        for (field, value) in [("config.auth.username", username), ("config.auth.password", password)] {
            if value.is_empty() {
                v.push(field, "must not be empty");
            } else if value.chars().any(char::is_control) {
                v.push(field, "must not contain control characters");
            }
        }
    }
    v.into_result()?;
    config_io::split(&config, &SECRET_PATHS)
}

/// The URL to connect to, or why it is not one.
pub fn parse_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("is not a valid URL: {e}"))?;
    match url.scheme() {
        "mqtt" => {}
        "mqtts" => {
            return Err("uses TLS (mqtts://), which this release does not speak to MQTT brokers".to_owned());
        }
        _ => return Err("must be an mqtt:// URL".to_owned()),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials; use config.auth".to_owned());
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err("must be only a scheme, a host and a port".to_owned());
    }
    Ok(url)
}

/// A topic messages can be published to: not empty, no wildcards (`+`, `#`), no NUL, at most
/// 65 535 bytes.
pub fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if topic.len() > 65_535 {
        return Err("must be at most 65 535 bytes".to_owned());
    }
    if topic.contains(['+', '#', '\0']) {
        return Err("must not contain the wildcards + and #, nor NUL".to_owned());
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
    fn a_valid_config_gets_qos_1_and_keeps_its_secret_apart() {
        let raw = json!({
            "url": "mqtt://127.0.0.1:1883",
            "topic": "events/{event_type}",
            "auth": {"type": "user_password", "username": "hub", "password": "s3cret"}
        });
        let validated = validate(raw, UrlPolicy::AllowPrivate).expect("valid");
        assert_eq!(validated.config["qos"], 1);
        assert_eq!(validated.secrets.get("auth.password"), Some(&json!("s3cret")));
    }

    #[test]
    fn each_bad_field_is_named() {
        let url = "mqtt://127.0.0.1:1883";
        assert_eq!(fields_of(json!({"url": url})), ["config.topic"]);
        assert_eq!(fields_of(json!({"url": "mqtts://h", "topic": "t"})), ["config.url"]);
        assert_eq!(fields_of(json!({"url": "mqtt://u:p@h", "topic": "t"})), ["config.url"]);
        assert_eq!(fields_of(json!({"url": url, "topic": "events/+"})), ["config.topic"]);
        assert_eq!(fields_of(json!({"url": url, "topic": "events/{kind}"})), ["config.topic"]);
        assert_eq!(fields_of(json!({"url": url, "topic": "t", "qos": 2})), ["config.qos"]);
    }
}
