//! A webhook source's configuration, read strictly (unknown fields refused, every violation
//! named by its path under `config`), with each provider's pinned defaults filled in.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::Value;

use crate::destination::RateLimit;
use crate::error::{ValidationError, Violations};
use crate::event::EventType;
use crate::json;

/// Where a configuration holds its secrets (sealed apart, shown as `<name>_set: true`).
pub const SECRET_PATHS: [&str; 3] = ["verification.secret", "verification.password", "verification.value"];

/// Requests a source accepts per second when its configuration names no `rate_limit`.
pub const DEFAULT_RATE_LIMIT: RateLimit = RateLimit { per_second: 100, burst: Some(500) };

const MAX_HEADER_NAME: usize = 128;
const MAX_FORWARDED_HEADERS: usize = 32;
const DEFAULT_STRIPE_TOLERANCE_MS: u64 = 300_000;

/// How a webhook's sender is authenticated.
#[derive(Clone, PartialEq)]
pub enum Verification {
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature` (`v1,<base64>` …) over
    /// `id.timestamp.body`; `key` is the decoded `whsec_` secret.
    StandardWebhooks {
        key: Vec<u8>,
    },
    /// `X-Hub-Signature-256: sha256=<hex>` over the body.
    Github {
        secret: String,
    },
    /// `Stripe-Signature: t=…,v1=…[,v1=…]` over `t.body`, hex.
    Stripe {
        secret: String,
        tolerance_ms: u64,
    },
    /// `X-Shopify-Hmac-Sha256: <base64>` over the body.
    Shopify {
        secret: String,
    },
    /// Any HMAC of the body in one header.
    Hmac {
        header: String,
        secret: String,
        algorithm: HmacAlgorithm,
        encoding: SignatureEncoding,
        prefix: String,
    },
    Basic {
        username: String,
        password: String,
    },
    ApiKey {
        header: String,
        value: String,
    },
    None,
}

impl std::fmt::Debug for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.type_name())
    }
}

impl Verification {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::StandardWebhooks { .. } => "standard_webhooks",
            Self::Github { .. } => "github",
            Self::Stripe { .. } => "stripe",
            Self::Shopify { .. } => "shopify",
            Self::Hmac { .. } => "hmac",
            Self::Basic { .. } => "basic",
            Self::ApiKey { .. } => "api_key",
            Self::None => "none",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    Hex,
    Base64,
}

/// Where a value of the event (its type or id) is taken from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldRule {
    /// A request header, `prefix` put in front.
    Header { name: String, prefix: String },
    /// A jq filter over the JSON body yielding a string (or a number, for ids).
    Jq { filter: String, prefix: String },
    /// A fixed value.
    Value(String),
    /// The SHA-256 of the raw body, hex (the event id when nothing else names one).
    BodyDigest,
}

/// A webhook source's configuration, defaults resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    pub verification: Verification,
    pub event_type: FieldRule,
    pub event_id: FieldRule,
    /// Lowercased names of the request headers kept in the event's `metadata.headers`.
    pub forward_headers: Vec<String>,
    pub rate_limit: RateLimit,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    verification: Value,
    #[serde(default)]
    event_type: Option<RawRule>,
    #[serde(default)]
    event_id: Option<RawRule>,
    #[serde(default)]
    forward_headers: Vec<String>,
    #[serde(default)]
    rate_limit: Option<RateLimit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    header: Option<String>,
    jq: Option<String>,
    value: Option<String>,
    #[serde(default)]
    prefix: String,
}

#[derive(Deserialize)]
#[serde(remote = "Self", rename_all = "snake_case", deny_unknown_fields)]
enum RawVerification {
    StandardWebhooks {
        secret: String,
    },
    Github {
        secret: String,
    },
    Stripe {
        secret: String,
        #[serde(default = "default_stripe_tolerance")]
        tolerance_ms: u64,
    },
    Shopify {
        secret: String,
    },
    Hmac {
        header: String,
        secret: String,
        #[serde(default = "default_algorithm")]
        algorithm: HmacAlgorithm,
        #[serde(default = "default_encoding")]
        encoding: SignatureEncoding,
        #[serde(default)]
        prefix: String,
    },
    Basic {
        username: String,
        password: String,
    },
    ApiKey {
        header: String,
        value: String,
    },
    None {},
}

crate::tagged_union!(deserialize RawVerification);

fn default_stripe_tolerance() -> u64 {
    DEFAULT_STRIPE_TOLERANCE_MS
}

fn default_algorithm() -> HmacAlgorithm {
    HmacAlgorithm::Sha256
}

fn default_encoding() -> SignatureEncoding {
    SignatureEncoding::Hex
}

impl WebhookConfig {
    /// Reads `config` (secrets included); violations are named `config.<path>`.
    pub fn parse(config: &Value) -> Result<Self, ValidationError> {
        Self::read(config).map_err(|error| error.nested("config"))
    }

    fn read(config: &Value) -> Result<Self, ValidationError> {
        let raw: RawConfig = json::from_value_at(config.clone(), "")?;
        let mut v = Violations::default();
        let verification = v
            .check(json::from_value_at::<RawVerification>(raw.verification, "verification"))
            .and_then(|raw| v.check(verification(raw).map_err(|e| e.nested("verification"))));
        let event_type = match raw.event_type {
            Some(rule) => v.check(field_rule(rule, true).map_err(|e| e.nested("event_type"))),
            None => match verification.as_ref().map(default_event_type) {
                Some(Some(rule)) => Some(rule),
                Some(None) => {
                    v.push(
                        "event_type",
                        "is required for this verification type: {\"header\": …}, {\"jq\": …} or {\"value\": …}",
                    );
                    None
                }
                None => None,
            },
        };
        let event_id = match raw.event_id {
            Some(rule) => v.check(field_rule(rule, false).map_err(|e| e.nested("event_id"))),
            None => verification.as_ref().map(default_event_id),
        };
        if raw.forward_headers.len() > MAX_FORWARDED_HEADERS {
            v.push("forward_headers", format!("may name at most {MAX_FORWARDED_HEADERS} headers"));
        }
        for (i, name) in raw.forward_headers.iter().enumerate() {
            if !is_header_name(name) {
                v.push(format!("forward_headers[{i}]"), "must be an HTTP header name");
            } else if carries_credential(name, verification.as_ref()) {
                // Events are readable by viewers and stored unsealed: a credential kept in one
                // would undo the write-only secret.
                v.push(
                    format!("forward_headers[{i}]"),
                    "carries a credential, which is never kept in events",
                );
            }
        }
        let rate_limit = raw.rate_limit.unwrap_or(DEFAULT_RATE_LIMIT);
        if let Err(error) = rate_limit.validate() {
            v.absorb(error.nested("rate_limit"));
        }
        v.into_result()?;
        let (Some(verification), Some(event_type), Some(event_id)) = (verification, event_type, event_id)
        else {
            unreachable!("violations were empty, so every part parsed");
        };
        Ok(Self {
            verification,
            event_type,
            event_id,
            forward_headers: raw.forward_headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
            rate_limit,
        })
    }
}

fn verification(raw: RawVerification) -> Result<Verification, ValidationError> {
    let mut v = Violations::default();
    let secret = |v: &mut Violations, name: &str, value: String| {
        if value.is_empty() || value.len() > 1024 {
            v.push(name.to_owned(), "must be 1 to 1024 characters");
        }
        value
    };
    let parsed = match raw {
        RawVerification::StandardWebhooks { secret: raw_secret } => {
            let key = raw_secret.strip_prefix("whsec_").and_then(|b64| STANDARD.decode(b64).ok());
            match key {
                Some(key) if (24..=64).contains(&key.len()) => Verification::StandardWebhooks { key },
                _ => {
                    v.push("secret", "must be whsec_ followed by 24 to 64 bytes in base64");
                    Verification::None
                }
            }
        }
        RawVerification::Github { secret: s } => Verification::Github { secret: secret(&mut v, "secret", s) },
        RawVerification::Stripe { secret: s, tolerance_ms } => {
            let secret = secret(&mut v, "secret", s);
            if !(1_000..=3_600_000).contains(&tolerance_ms) {
                v.push("tolerance_ms", "must be between 1000 and 3600000");
            }
            Verification::Stripe { secret, tolerance_ms }
        }
        RawVerification::Shopify { secret: s } => {
            Verification::Shopify { secret: secret(&mut v, "secret", s) }
        }
        RawVerification::Hmac { header, secret: s, algorithm, encoding, prefix } => {
            let secret = secret(&mut v, "secret", s);
            if !is_header_name(&header) {
                v.push("header", "must be an HTTP header name");
            }
            if prefix.len() > 64 {
                v.push("prefix", "must be at most 64 characters");
            }
            Verification::Hmac { header: header.to_ascii_lowercase(), secret, algorithm, encoding, prefix }
        }
        RawVerification::Basic { username, password } => {
            if username.is_empty() || username.len() > 256 || username.contains(':') {
                v.push("username", "must be 1 to 256 characters without ':'");
            }
            Verification::Basic { username, password: secret(&mut v, "password", password) }
        }
        RawVerification::ApiKey { header, value } => {
            if !is_header_name(&header) {
                v.push("header", "must be an HTTP header name");
            }
            Verification::ApiKey {
                header: header.to_ascii_lowercase(),
                value: secret(&mut v, "value", value),
            }
        }
        RawVerification::None {} => Verification::None,
    };
    v.into_result()?;
    Ok(parsed)
}

fn field_rule(raw: RawRule, allow_value: bool) -> Result<FieldRule, ValidationError> {
    let mut v = Violations::default();
    if raw.prefix.len() > 64 {
        v.push("prefix", "must be at most 64 characters");
    } else if allow_value && !raw.prefix.is_empty() && EventType::parse(&format!("{}x", raw.prefix)).is_err()
    {
        // An event type's prefix: events named after it must still be event types.
        v.push("prefix", "must be dotted lowercase segments of a-z, 0-9 and _ ending in . (e.g. github.)");
    }
    let rule = match (raw.header, raw.jq, raw.value) {
        (Some(name), None, None) => {
            if !is_header_name(&name) {
                v.push("header", "must be an HTTP header name");
            }
            FieldRule::Header { name: name.to_ascii_lowercase(), prefix: raw.prefix }
        }
        (None, Some(filter), None) => {
            if filter.trim().is_empty() || filter.len() > 1024 {
                v.push("jq", "must be a jq filter of 1 to 1024 characters");
            }
            FieldRule::Jq { filter, prefix: raw.prefix }
        }
        (None, None, Some(value)) if allow_value => {
            if !raw.prefix.is_empty() {
                v.push("prefix", "applies to header and jq only");
            }
            FieldRule::Value(value)
        }
        _ => {
            let choices = if allow_value { "one of header, jq or value" } else { "one of header or jq" };
            return Err(ValidationError::single("", format!("must name {choices}")));
        }
    };
    v.into_result()?;
    Ok(rule)
}

fn default_event_type(verification: &Verification) -> Option<FieldRule> {
    let header = |name: &str, prefix: &str| FieldRule::Header { name: name.into(), prefix: prefix.into() };
    let jq = |filter: &str, prefix: &str| FieldRule::Jq { filter: filter.into(), prefix: prefix.into() };
    match verification {
        Verification::Github { .. } => Some(header("x-github-event", "github.")),
        Verification::Stripe { .. } => Some(jq(".type", "stripe.")),
        Verification::Shopify { .. } => Some(header("x-shopify-topic", "shopify.")),
        Verification::StandardWebhooks { .. } => Some(jq(".type", "")),
        _ => None,
    }
}

fn default_event_id(verification: &Verification) -> FieldRule {
    let header = |name: &str| FieldRule::Header { name: name.into(), prefix: String::new() };
    match verification {
        Verification::Github { .. } => header("x-github-delivery"),
        Verification::Stripe { .. } => FieldRule::Jq { filter: ".id".into(), prefix: String::new() },
        Verification::Shopify { .. } => header("x-shopify-webhook-id"),
        Verification::StandardWebhooks { .. } => header("webhook-id"),
        _ => FieldRule::BodyDigest,
    }
}

fn carries_credential(name: &str, verification: Option<&Verification>) -> bool {
    let name = name.to_ascii_lowercase();
    let always = ["authorization", "proxy-authorization", "cookie"];
    always.contains(&name.as_str())
        || matches!(verification, Some(Verification::ApiKey { header, .. }) if *header == name)
}

/// RFC 9110 token characters.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HEADER_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// What a provider names an event, made an event type: lowercased, `/` becomes `.`, any other
/// character outside `a-z 0-9 _ .` becomes `_` (`orders/create` → `orders.create`). Empty
/// segments that would result are dropped; `None` when nothing is left.
pub fn normalize_event_type(raw: &str) -> Option<String> {
    let mapped: String = raw
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            '/' => '.',
            c @ ('a'..='z' | '0'..='9' | '_' | '.') => c,
            _ => '_',
        })
        .collect();
    let joined = mapped.split('.').filter(|s| !s.is_empty()).collect::<Vec<_>>().join(".");
    (!joined.is_empty()).then_some(joined)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(error: ValidationError) -> Vec<String> {
        error.0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn providers_pin_their_type_and_id() {
        let github =
            WebhookConfig::parse(&json!({"verification": {"type": "github", "secret": "s"}})).unwrap();
        assert_eq!(
            github.event_type,
            FieldRule::Header { name: "x-github-event".into(), prefix: "github.".into() }
        );
        assert_eq!(
            github.event_id,
            FieldRule::Header { name: "x-github-delivery".into(), prefix: String::new() }
        );
        assert_eq!(github.rate_limit, DEFAULT_RATE_LIMIT);

        let stripe =
            WebhookConfig::parse(&json!({"verification": {"type": "stripe", "secret": "s"}})).unwrap();
        assert_eq!(stripe.event_type, FieldRule::Jq { filter: ".type".into(), prefix: "stripe.".into() });
        assert!(matches!(stripe.verification, Verification::Stripe { tolerance_ms: 300_000, .. }));

        let none =
            WebhookConfig::parse(&json!({"verification": {"type": "none"}, "event_type": {"value": "x.y"}}))
                .unwrap();
        assert_eq!(none.event_id, FieldRule::BodyDigest);
    }

    #[test]
    fn a_scheme_without_a_default_type_needs_one() {
        let error = WebhookConfig::parse(
            &json!({"verification": {"type": "hmac", "header": "X-Sig", "secret": "s"}}),
        )
        .unwrap_err();
        assert_eq!(fields(error), ["config.event_type"]);
    }

    #[test]
    fn every_violation_is_named_by_its_path() {
        let error = WebhookConfig::parse(&json!({
            "verification": {"type": "standard_webhooks", "secret": "nope"},
            "event_type": {"header": "bad header", "prefix": "p"},
            "forward_headers": ["ok", "no good"],
            "rate_limit": {"per_second": 0}
        }))
        .unwrap_err();
        assert_eq!(
            fields(error),
            [
                "config.verification.secret",
                "config.event_type.header",
                "config.forward_headers[1]",
                "config.rate_limit.per_second"
            ]
        );
        let unknown = WebhookConfig::parse(&json!({"verification": {"type": "rsa"}})).unwrap_err();
        assert_eq!(fields(unknown)[0], "config.verification.type");
        let leaky = WebhookConfig::parse(&json!({
            "verification": {"type": "api_key", "header": "X-Key", "value": "k"},
            "event_type": {"value": "a"},
            "forward_headers": ["x-key", "Authorization", "X-Request-Id"]
        }))
        .unwrap_err();
        assert_eq!(fields(leaky), ["config.forward_headers[0]", "config.forward_headers[1]"]);
        let prefix = WebhookConfig::parse(&json!({
            "verification": {"type": "none"}, "event_type": {"header": "X-Type", "prefix": "Acme-"}
        }))
        .unwrap_err();
        assert_eq!(fields(prefix), ["config.event_type.prefix"]);
        let ambiguous = WebhookConfig::parse(
            &json!({"verification": {"type": "none"}, "event_type": {"header": "a", "jq": ".b"}}),
        )
        .unwrap_err();
        assert_eq!(fields(ambiguous), ["config.event_type"]);
    }

    #[test]
    fn provider_names_become_event_types() {
        assert_eq!(normalize_event_type("orders/create").as_deref(), Some("orders.create"));
        assert_eq!(normalize_event_type("Pull-Request").as_deref(), Some("pull_request"));
        assert_eq!(normalize_event_type("a..b/").as_deref(), Some("a.b"));
        assert_eq!(normalize_event_type("//"), None);
    }
}
