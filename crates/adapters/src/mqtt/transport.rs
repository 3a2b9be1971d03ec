//! The `mqtt` transport (MQTT 5): one attempt as one QoS 1 publish; the broker's PUBACK is the
//! success. The identity travels as user properties, named as HTTP's headers.
//!
//! The client library answers a publish once it is queued, not acknowledged; this transport
//! pairs each publish with its PUBACK itself. Publishes leave in the order they are queued, so
//! the packet id the event loop reports for each next outgoing publish is that of the oldest
//! waiting one; its PUBACK then resolves it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use serde_json::Value;
use switchyard_core::ValidationError;
use switchyard_core::destination::Destination;
use switchyard_core::id::DestinationId;
use switchyard_core::transport::{DeliveryError, OutboundMessage, Receipt, Transport, ValidatedConfig};
use tokio::sync::oneshot;

use super::config::{self, MqttAuth, MqttConfig};
use crate::config_io;
use crate::connections::{Connection, Connections, check_broker_url, check_written_url};
use crate::identity::identity;
use crate::ssrf::UrlPolicy;

/// The user property that carries the delivery id, named as HTTP's header.
const DELIVERY_ID: &str = "webhook-id";
/// Publishes the event loop may hold before `publish` waits.
const QUEUE: usize = 256;

/// Delivers to `mqtt` destinations over one session per destination.
pub struct MqttTransport {
    policy: UrlPolicy,
    connections: Connections<MqttConnection>,
}

type Outcome = Result<PubAckReason, String>;

/// Publishes waiting for their PUBACK: queued ones (no packet id yet) and sent ones.
#[derive(Default)]
struct Waiting {
    queued: VecDeque<oneshot::Sender<Outcome>>,
    sent: HashMap<u16, oneshot::Sender<Outcome>>,
}

impl Waiting {
    /// Fails every waiting publish: the session ended.
    fn fail_all(&mut self, reason: &str) {
        for waiter in self.queued.drain(..).chain(self.sent.drain().map(|(_, w)| w)) {
            let _ = waiter.send(Err(reason.to_owned()));
        }
    }
}

#[derive(Clone)]
struct MqttConnection {
    client: AsyncClient,
    waiting: Arc<Mutex<Waiting>>,
    /// Held while a publish is queued, so the queue order is the order of `waiting.queued`.
    queueing: Arc<tokio::sync::Mutex<()>>,
    ended: Arc<AtomicBool>,
}

#[async_trait]
impl Connection for MqttConnection {
    async fn close(self) {
        let _ = self.client.disconnect().await;
    }
}

impl MqttTransport {
    /// `policy` says which addresses brokers may be at (the SSRF guard).
    pub fn new(policy: UrlPolicy) -> Self {
        Self { policy, connections: Connections::default() }
    }

    async fn connect(
        &self,
        destination: &Destination,
        config: &MqttConfig,
    ) -> Result<MqttConnection, DeliveryError> {
        let url = config::parse_url(&config.url)
            .map_err(|reason| DeliveryError::permanent(format!("the destination's url {reason}")))?;
        let host = check_broker_url(self.policy, &url, config::DEFAULT_PORT).await?;
        let client_id = format!("switchyard-{:016x}", rand::random::<u64>());
        let mut options = MqttOptions::new(
            client_id,
            url.host_str().unwrap_or_default(),
            url.port().unwrap_or(config::DEFAULT_PORT),
        );
        let connect_timeout = Duration::from_millis(destination.connect_timeout_ms.max(1));
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_connection_timeout(connect_timeout.as_secs().max(1));
        if let Some(MqttAuth::UserPassword { username, password }) = &config.auth {
            options.set_credentials(username.clone(), password.clone());
        }
        let (client, mut events) = AsyncClient::new(options, QUEUE);
        let connected = async {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(error) => return Err(error.to_string()),
                }
            }
        };
        match tokio::time::timeout(connect_timeout, connected).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                return Err(DeliveryError::retryable(format!(
                    "could not connect to the MQTT broker at {host}: {error}"
                )));
            }
            Err(_) => {
                return Err(DeliveryError::retryable(format!(
                    "could not connect to the MQTT broker at {host} within {} ms",
                    connect_timeout.as_millis()
                )));
            }
        }
        let connection = MqttConnection {
            client,
            waiting: Arc::default(),
            queueing: Arc::default(),
            ended: Arc::default(),
        };
        tokio::spawn(run_session(events, Arc::clone(&connection.waiting), Arc::clone(&connection.ended)));
        Ok(connection)
    }
}

/// Drives the session: pairs outgoing publishes with their packet ids and PUBACKs with their
/// publishes, until the session fails or is closed; then fails what still waits.
async fn run_session(mut events: EventLoop, waiting: Arc<Mutex<Waiting>>, ended: Arc<AtomicBool>) {
    let reason = loop {
        match events.poll().await {
            Ok(Event::Outgoing(Outgoing::Publish(packet_id))) => {
                let mut waiting = waiting.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(waiter) = waiting.queued.pop_front() {
                    waiting.sent.insert(packet_id, waiter);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                let waiter = waiting.lock().unwrap_or_else(PoisonError::into_inner).sent.remove(&ack.pkid);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(Ok(ack.reason));
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break "the session was closed".to_owned(),
            Ok(_) => {}
            Err(error) => break format!("the session ended: {error}"),
        }
    };
    ended.store(true, Ordering::Release);
    waiting.lock().unwrap_or_else(PoisonError::into_inner).fail_all(&reason);
}

impl Default for MqttTransport {
    fn default() -> Self {
        Self::new(UrlPolicy::default())
    }
}

#[async_trait]
impl Transport for MqttTransport {
    async fn validate(&self, raw: Value) -> Result<ValidatedConfig, ValidationError> {
        let validated = config::validate(raw, self.policy)?;
        check_written_url(self.policy, &validated.config).await?;
        Ok(validated)
    }

    async fn deliver(&self, message: &OutboundMessage<'_>) -> Result<Receipt, DeliveryError> {
        let destination = message.destination;
        let config: MqttConfig = config_io::stored(destination)?;
        let topic = config_io::name_for("topic", &config.topic, message.event, config::check_topic)?;
        let payload = serde_json::to_vec(message.body)
            .map_err(|e| DeliveryError::permanent(format!("the body is not JSON: {e}")))?;
        let mut user_properties = vec![(DELIVERY_ID.to_owned(), message.delivery_id.as_str().to_owned())];
        user_properties.extend(identity(message).into_iter().map(|(name, value)| (name.to_owned(), value)));
        let properties = PublishProperties {
            user_properties,
            content_type: Some("application/json".to_owned()),
            payload_format_indicator: Some(1),
            ..PublishProperties::default()
        };

        let mut connection =
            self.connections.get_or_open(destination, || self.connect(destination, &config)).await?;
        if connection.ended.load(Ordering::Acquire) {
            self.connections.forget(&destination.id).await;
            connection =
                self.connections.get_or_open(destination, || self.connect(destination, &config)).await?;
        }
        let (acknowledged, ack) = oneshot::channel();
        {
            let _order = connection.queueing.lock().await;
            connection.waiting.lock().unwrap_or_else(PoisonError::into_inner).queued.push_back(acknowledged);
            let queued = connection
                .client
                .publish_with_properties(topic.clone(), QoS::AtLeastOnce, false, payload, properties)
                .await;
            if queued.is_err() {
                connection.waiting.lock().unwrap_or_else(PoisonError::into_inner).queued.pop_back();
                self.connections.forget(&destination.id).await;
                return Err(DeliveryError::retryable("the MQTT session ended before the publish was queued"));
            }
        }
        let limit = Duration::from_millis(destination.timeout_ms.max(1));
        match tokio::time::timeout(limit, ack).await {
            Ok(Ok(Ok(PubAckReason::Success | PubAckReason::NoMatchingSubscribers))) => {
                Ok(Receipt { status_code: None, response_body: Some(format!("PUBACK for {topic}")) })
            }
            Ok(Ok(Ok(reason))) => {
                Err(DeliveryError::retryable(format!("the broker refused {topic}: {reason:?}")))
            }
            Ok(Ok(Err(ended))) => {
                self.connections.forget(&destination.id).await;
                Err(DeliveryError::retryable(format!("publishing to {topic} failed: {ended}")))
            }
            Ok(Err(_)) => {
                self.connections.forget(&destination.id).await;
                Err(DeliveryError::retryable(format!(
                    "the MQTT session ended before {topic} was acknowledged"
                )))
            }
            Err(_) => Err(DeliveryError::retryable(format!(
                "the broker did not acknowledge {topic} within {} ms",
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
