//! Configuration of `nats` destinations: `{"url", "subject", "auth"?}` (SPEC §5).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_core::ValidationError;
use switchyard_core::error::Violations;
use switchyard_core::transport::ValidatedConfig;
use url::Url;

use crate::config_io;
use crate::ssrf::UrlPolicy;
use crate::template::Template;

/// Paths of the secret values in a `nats` configuration.
pub const SECRET_PATHS: [&str; 3] = ["auth.token", "auth.password", "auth.creds"];

/// The port a `nats://` URL without one reaches.
pub const DEFAULT_PORT: u16 = 4222;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// `nats://host:4222`, or `tls://host:4222` for a TLS connection.
    pub url: String,
    /// The subject to publish to; `{event_type}` and `{ordering_key}` are filled in per message.
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<NatsAuth>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "snake_case", deny_unknown_fields)]
pub enum NatsAuth {
    Token {
        token: String,
    },
    UserPassword {
        username: String,
        password: String,
    },
    /// The text of a `.creds` file: the user's JWT and its NKey seed.
    Creds {
        creds: String,
    },
}

switchyard_core::tagged_union!(NatsAuth);

/// Checks `raw`, a configuration as a client wrote it. The URL's host is checked against
/// `policy` as written; what a name resolves to is checked by the transport.
pub fn validate(raw: Value, policy: UrlPolicy) -> Result<ValidatedConfig, ValidationError> {
    let config: NatsConfig = config_io::read(raw, |field| config_io::is_secret(field, &SECRET_PATHS))?;
    let mut v = Violations::default();
    check_url(&mut v, &config.url, policy);
    check_subject(&mut v, &config.subject);
    match &config.auth {
        None => {}
        Some(NatsAuth::Token { token }) => check_credential(&mut v, "config.auth.token", token),
        Some(NatsAuth::UserPassword { username, password }) => {
            check_credential(&mut v, "config.auth.username", username);
            check_credential(&mut v, "config.auth.password", password);
        }
        Some(NatsAuth::Creds { creds }) if async_nats::ConnectOptions::with_credentials(creds).is_err() => {
            v.push("config.auth.creds", "must be the text of a NATS .creds file (a JWT and an NKey seed)");
        }
        Some(NatsAuth::Creds { .. }) => {}
    }
    v.into_result()?;
    config_io::split(&config, &SECRET_PATHS)
}

/// The URL to connect to, or why it is not one.
pub fn parse_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "nats" | "tls") {
        return Err("must be a nats:// or tls:// URL".to_owned());
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

fn check_url(v: &mut Violations, raw: &str, policy: UrlPolicy) {
    match parse_url(raw) {
        Ok(url) => {
            if let Err(forbidden) = policy.check_url(&url) {
                v.push("config.url", forbidden.to_string());
            }
        }
        Err(reason) => v.push("config.url", reason),
    }
}

fn check_subject(v: &mut Violations, raw: &str) {
    match Template::parse(raw) {
        Ok(template) => {
            if let Err(reason) = check_subject_syntax(&template.sample("x")) {
                v.push("config.subject", reason);
            }
        }
        Err(reason) => v.push("config.subject", reason),
    }
}

/// A subject messages can be published to: dot-separated tokens, none empty, no wildcards, no
/// whitespace or control characters.
pub fn check_subject_syntax(subject: &str) -> Result<(), String> {
    if subject.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if subject.len() > 255 {
        return Err("must be at most 255 bytes".to_owned());
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".to_owned());
    }
    if subject.split('.').any(|token| matches!(token, "" | "*" | ">")) {
        return Err("must be dot-separated tokens, none empty and none a wildcard (* or >)".to_owned());
    }
    Ok(())
}

/// A token, name or password: not blank, and without control characters.
fn check_credential(v: &mut Violations, field: &str, value: &str) {
    if value.trim().is_empty() {
        v.push(field, "must not be empty");
    } else if value.chars().any(char::is_control) {
        v.push(field, "must not contain control characters");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields_of(raw: Value) -> Vec<String> {
        validate(raw, UrlPolicy::AllowPrivate).expect_err("refused").0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_valid_config_keeps_its_secrets_apart() {
        let raw = json!({
            "url": "nats://127.0.0.1:4222",
            "subject": "orders.{event_type}",
            "auth": {"type": "user_password", "username": "hub", "password": "s3cret"}
        });
        let validated = validate(raw, UrlPolicy::AllowPrivate).expect("valid");
        assert_eq!(validated.config["auth"], json!({"type": "user_password", "username": "hub"}));
        assert_eq!(validated.secrets.get("auth.password"), Some(&json!("s3cret")));
    }

    #[test]
    fn each_bad_field_is_named() {
        let url = "nats://127.0.0.1:4222";
        assert_eq!(fields_of(json!({"url": url})), ["config.subject"]);
        assert_eq!(fields_of(json!({"url": "http://127.0.0.1:4222", "subject": "a"})), ["config.url"]);
        assert_eq!(fields_of(json!({"url": "nats://u:p@127.0.0.1", "subject": "a"})), ["config.url"]);
        assert_eq!(fields_of(json!({"url": url, "subject": "a.{tenant}"})), ["config.subject"]);
        assert_eq!(fields_of(json!({"url": url, "subject": "a.*"})), ["config.subject"]);
        assert_eq!(fields_of(json!({"url": url, "subject": "a..b"})), ["config.subject"]);
        assert_eq!(fields_of(json!({"url": url, "subject": "a b"})), ["config.subject"]);
        assert_eq!(fields_of(json!({"url": url, "subject": "a", "stream": "S"})), ["config.stream"]);
        assert_eq!(
            fields_of(json!({"url": url, "subject": "a", "auth": {"type": "token", "token": " "}})),
            ["config.auth.token"]
        );
        assert_eq!(
            fields_of(
                json!({"url": url, "subject": "a", "auth": {"type": "creds", "creds": "not a creds file"}})
            ),
            ["config.auth.creds"]
        );
    }

    #[test]
    fn private_addresses_are_refused_unless_allowed() {
        let raw = json!({"url": "nats://127.0.0.1:4222", "subject": "a"});
        let refused = validate(raw, UrlPolicy::PublicOnly).expect_err("refused");
        assert_eq!(refused.0[0].field, "config.url");
        assert!(refused.0[0].message.contains("security.allow_private_destinations"), "{refused:?}");
    }
}
