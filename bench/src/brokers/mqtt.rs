//! MQTT 5: topics `switchyard-bench/…`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{NAME, payload, publish_for};
use crate::latency;
use crate::load::LoadResult;
use crate::servers::Counts;

pub struct Mqtt {
    host: String,
    port: u16,
}

pub fn destination(url: &str) -> Value {
    json!({"kind": "mqtt", "config": {"url": url, "topic": format!("{NAME}/{{event_type}}")}})
}

impl Mqtt {
    pub async fn connect(url: &str) -> anyhow::Result<Mqtt> {
        let parsed = url::Url::parse(url).context("an MQTT URL")?;
        let mqtt = Mqtt {
            host: parsed.host_str().unwrap_or_default().to_owned(),
            port: parsed.port().unwrap_or(1883),
        };
        mqtt.session("probe").await.with_context(|| format!("connecting to MQTT at {url}"))?;
        Ok(mqtt)
    }

    /// A connected session (its ConnAck received).
    async fn session(&self, name: &str) -> anyhow::Result<(AsyncClient, EventLoop)> {
        let id = format!("{NAME}-{name}-{:08x}", rand::random::<u32>());
        let (client, mut events) = AsyncClient::new(MqttOptions::new(id, self.host.clone(), self.port), 64);
        loop {
            match tokio::time::timeout(Duration::from_secs(5), events.poll()).await {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => return Ok((client, events)),
                Ok(Ok(_)) => {}
                Ok(Err(error)) => bail!("{error}"),
                Err(_) => bail!("no CONNACK within 5 s"),
            }
        }
    }

    /// Each publisher a session of its own, publishing at QoS 1 with Switchyard's user
    /// properties and waiting for the PUBACK before the next.
    pub async fn bare_publish(&self, connections: usize, duration: Duration) -> anyhow::Result<LoadResult> {
        let mut sessions = Vec::with_capacity(connections);
        for i in 0..connections {
            let (client, events) = self.session(&format!("bare{i}")).await?;
            sessions.push(Arc::new(Mutex::new((client, events))));
        }
        let sessions = Arc::new(sessions);
        publish_for(connections, duration, move |n| {
            let session = Arc::clone(&sessions[n as usize % sessions.len()]);
            async move {
                let mut session = session.lock().await;
                let (client, events) = &mut *session;
                let properties = PublishProperties {
                    user_properties: vec![
                        ("webhook-id".into(), format!("bare-{n}")),
                        ("X-Event-Type".into(), "bench.item".into()),
                        ("X-Event-ID".into(), format!("e-{n}")),
                        ("X-Correlation-ID".into(), format!("e-{n}")),
                    ],
                    content_type: Some("application/json".into()),
                    ..PublishProperties::default()
                };
                let topic = format!("{NAME}/bench.item");
                if client
                    .publish_with_properties(topic, QoS::AtLeastOnce, false, payload(n), properties)
                    .await
                    .is_err()
                {
                    return false;
                }
                loop {
                    match events.poll().await {
                        Ok(Event::Incoming(Packet::PubAck(_))) => return true,
                        Ok(_) => {}
                        Err(_) => return false,
                    }
                }
            }
        })
        .await
    }

    /// Subscribes to the benchmark's topics, counting messages by their `webhook-id`.
    pub async fn watch(&self, counts: Arc<Counts>) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let (client, mut events) = self.session("counter").await?;
        client.subscribe(format!("{NAME}/#"), QoS::AtLeastOnce).await?;
        loop {
            match events.poll().await? {
                Event::Incoming(Packet::SubAck(_)) => break,
                _ => continue,
            }
        }
        Ok(tokio::spawn(async move {
            let _client = client;
            while let Ok(event) = events.poll().await {
                let Event::Incoming(Packet::Publish(publish)) = event else { continue };
                let arrived_us = latency::now_us();
                let id = publish.properties.as_ref().and_then(|p| {
                    p.user_properties.iter().find(|(name, _)| name == "webhook-id").map(|(_, v)| v.clone())
                });
                if let Some(id) = id {
                    counts.record(id.as_bytes(), arrived_us, &publish.payload);
                }
            }
        }))
    }
}
