//! The `nats` transport: one attempt as one JetStream publish, acknowledged by the stream.
//! `Nats-Msg-Id` is the delivery id, so the stream keeps one copy of a delivery however often
//! it is attempted (within the stream's duplicate window).

use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::{Client, ConnectOptions, HeaderMap, jetstream};
use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;
use switchyard_core::ValidationError;
use switchyard_core::destination::Destination;
use switchyard_core::id::DestinationId;
use switchyard_core::transport::{DeliveryError, OutboundMessage, Receipt, Transport, ValidatedConfig};

use super::config::{self, NatsAuth, NatsConfig};
use crate::config_io;
use crate::connections::{Connection, Connections, check_broker_url, check_written_url};
use crate::identity::identity;
use crate::ssrf::UrlPolicy;

/// The header JetStream deduplicates on.
const MESSAGE_ID: &str = "Nats-Msg-Id";

/// Delivers to `nats` destinations over one connection per destination ([`Connections`]).
pub struct NatsTransport {
    policy: UrlPolicy,
    connections: Connections<NatsConnection>,
}

#[derive(Clone)]
struct NatsConnection {
    client: Client,
    jetstream: jetstream::Context,
}

#[async_trait]
impl Connection for NatsConnection {
    async fn close(self) {
        // Flushes what is buffered, then closes.
        let _ = self.client.drain().await;
    }
}

impl NatsTransport {
    /// `policy` says which addresses brokers may be at (the SSRF guard).
    pub fn new(policy: UrlPolicy) -> Self {
        crate::install_crypto_provider();
        Self { policy, connections: Connections::default() }
    }

    async fn connect(&self, destination: &Destination, config: &NatsConfig) -> Result<Client, DeliveryError> {
        let url = config::parse_url(&config.url)
            .map_err(|reason| DeliveryError::permanent(format!("the destination's url {reason}")))?;
        let host = check_broker_url(self.policy, &url, config::DEFAULT_PORT).await?;
        let options = match &config.auth {
            None => ConnectOptions::new(),
            Some(NatsAuth::Token { token }) => ConnectOptions::with_token(token.clone()),
            Some(NatsAuth::UserPassword { username, password }) => {
                ConnectOptions::with_user_and_password(username.clone(), password.clone())
            }
            Some(NatsAuth::Creds { creds }) => ConnectOptions::with_credentials(creds).map_err(|_| {
                DeliveryError::permanent("the destination's creds are not a valid .creds file")
            })?,
        };
        let connect_timeout = Duration::from_millis(destination.connect_timeout_ms.max(1));
        let options = options
            .name("switchyard")
            .connection_timeout(connect_timeout)
            // Servers a broker announces are not addresses the guard has seen.
            .ignore_discovered_servers();
        let address = format!(
            "{}://{}:{}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.port().unwrap_or(config::DEFAULT_PORT)
        );
        match tokio::time::timeout(connect_timeout + Duration::from_secs(1), options.connect(address)).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(error)) => {
                Err(DeliveryError::retryable(format!("could not connect to NATS at {host}: {error}")))
            }
            Err(_) => Err(DeliveryError::retryable(format!(
                "could not connect to NATS at {host} within {} ms",
                connect_timeout.as_millis()
            ))),
        }
    }
}

impl Default for NatsTransport {
    fn default() -> Self {
        Self::new(UrlPolicy::default())
    }
}

#[async_trait]
impl Transport for NatsTransport {
    async fn validate(&self, raw: Value) -> Result<ValidatedConfig, ValidationError> {
        let validated = config::validate(raw, self.policy)?;
        check_written_url(self.policy, &validated.config).await?;
        Ok(validated)
    }

    async fn deliver(&self, message: &OutboundMessage<'_>) -> Result<Receipt, DeliveryError> {
        let destination = message.destination;
        let config: NatsConfig = config_io::stored(destination)?;
        let subject =
            config_io::name_for("subject", &config.subject, message.event, config::check_subject_syntax)?;
        let body = serde_json::to_vec(message.body)
            .map(Bytes::from)
            .map_err(|e| DeliveryError::permanent(format!("the body is not JSON: {e}")))?;
        let mut headers = HeaderMap::new();
        headers.insert(MESSAGE_ID, message.delivery_id.as_str());
        for (name, value) in identity(message) {
            headers.insert(name, value.as_str());
        }
        let connection = self
            .connections
            .get_or_open(destination, || async {
                let client = self.connect(destination, &config).await?;
                Ok(NatsConnection { jetstream: jetstream::new(client.clone()), client })
            })
            .await?;
        let jetstream = connection.jetstream;
        let limit = Duration::from_millis(destination.timeout_ms.max(1));
        let publish = async {
            let acknowledgement = jetstream.publish_with_headers(subject.clone(), headers, body).await?;
            acknowledgement.await
        };
        match tokio::time::timeout(limit, publish).await {
            Ok(Ok(ack)) => Ok(Receipt {
                status_code: None,
                response_body: Some(format!(
                    "stream {} sequence {}{}",
                    ack.stream,
                    ack.sequence,
                    if ack.duplicate { " (a duplicate, already stored)" } else { "" }
                )),
            }),
            Ok(Err(error)) => Err(match error.kind() {
                PublishErrorKind::StreamNotFound => DeliveryError::retryable(format!(
                    "no JetStream stream takes subject {subject} (no responders)"
                )),
                PublishErrorKind::TimedOut => {
                    DeliveryError::retryable(format!("the stream did not acknowledge {subject} in time"))
                }
                _ => DeliveryError::retryable(format!("publishing to {subject} failed: {error}")),
            }),
            Err(_) => Err(DeliveryError::retryable(format!(
                "the stream did not acknowledge {subject} within {} ms",
                limit.as_millis()
            ))),
        }
    }

    async fn forget(&self, destination: &DestinationId) {
        self.connections.forget(destination).await;
    }

    async fn close(&self) {
        self.connections.close_all().await;
    }
}
