//! Configuration of `http` destinations.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use switchyard_core::ValidationError;
use switchyard_core::destination::split_secrets;
use switchyard_core::error::Violations;

use crate::ValidatedConfig;
use crate::ssrf::UrlPolicy;

/// Paths of the secret values in an `http` configuration.
pub const SECRET_PATHS: [&str; 5] =
    ["signing_secret", "previous_signing_secret", "auth.token", "auth.password", "auth.client_secret"];

pub(crate) const SIGNING_SECRET_PREFIX: &str = "whsec_";
/// Headers the hub sets itself; a destination may not override them.
const RESERVED_HEADERS: [&str; 12] = [
    "content-type",
    "content-length",
    "host",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-event-type",
    "x-event-id",
    "x-correlation-id",
    "x-causation-id",
    "traceparent",
    "authorization",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub url: String,
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default)]
    pub headers: Map<String, Value>,
    #[serde(default)]
    pub auth: Auth,
    pub signing_secret: Option<String>,
    /// The secret a rotation replaced: deliveries are signed with it too until
    /// `previous_signing_secret_expires_at`, so receivers can switch over without a gap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_signing_secret: Option<String>,
    /// Milliseconds since the Unix epoch; public, so the API can show when the old secret stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_signing_secret_expires_at: Option<i64>,
}

fn default_method() -> String {
    "POST".to_owned()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    #[default]
    None,
    Bearer {
        token: String,
    },
    Basic {
        username: String,
        password: String,
    },
    Oauth2ClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: String,
        scope: Option<String>,
    },
}

/// A fresh Standard Webhooks secret: `whsec_` and 32 random bytes in base64.
pub fn generate_signing_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{SIGNING_SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// The configuration's URL fields and their paths, for the checks that resolve names.
pub(crate) fn urls(config: &Value) -> Vec<(&'static str, &str)> {
    let mut urls = Vec::with_capacity(2);
    if let Some(url) = config.get("url").and_then(Value::as_str) {
        urls.push(("config.url", url));
    }
    if let Some(url) = config.pointer("/auth/token_url").and_then(Value::as_str) {
        urls.push(("config.auth.token_url", url));
    }
    urls
}

/// Checks `raw` and fills in defaults. URL hosts are checked against `policy` as written
/// (literal addresses, `localhost` names); what names resolve to is checked by
/// [`crate::validate_config`].
pub fn validate(raw: Value, policy: UrlPolicy) -> Result<ValidatedConfig, ValidationError> {
    if !raw.is_object() {
        return Err(ValidationError::single("config", "must be an object"));
    }
    let mut config: HttpConfig = serde_path_to_error::deserialize(raw).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "config".to_owned() } else { format!("config.{path}") };
        ValidationError::single(field, e.into_inner().to_string())
    })?;
    let mut v = Violations::default();
    check_url(&mut v, "config.url", &config.url, policy);
    config.method = config.method.to_ascii_uppercase();
    if !matches!(config.method.as_str(), "POST" | "PUT" | "PATCH") {
        v.push("config.method", "must be POST, PUT or PATCH");
    }
    for (name, value) in &config.headers {
        let field = format!("config.headers.{name}");
        if !is_header_name(name) {
            v.push(field, "is not a valid header name");
        } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            v.push(field, "is set by Switchyard and cannot be configured");
        } else if !value.as_str().is_some_and(is_header_value) {
            v.push(field, "must be a string of visible characters");
        }
    }
    match &config.auth {
        Auth::None => {}
        Auth::Bearer { token } => require_text(&mut v, "config.auth.token", token),
        Auth::Basic { username, password } => {
            require_text(&mut v, "config.auth.username", username);
            require_text(&mut v, "config.auth.password", password);
        }
        Auth::Oauth2ClientCredentials { token_url, client_id, client_secret, .. } => {
            check_url(&mut v, "config.auth.token_url", token_url, policy);
            require_text(&mut v, "config.auth.client_id", client_id);
            require_text(&mut v, "config.auth.client_secret", client_secret);
        }
    }
    match &config.signing_secret {
        Some(secret) => check_signing_secret(&mut v, "config.signing_secret", secret),
        None => config.signing_secret = Some(generate_signing_secret()),
    }
    match (&config.previous_signing_secret, config.previous_signing_secret_expires_at) {
        (Some(previous), _) => check_signing_secret(&mut v, "config.previous_signing_secret", previous),
        (None, Some(_)) => {
            v.push("config.previous_signing_secret_expires_at", "requires previous_signing_secret")
        }
        (None, None) => {}
    }
    if config.previous_signing_secret_expires_at.is_some_and(|at| at < 0) {
        v.push("config.previous_signing_secret_expires_at", "must be milliseconds since the Unix epoch");
    }
    v.into_result()?;
    let mut value =
        serde_json::to_value(&config).map_err(|e| ValidationError::single("config", e.to_string()))?;
    let secrets = split_secrets(&mut value, &SECRET_PATHS);
    Ok(ValidatedConfig { config: value, secrets })
}

fn check_url(v: &mut Violations, field: &str, raw: &str, policy: UrlPolicy) {
    match url::Url::parse(raw) {
        Ok(url) if !matches!(url.scheme(), "http" | "https") => v.push(field, "must be an http or https URL"),
        Ok(url) if url.host_str().is_none_or(str::is_empty) => v.push(field, "must name a host"),
        Ok(url) if !url.username().is_empty() || url.password().is_some() => {
            v.push(field, "must not carry credentials; use config.auth")
        }
        Ok(url) => {
            if let Err(forbidden) = policy.check_url(&url) {
                v.push(field, forbidden.to_string());
            }
        }
        Err(e) => v.push(field, format!("is not a valid URL: {e}")),
    }
}

fn require_text(v: &mut Violations, field: &str, value: &str) {
    if value.trim().is_empty() {
        v.push(field, "must not be empty");
    }
}

fn check_signing_secret(v: &mut Violations, field: &str, secret: &str) {
    match signing_key_bytes(secret) {
        Some(bytes) if (24..=64).contains(&bytes.len()) => {}
        _ => v.push(field, "must be whsec_ followed by 24 to 64 bytes in base64"),
    }
}

/// The HMAC key of a `whsec_<base64>` secret.
pub(crate) fn signing_key_bytes(secret: &str) -> Option<Vec<u8>> {
    let b64 = secret.strip_prefix(SIGNING_SECRET_PREFIX)?;
    STANDARD.decode(b64).ok()
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_header_value(value: &str) -> bool {
    value.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Validation under the default policy.
    fn validate(raw: Value) -> Result<ValidatedConfig, ValidationError> {
        super::validate(raw, UrlPolicy::PublicOnly)
    }

    fn fields(result: Result<ValidatedConfig, ValidationError>) -> Vec<String> {
        result.unwrap_err().0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_minimal_config_gets_defaults_and_a_generated_secret() {
        let validated = validate(json!({"url": "https://example.com/hook"})).unwrap();
        assert_eq!(validated.config["method"], "POST");
        assert_eq!(validated.config["auth"], json!({"type": "none"}));
        assert!(validated.config.get("signing_secret").is_none());
        let secret = validated.secrets["signing_secret"].as_str().unwrap();
        assert!(secret.starts_with("whsec_"));
    }

    #[test]
    fn auth_secrets_are_split_out() {
        let validated = validate(json!({
            "url": "https://example.com",
            "auth": {"type": "basic", "username": "u", "password": "p4ss"}
        }))
        .unwrap();
        assert_eq!(validated.secrets["auth.password"], "p4ss");
        assert!(!validated.config.to_string().contains("p4ss"));
        assert_eq!(validated.config["auth"]["username"], "u");
    }

    #[test]
    fn each_bad_field_is_named() {
        let result = validate(json!({
            "url": "ftp://example.com",
            "method": "GET",
            "headers": {"webhook-id": "x", "bad header": "y"},
            "signing_secret": "nope"
        }));
        assert_eq!(
            fields(result),
            [
                "config.url",
                "config.method",
                "config.headers.bad header",
                "config.headers.webhook-id",
                "config.signing_secret"
            ]
        );
    }

    #[test]
    fn unknown_and_missing_fields_are_refused() {
        assert_eq!(fields(validate(json!({"url": "https://x", "colour": 1}))), ["config.colour"]);
        assert_eq!(fields(validate(json!({"method": "POST"}))), ["config"]);
        assert_eq!(
            fields(validate(json!({"url": "https://x", "auth": {"type": "bearer"}}))),
            ["config.auth"]
        );
    }

    #[test]
    fn a_previous_secret_and_its_expiry_survive_a_round_trip() {
        let old = generate_signing_secret();
        let validated = validate(json!({
            "url": "https://example.com",
            "previous_signing_secret": old,
            "previous_signing_secret_expires_at": 1_900_000_000_000i64
        }))
        .unwrap();
        assert_eq!(validated.secrets["previous_signing_secret"], old.as_str());
        assert_eq!(validated.config["previous_signing_secret_expires_at"], 1_900_000_000_000i64);
        assert!(!validated.config.to_string().contains(&old));
        // What the store holds, secrets put back, validates to the same thing again.
        let mut full = validated.config.clone();
        for (path, secret) in &validated.secrets {
            full[path.as_str()] = secret.clone();
        }
        let again = validate(full).unwrap();
        assert_eq!(again, validated);
    }

    #[test]
    fn an_expiry_without_a_previous_secret_is_refused() {
        assert_eq!(
            fields(validate(json!({
                "url": "https://x",
                "previous_signing_secret_expires_at": 1
            }))),
            ["config.previous_signing_secret_expires_at"]
        );
        assert_eq!(
            fields(validate(json!({
                "url": "https://x",
                "previous_signing_secret": "whsec_short"
            }))),
            ["config.previous_signing_secret"]
        );
    }

    #[test]
    fn hub_headers_cannot_be_configured() {
        assert_eq!(
            fields(validate(json!({
                "url": "https://x",
                "headers": {"X-Correlation-ID": "c", "x-team": "ok"}
            }))),
            ["config.headers.X-Correlation-ID"]
        );
    }

    #[test]
    fn private_hosts_are_refused_unless_allowed() {
        let config = json!({
            "url": "http://127.0.0.1:9000/hook",
            "auth": {
                "type": "oauth2_client_credentials",
                "token_url": "http://[::1]/token",
                "client_id": "hub",
                "client_secret": "s"
            }
        });
        let err = validate(config.clone()).unwrap_err();
        let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["config.url", "config.auth.token_url"]);
        assert!(err.0.iter().all(|e| e.message.contains("security.allow_private_destinations")), "{err:?}");
        assert!(super::validate(config, UrlPolicy::AllowPrivate).is_ok());
    }

    #[test]
    fn url_fields_are_listed_for_resolution() {
        let validated = validate(json!({
            "url": "https://hooks.example.com",
            "auth": {
                "type": "oauth2_client_credentials",
                "token_url": "https://idp.example.com/token",
                "client_id": "hub",
                "client_secret": "s"
            }
        }))
        .unwrap();
        assert_eq!(
            urls(&validated.config),
            [
                ("config.url", "https://hooks.example.com"),
                ("config.auth.token_url", "https://idp.example.com/token")
            ]
        );
    }

    #[test]
    fn credentials_in_the_url_are_refused() {
        assert_eq!(fields(validate(json!({"url": "https://u:p@example.com"}))), ["config.url"]);
    }
}
