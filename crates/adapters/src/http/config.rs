//! Configuration of `http` destinations.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use switchyard_core::ValidationError;
use switchyard_core::destination::{
    PREVIOUS_SIGNING_SECRET, PREVIOUS_SIGNING_SECRET_EXPIRES_AT, split_secrets,
};
use switchyard_core::error::{FieldError, Violations};
use switchyard_core::transport::ValidatedConfig;

use crate::config_io;
use crate::ssrf::UrlPolicy;

/// Paths of the secret values in an `http` configuration.
pub const SECRET_PATHS: [&str; 6] = [
    "signing_secret",
    PREVIOUS_SIGNING_SECRET,
    "auth.token",
    "auth.password",
    "auth.client_secret",
    "secret_headers",
];

const ROTATION_ONLY: &str = "is set only by POST /v1/destinations/{id}/signing-secret/rotate";

pub(crate) const SIGNING_SECRET_PREFIX: &str = "whsec_";
/// Headers the hub sets itself; a destination may not override them.
const RESERVED_HEADERS: [&str; 10] = [
    "content-type",
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
/// Headers about the connection or the message's framing, which the HTTP client writes: set by
/// hand they would corrupt the request or be refused by it at every attempt.
const CONNECTION_HEADERS: [&str; 13] = [
    "connection",
    "content-length",
    "expect",
    "host",
    "http2-settings",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub url: String,
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default)]
    pub headers: Map<String, Value>,
    /// Headers sent like `headers` whose values are secrets: sealed at rest, never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_headers: Option<Map<String, Value>>,
    #[serde(default)]
    pub auth: Auth,
    pub signing_secret: Option<String>,
    /// The secret a rotation replaced: deliveries are signed with it too until
    /// `previous_signing_secret_expires_at`, so receivers can switch over without a gap. Only
    /// the rotation sets the two; [`validate`] refuses them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_signing_secret: Option<String>,
    /// Milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_signing_secret_expires_at: Option<i64>,
}

fn default_method() -> String {
    "POST".to_owned()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "snake_case", deny_unknown_fields)]
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

switchyard_core::tagged_union!(Auth);

/// A fresh Standard Webhooks secret: `whsec_` and 32 random bytes in base64.
pub fn generate_signing_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{SIGNING_SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// How long a write waits for DNS to say where a destination's host name points.
const WRITE_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// [`validate`], then the SSRF guard's write-time half: under [`UrlPolicy::PublicOnly`] a URL
/// whose host now resolves to a private, loopback, link-local or metadata address is refused
/// (see [`crate::ssrf`]); a name that does not resolve is accepted.
pub async fn validate_resolved(raw: Value, policy: UrlPolicy) -> Result<ValidatedConfig, ValidationError> {
    let validated = validate(raw, policy)?;
    if policy == UrlPolicy::PublicOnly {
        let mut violations = Violations::default();
        for (field, raw) in urls(&validated.config) {
            let Ok(url) = url::Url::parse(raw) else { continue };
            if let Err(forbidden) = policy.check_resolved(&url, WRITE_LOOKUP_TIMEOUT).await {
                violations.push(field, forbidden.to_string());
            }
        }
        violations.into_result()?;
    }
    Ok(validated)
}

/// The configuration's URL fields and their paths, for the checks that resolve names.
fn urls(config: &Value) -> Vec<(&'static str, &str)> {
    let mut urls = Vec::with_capacity(2);
    if let Some(url) = config.get("url").and_then(Value::as_str) {
        urls.push(("config.url", url));
    }
    if let Some(url) = config.pointer("/auth/token_url").and_then(Value::as_str) {
        urls.push(("config.auth.token_url", url));
    }
    urls
}

/// Checks `raw`, a configuration as a client wrote it, and fills in defaults. URL hosts are
/// checked against `policy` as written (literal addresses, `localhost` names); what names
/// resolve to is checked by [`validate_resolved`]. The rotation state is refused: only
/// `POST …/signing-secret/rotate` sets it.
pub fn validate(mut raw: Value, policy: UrlPolicy) -> Result<ValidatedConfig, ValidationError> {
    let Some(fields) = raw.as_object_mut() else {
        return Err(ValidationError::single("config", "must be an object"));
    };
    let rotation: Vec<FieldError> = [PREVIOUS_SIGNING_SECRET, PREVIOUS_SIGNING_SECRET_EXPIRES_AT]
        .into_iter()
        .filter(|key| fields.remove(*key).is_some())
        .map(|key| FieldError::new(format!("config.{key}"), ROTATION_ONLY))
        .collect();
    let mut config: HttpConfig = switchyard_core::json::from_value_at(raw, "config").map_err(|error| {
        let mut errors = rotation.clone();
        errors
            .extend(config_io::unquoted_secrets(error, |field| config_io::is_secret(field, &SECRET_PATHS)).0);
        ValidationError(errors)
    })?;
    let mut v = Violations::default();
    v.absorb(ValidationError(rotation));
    check_url(&mut v, "config.url", &config.url, policy);
    config.method = config.method.to_ascii_uppercase();
    if !matches!(config.method.as_str(), "POST" | "PUT" | "PATCH") {
        v.push("config.method", "must be POST, PUT or PATCH");
    }
    check_headers(&mut v, "config.headers", &config.headers);
    if let Some(secret_headers) = &config.secret_headers {
        check_headers(&mut v, "config.secret_headers", secret_headers);
        for name in secret_headers.keys() {
            if config.headers.keys().any(|plain| plain.eq_ignore_ascii_case(name)) {
                v.push(format!("config.secret_headers.{name}"), "is in config.headers too; name it once");
            }
        }
    }
    config.secret_headers = config.secret_headers.filter(|headers| !headers.is_empty());
    match &config.auth {
        Auth::None => {}
        Auth::Bearer { token } => check_credential(&mut v, "config.auth.token", token),
        Auth::Basic { username, password } => {
            check_credential(&mut v, "config.auth.username", username);
            if username.contains(':') {
                v.push("config.auth.username", "must not contain ':' (basic auth joins username:password)");
            }
            check_credential(&mut v, "config.auth.password", password);
        }
        Auth::Oauth2ClientCredentials { token_url, client_id, client_secret, scope } => {
            check_url(&mut v, "config.auth.token_url", token_url, policy);
            check_credential(&mut v, "config.auth.client_id", client_id);
            check_credential(&mut v, "config.auth.client_secret", client_secret);
            if let Some(scope) = scope {
                check_credential(&mut v, "config.auth.scope", scope);
            }
        }
    }
    match &config.signing_secret {
        Some(secret) => check_signing_secret(&mut v, "config.signing_secret", secret),
        None => config.signing_secret = Some(generate_signing_secret()),
    }
    v.into_result()?;
    let mut value =
        serde_json::to_value(&config).map_err(|e| ValidationError::single("config", e.to_string()))?;
    let secrets = split_secrets(&mut value, &SECRET_PATHS);
    Ok(ValidatedConfig { config: value, secrets })
}

/// Each header of `headers` (at `field`) must be one the hub can send as written, and not one
/// it sets itself or the HTTP client owns. Messages never quote a value: it may be a secret.
fn check_headers(v: &mut Violations, field: &str, headers: &Map<String, Value>) {
    for (name, value) in headers {
        let field = format!("{field}.{name}");
        let lowercase = name.to_ascii_lowercase();
        if !is_header_name(name) {
            v.push(field, "is not a valid header name");
        } else if RESERVED_HEADERS.contains(&lowercase.as_str()) {
            v.push(field, "is set by Switchyard and cannot be configured");
        } else if CONNECTION_HEADERS.contains(&lowercase.as_str()) {
            v.push(field, "is a connection or framing header, which the HTTP client sets");
        } else if !value.as_str().is_some_and(is_header_value) {
            v.push(field, "must be a string of visible characters");
        }
    }
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

/// A token, name or password: not blank, and without control characters (a CR or LF would end
/// a header it is sent in, or the form it is posted in).
fn check_credential(v: &mut Violations, field: &str, value: &str) {
    if value.trim().is_empty() {
        v.push(field, "must not be empty");
    } else if value.chars().any(char::is_control) {
        v.push(field, "must not contain control characters such as CR or LF");
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

    fn fields_of(result: Result<ValidatedConfig, ValidationError>) -> Vec<String> {
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
            fields_of(result),
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
        assert_eq!(fields_of(validate(json!({"url": "https://x", "colour": 1}))), ["config.colour"]);
        assert_eq!(fields_of(validate(json!({"method": "POST"}))), ["config.url"]);
        assert_eq!(
            fields_of(validate(json!({"url": "https://x", "auth": {"type": "bearer"}}))),
            ["config.auth.token"]
        );
    }

    #[test]
    fn the_rotation_state_is_refused_naming_each_field() {
        let planted = json!({
            "url": "https://x",
            "previous_signing_secret": generate_signing_secret(),
            "previous_signing_secret_expires_at": 1
        });
        let err = validate(planted).unwrap_err();
        let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["config.previous_signing_secret", "config.previous_signing_secret_expires_at"]);
        assert!(err.0.iter().all(|e| e.message.contains("signing-secret/rotate")), "{err:?}");
        // Beside another mistake, both are still named.
        assert_eq!(
            fields_of(validate(json!({"url": "https://x", "colour": 1, "previous_signing_secret": null}))),
            ["config.previous_signing_secret", "config.colour"]
        );
    }

    #[test]
    fn secret_headers_are_split_out_whole() {
        let validated = validate(json!({
            "url": "https://example.com",
            "headers": {"X-Team": "billing"},
            "secret_headers": {"X-API-Key": "k3y-value"}
        }))
        .unwrap();
        assert_eq!(validated.secrets["secret_headers"], json!({"X-API-Key": "k3y-value"}));
        assert!(validated.config.get("secret_headers").is_none());
        assert!(!validated.config.to_string().contains("k3y-value"));
        assert_eq!(validated.config["headers"], json!({"X-Team": "billing"}));
        let none = validate(json!({"url": "https://example.com", "secret_headers": {}})).unwrap();
        assert!(!none.secrets.contains_key("secret_headers"), "an empty map is no secret");
        let err =
            validate(json!({"url": "https://x", "secret_headers": "X-API-Key: k3y-value"})).unwrap_err();
        assert_eq!(err.0[0].field, "config.secret_headers");
        assert!(!format!("{err:?}").contains("k3y-value"), "{err:?}");
    }

    #[test]
    fn connection_and_framing_headers_are_refused_in_either_map() {
        let connection = [
            "Transfer-Encoding",
            "Connection",
            "Host",
            "Content-Length",
            "Keep-Alive",
            "Upgrade",
            "TE",
            "Trailer",
            "Proxy-Connection",
            "Expect",
        ];
        let headers: Map<String, Value> =
            connection.iter().map(|name| ((*name).to_owned(), json!("x"))).collect();
        let err = validate(json!({"url": "https://x", "headers": headers.clone()})).unwrap_err();
        assert_eq!(err.0.len(), connection.len(), "{err:?}");
        assert!(err.0.iter().all(|e| e.message.contains("connection or framing")), "{err:?}");
        assert_eq!(
            fields_of(validate(json!({"url": "https://x",
                                      "secret_headers": {"transfer-encoding": "chunked", "Webhook-Signature": "v1,x"}}))),
            ["config.secret_headers.Webhook-Signature", "config.secret_headers.transfer-encoding"]
        );
    }

    #[test]
    fn header_values_with_line_breaks_are_refused_without_quoting_them() {
        let err = validate(json!({
            "url": "https://x",
            "headers": {"X-Plain": "a\r\nX-Injected: 1"},
            "secret_headers": {"X-API-Key": "k3y\nX-Injected: 1", "X-Blank": 7}
        }))
        .unwrap_err();
        let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["config.headers.X-Plain", "config.secret_headers.X-API-Key", "config.secret_headers.X-Blank"]
        );
        assert!(!format!("{err:?}").contains("k3y"), "{err:?}");
    }

    #[test]
    fn a_header_is_either_plain_or_secret() {
        assert_eq!(
            fields_of(validate(json!({"url": "https://x", "headers": {"X-API-Key": "a"},
                                      "secret_headers": {"x-api-key": "b"}}))),
            ["config.secret_headers.x-api-key"]
        );
    }

    #[test]
    fn credentials_with_control_characters_are_refused() {
        let cases = [
            (json!({"type": "bearer", "token": "t0k\r\nX-Injected: 1"}), vec!["config.auth.token"]),
            (
                json!({"type": "basic", "username": "svc\n", "password": "p\u{7f}w"}),
                vec!["config.auth.username", "config.auth.password"],
            ),
            (
                json!({"type": "oauth2_client_credentials", "token_url": "https://idp.example.com/token",
                       "client_id": "hub\r", "client_secret": "s\u{0}", "scope": "read\nwrite"}),
                vec!["config.auth.client_id", "config.auth.client_secret", "config.auth.scope"],
            ),
        ];
        for (auth, expected) in cases {
            assert_eq!(fields_of(validate(json!({"url": "https://x", "auth": auth}))), expected, "{auth}");
        }
        assert_eq!(
            fields_of(validate(json!({"url": "https://x", "signing_secret": "whsec_AAAA\r\nAAAA"}))),
            ["config.signing_secret"]
        );
    }

    #[test]
    fn a_basic_username_cannot_hold_a_colon() {
        let err = validate(json!({"url": "https://x",
                                  "auth": {"type": "basic", "username": "svc:admin", "password": "p"}}))
        .unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].field, "config.auth.username");
        assert!(err.0[0].message.contains("':'"), "{err:?}");
    }

    #[test]
    fn hub_headers_cannot_be_configured() {
        assert_eq!(
            fields_of(validate(json!({
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
        assert_eq!(fields_of(validate(json!({"url": "https://u:p@example.com"}))), ["config.url"]);
    }
}
