//! Outbound transports, one folder per destination kind, each with its `config.rs` and its
//! transport. [`transports`] registers them: adding a kind adds a folder and a line there.

pub mod amqp;
mod config_io;
pub mod connections;
pub mod http;
pub mod identity;
pub mod mqtt;
pub mod nats;
pub mod redis;
pub mod sources;
pub mod ssrf;
pub mod template;
#[cfg(test)]
mod testing;

use std::sync::Arc;

use switchyard_core::destination::DestinationKind;
use switchyard_core::transport::Transports;

use crate::amqp::AmqpTransport;
use crate::http::{HttpAdapter, HttpSettings};
use crate::mqtt::MqttTransport;
use crate::nats::NatsTransport;
use crate::redis::RedisTransport;
pub use crate::sources::pullers;
pub use crate::ssrf::UrlPolicy;

/// Settings of every transport, built once at start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdapterSettings {
    pub http: HttpSettings,
    /// Which addresses destinations may reach (`security.allow_private_destinations`).
    pub url_policy: UrlPolicy,
}

/// The transport of every kind this release delivers to, for the engine and the API.
pub fn transports(settings: AdapterSettings) -> Transports {
    Transports::new()
        .with(DestinationKind::Http, Arc::new(HttpAdapter::new(settings.http, settings.url_policy)))
        .with(DestinationKind::Nats, Arc::new(NatsTransport::new(settings.url_policy)))
        .with(DestinationKind::Redis, Arc::new(RedisTransport::new(settings.url_policy)))
        .with(DestinationKind::Amqp, Arc::new(AmqpTransport::new(settings.url_policy)))
        .with(DestinationKind::Mqtt, Arc::new(MqttTransport::new(settings.url_policy)))
}

/// Installs ring as the process's rustls crypto provider, unless one is installed already.
/// rustls clients built without a provider of their own (the `http` adapter's connector, and
/// `reqwest` as this workspace builds it) fail or panic when none is, so the binary calls this
/// at start-up and every adapter that speaks TLS calls it when built; calling it again is
/// harmless. Tests that build their own `reqwest::Client` call it first.
pub fn install_crypto_provider() {
    // An error only says a provider is installed already, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
