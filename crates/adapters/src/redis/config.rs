//! Configuration of `redis` destinations: `{"url", "stream", "max_len", "auth"?}` (SPEC §5).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_core::ValidationError;
use switchyard_core::error::Violations;
use switchyard_core::transport::ValidatedConfig;
use url::Url;

use crate::config_io;
use crate::ssrf::UrlPolicy;
use crate::template::Template;

/// Paths of the secret values in a `redis` configuration.
pub const SECRET_PATHS: [&str; 1] = ["auth.password"];

/// The port a `redis://` URL without one reaches.
pub const DEFAULT_PORT: u16 = 6379;

/// Entries a stream keeps, about (`XADD … MAXLEN ~`), unless the destination says otherwise.
pub const DEFAULT_MAX_LEN: u64 = 100_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:6379/0`: the host, the port and the database number.
    pub url: String,
    /// The stream's key; `{event_type}` and `{ordering_key}` are filled in per message.
    pub stream: String,
    /// About how many entries the stream keeps; older ones are trimmed as entries are added.
    #[serde(default = "default_max_len")]
    pub max_len: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<RedisAuth>,
}

fn default_max_len() -> u64 {
    DEFAULT_MAX_LEN
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "snake_case", deny_unknown_fields)]
pub enum RedisAuth {
    /// An ACL user and its password (`default` for a server with only `requirepass`).
    UserPassword { username: String, password: String },
}

switchyard_core::tagged_union!(RedisAuth);

/// Checks `raw`, a configuration as a client wrote it. The URL's host is checked against
/// `policy` as written; what a name resolves to is checked by the transport.
pub fn validate(raw: Value, policy: UrlPolicy) -> Result<ValidatedConfig, ValidationError> {
    let config: RedisConfig = config_io::read(raw, |field| config_io::is_secret(field, &SECRET_PATHS))?;
    let mut v = Violations::default();
    match parse_url(&config.url) {
        Ok(url) => {
            if let Err(forbidden) = policy.check_url(&url) {
                v.push("config.url", forbidden.to_string());
            }
        }
        Err(reason) => v.push("config.url", reason),
    }
    match Template::parse(&config.stream) {
        Ok(template) => {
            if let Err(reason) = check_key(&template.sample("x")) {
                v.push("config.stream", reason);
            }
        }
        Err(reason) => v.push("config.stream", reason),
    }
    if config.max_len == 0 {
        v.push("config.max_len", "must be at least 1");
    }
    if let Some(RedisAuth::UserPassword { username, password }) = &config.auth {
        for (field, value) in [("config.auth.username", username), ("config.auth.password", password)] {
            if value.trim().is_empty() {
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
        "redis" => {}
        "rediss" => return Err("uses TLS (rediss://), which this release does not speak to Redis".to_owned()),
        _ => return Err("must be a redis:// URL".to_owned()),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials; use config.auth".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must be only a host, a port and a database number".to_owned());
    }
    let database = url.path().trim_start_matches('/');
    if !database.is_empty() && database.parse::<u16>().is_err() {
        return Err("must end in a database number (redis://host:6379/0)".to_owned());
    }
    Ok(url)
}

/// A stream key messages can be added to: not empty, at most 512 bytes, no whitespace or
/// control characters.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if key.len() > 512 {
        return Err("must be at most 512 bytes".to_owned());
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".to_owned());
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
    fn a_valid_config_gets_its_default_and_keeps_its_secret_apart() {
        let raw = json!({
            "url": "redis://127.0.0.1:6379/0",
            "stream": "events.{event_type}",
            "auth": {"type": "user_password", "username": "default", "password": "s3cret"}
        });
        let validated = validate(raw, UrlPolicy::AllowPrivate).expect("valid");
        assert_eq!(validated.config["max_len"], json!(DEFAULT_MAX_LEN));
        assert_eq!(validated.config["auth"], json!({"type": "user_password", "username": "default"}));
        assert_eq!(validated.secrets.get("auth.password"), Some(&json!("s3cret")));
    }

    #[test]
    fn each_bad_field_is_named() {
        let url = "redis://127.0.0.1:6379/0";
        assert_eq!(fields_of(json!({"url": url})), ["config.stream"]);
        assert_eq!(fields_of(json!({"url": "http://127.0.0.1:6379", "stream": "s"})), ["config.url"]);
        assert_eq!(fields_of(json!({"url": "rediss://127.0.0.1:6379", "stream": "s"})), ["config.url"]);
        assert_eq!(fields_of(json!({"url": "redis://:pw@127.0.0.1", "stream": "s"})), ["config.url"]);
        assert_eq!(fields_of(json!({"url": "redis://127.0.0.1/db", "stream": "s"})), ["config.url"]);
        assert_eq!(fields_of(json!({"url": url, "stream": "events.{kind}"})), ["config.stream"]);
        assert_eq!(fields_of(json!({"url": url, "stream": "two words"})), ["config.stream"]);
        assert_eq!(fields_of(json!({"url": url, "stream": "s", "max_len": 0})), ["config.max_len"]);
        assert_eq!(fields_of(json!({"url": url, "stream": "s", "maxlen": 5})), ["config.maxlen"]);
    }

    #[test]
    fn private_addresses_are_refused_unless_allowed() {
        let raw = json!({"url": "redis://127.0.0.1:6379/0", "stream": "s"});
        let refused = validate(raw, UrlPolicy::PublicOnly).expect_err("refused");
        assert_eq!(refused.0[0].field, "config.url");
    }
}
