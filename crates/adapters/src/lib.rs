//! Outbound transports, one folder per destination kind, each with its `config.rs` and its
//! adapter. The registry below ([`Adapters`], [`validate_config`]) is the one place that knows
//! which kinds exist: adding a transport adds a folder and a line in each.

pub mod http;
pub mod ssrf;

use std::time::Duration;

use serde_json::{Map, Value};
use switchyard_core::ValidationError;
use switchyard_core::adapter::Adapter;
use switchyard_core::destination::DestinationKind;
use switchyard_core::error::Violations;

use crate::http::{HttpAdapter, HttpSettings};
pub use crate::ssrf::UrlPolicy;

/// Settings of every adapter, built once at start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdapterSettings {
    pub http: HttpSettings,
    /// Which addresses destinations may reach (`security.allow_private_destinations`).
    pub url_policy: UrlPolicy,
}

/// One adapter per destination kind the release supports. The engine asks it for the adapter
/// of a destination's kind and never names a transport itself.
pub struct Adapters {
    http: HttpAdapter,
}

impl Adapters {
    pub fn new(settings: AdapterSettings) -> Self {
        Self { http: HttpAdapter::new(settings.http, settings.url_policy) }
    }

    /// The adapter for `kind`, or `None` when this release cannot deliver to it.
    pub fn get(&self, kind: DestinationKind) -> Option<&dyn Adapter> {
        match kind {
            DestinationKind::Http => Some(&self.http),
            DestinationKind::Nats
            | DestinationKind::Amqp
            | DestinationKind::Redis
            | DestinationKind::Mqtt => None,
        }
    }
}

impl Default for Adapters {
    fn default() -> Self {
        Self::new(AdapterSettings::default())
    }
}

/// Installs ring as the process's rustls crypto provider, unless one is installed already.
/// TLS clients (`reqwest` here, built with `rustls-no-provider`) panic when none is, so the
/// binary calls this at start-up and every adapter that speaks TLS calls it when built;
/// calling it again is harmless. Tests that build their own `reqwest::Client` call it first.
pub fn install_crypto_provider() {
    // An error only says a provider is installed already, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A kind's configuration after validation, with its secrets split out.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedConfig {
    /// What may be shown: the configuration without its secrets.
    pub config: Value,
    /// Secret values keyed by their dotted path in the configuration.
    pub secrets: Map<String, Value>,
}

/// How long a write waits for DNS to say where a destination's host name points.
const WRITE_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Checks `config` against the rules of `kind` and fills in the kind's defaults. Errors name
/// fields relative to `config`.
///
/// Under [`UrlPolicy::PublicOnly`] a URL whose host is, or now resolves to, a private,
/// loopback, link-local or metadata address is refused (the SSRF guard's write-time half; see
/// [`ssrf`]); a name that does not resolve is accepted.
pub async fn validate_config(
    kind: DestinationKind,
    config: Value,
    policy: UrlPolicy,
) -> Result<ValidatedConfig, ValidationError> {
    let validated = match kind {
        DestinationKind::Http => http::config::validate(config, policy)?,
        other => {
            return Err(ValidationError::single(
                "kind",
                format!("destinations of kind {other} are not available in this release; use http"),
            ));
        }
    };
    if policy == UrlPolicy::PublicOnly {
        let mut violations = Violations::default();
        for (field, raw) in http::config::urls(&validated.config) {
            let Ok(url) = url::Url::parse(raw) else { continue };
            if let Err(forbidden) = policy.check_resolved(&url, WRITE_LOOKUP_TIMEOUT).await {
                violations.push(field, forbidden.to_string());
            }
        }
        violations.into_result()?;
    }
    Ok(validated)
}
