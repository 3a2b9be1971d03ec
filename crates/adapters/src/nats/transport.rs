//! The `nats` transport: one attempt as one JetStream publish, acknowledged by the stream.
//! `Nats-Msg-Id` is the delivery id, so the stream keeps one copy of a delivery however often
//! it is attempted (within the stream's duplicate window).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::{Client, ConnectOptions, HeaderMap, jetstream};
use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;
use switchyard_core::ValidationError;
use switchyard_core::destination::Destination;
use switchyard_core::error::Violations;
use switchyard_core::id::DestinationId;
use switchyard_core::transport::{DeliveryError, OutboundMessage, Receipt, Transport, ValidatedConfig};
use url::Url;

use super::config::{self, NatsAuth, NatsConfig};
use crate::identity::identity;
use crate::ssrf::UrlPolicy;
use crate::template::Template;

/// The header JetStream deduplicates on.
const MESSAGE_ID: &str = "Nats-Msg-Id";
/// How long a write or a connect waits for DNS to say where a broker's host name points.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection no delivery used for this long is closed (its destination may be gone).
const IDLE_FOR: Duration = Duration::from_secs(600);

/// Delivers to `nats` destinations over one connection per destination, opened by the first
/// delivery and reused by the rest; a changed destination gets a new one.
pub struct NatsTransport {
    policy: UrlPolicy,
    slots: Mutex<HashMap<DestinationId, Arc<Slot>>>,
}

/// The connection of one destination, opened by whichever delivery needs it first.
struct Slot {
    connection: tokio::sync::Mutex<Option<Connection>>,
    last_used: Mutex<Instant>,
}

struct Connection {
    /// The destination's version the connection was opened for.
    version: i64,
    client: Client,
    jetstream: jetstream::Context,
}

impl NatsTransport {
    /// `policy` says which addresses brokers may be at (the SSRF guard).
    pub fn new(policy: UrlPolicy) -> Self {
        crate::install_crypto_provider();
        Self { policy, slots: Mutex::default() }
    }

    /// The slot of `destination`; closes the connections of destinations idle past
    /// [`IDLE_FOR`] on the way.
    fn slot(&self, destination: &DestinationId) -> Arc<Slot> {
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.retain(|id, slot| {
            let idle = now.duration_since(*slot.last_used.lock().unwrap_or_else(PoisonError::into_inner));
            let keep = id == destination || idle < IDLE_FOR || Arc::strong_count(slot) > 1;
            if !keep && let Ok(mut connection) = slot.connection.try_lock() {
                drain(connection.take());
            }
            keep
        });
        let slot = slots.entry(destination.clone()).or_insert_with(|| {
            Arc::new(Slot { connection: tokio::sync::Mutex::new(None), last_used: Mutex::new(now) })
        });
        *slot.last_used.lock().unwrap_or_else(PoisonError::into_inner) = now;
        Arc::clone(slot)
    }

    /// The JetStream context of `destination`'s connection, opened now if it has none or has one
    /// for an earlier version of the destination.
    async fn jetstream(
        &self,
        destination: &Destination,
        config: &NatsConfig,
    ) -> Result<jetstream::Context, DeliveryError> {
        let slot = self.slot(&destination.id);
        let mut connection = slot.connection.lock().await;
        if let Some(open) = connection.as_ref().filter(|c| c.version == destination.version) {
            return Ok(open.jetstream.clone());
        }
        drain(connection.take());
        let client = self.connect(destination, config).await?;
        let jetstream = jetstream::new(client.clone());
        *connection = Some(Connection { version: destination.version, client, jetstream: jetstream.clone() });
        Ok(jetstream)
    }

    async fn connect(&self, destination: &Destination, config: &NatsConfig) -> Result<Client, DeliveryError> {
        let url = config::parse_url(&config.url)
            .map_err(|reason| DeliveryError::permanent(format!("the destination's url {reason}")))?;
        let host = host_label(&url);
        self.policy.check_resolved(&url, LOOKUP_TIMEOUT).await.map_err(|forbidden| {
            DeliveryError::permanent(format!("refused to connect to {host}: {forbidden}"))
        })?;
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
        if self.policy == UrlPolicy::PublicOnly
            && let Some(url) =
                validated.config.get("url").and_then(Value::as_str).and_then(|raw| Url::parse(raw).ok())
        {
            let mut violations = Violations::default();
            if let Err(forbidden) = self.policy.check_resolved(&url, LOOKUP_TIMEOUT).await {
                violations.push("config.url", forbidden.to_string());
            }
            violations.into_result()?;
        }
        Ok(validated)
    }

    async fn deliver(&self, message: &OutboundMessage<'_>) -> Result<Receipt, DeliveryError> {
        let destination = message.destination;
        let config: NatsConfig = serde_json::from_value(destination.full_config()).map_err(|_| {
            DeliveryError::permanent("the destination's configuration is not a valid nats configuration")
        })?;
        let template = Template::parse(&config.subject)
            .map_err(|reason| DeliveryError::permanent(format!("the subject {reason}")))?;
        let subject = template.render(message.event).map_err(DeliveryError::permanent)?;
        config::check_subject_syntax(&subject)
            .map_err(|reason| DeliveryError::permanent(format!("the subject {subject:?} {reason}")))?;
        let body = serde_json::to_vec(message.body)
            .map(Bytes::from)
            .map_err(|e| DeliveryError::permanent(format!("the body is not JSON: {e}")))?;
        let mut headers = HeaderMap::new();
        headers.insert(MESSAGE_ID, message.delivery_id.as_str());
        for (name, value) in identity(message) {
            headers.insert(name, value.as_str());
        }
        let jetstream = self.jetstream(destination, &config).await?;
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

    async fn close(&self) {
        let slots: Vec<Arc<Slot>> =
            self.slots.lock().unwrap_or_else(PoisonError::into_inner).drain().map(|(_, slot)| slot).collect();
        for slot in slots {
            if let Some(connection) = slot.connection.lock().await.take() {
                // Flushes what is buffered, then closes.
                let _ = connection.client.drain().await;
            }
        }
    }
}

/// Closes a connection in the background, letting what it still sends finish.
fn drain(connection: Option<Connection>) {
    if let Some(connection) = connection {
        tokio::spawn(async move {
            let _ = connection.client.drain().await;
        });
    }
}

/// The host and port, for messages (never the whole URL).
fn host_label(url: &Url) -> String {
    format!("{}:{}", url.host_str().unwrap_or_default(), url.port().unwrap_or(config::DEFAULT_PORT))
}
