//! NATS JetStream: the stream `SWITCHYARD_BENCH`, subjects `switchyard-bench.>`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};
use async_nats::{Client, HeaderMap};
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use super::{NAME, payload, publish_for};
use crate::latency;
use crate::load::LoadResult;
use crate::servers::Counts;

/// The stream, taking the subjects `switchyard-bench.>`.
const STREAM: &str = "SWITCHYARD_BENCH";

pub struct Nats {
    client: Client,
    jetstream: jetstream::Context,
}

pub fn destination(url: &str) -> Value {
    json!({"kind": "nats", "config": {"url": url, "subject": format!("{NAME}.{{event_type}}")}})
}

impl Nats {
    pub async fn connect(url: &str) -> anyhow::Result<Nats> {
        let client =
            async_nats::connect(url).await.with_context(|| format!("connecting to NATS at {url}"))?;
        let jetstream = jetstream::new(client.clone());
        Ok(Nats { client, jetstream })
    }

    /// Deletes the stream with what it holds, and makes it again, empty.
    pub async fn fresh_stream(&self) -> anyhow::Result<()> {
        let _ = self.jetstream.delete_stream(STREAM).await;
        let config = stream::Config {
            name: STREAM.to_owned(),
            subjects: vec![format!("{NAME}.>")],
            ..Default::default()
        };
        self.jetstream.create_stream(config).await.context("creating the benchmark stream")?;
        Ok(())
    }

    pub async fn messages(&self) -> anyhow::Result<u64> {
        let mut stream = self.jetstream.get_stream(STREAM).await.context("the benchmark stream")?;
        Ok(stream.info().await.context("the stream's info")?.state.messages)
    }

    /// Each message: the payload, a unique `Nats-Msg-Id` and the identity headers; the
    /// stream's ack awaited.
    pub async fn bare_publish(&self, connections: usize, duration: Duration) -> anyhow::Result<LoadResult> {
        let jetstream = self.jetstream.clone();
        publish_for(connections, duration, move |n| {
            let jetstream = jetstream.clone();
            async move {
                let mut headers = HeaderMap::new();
                headers.insert("Nats-Msg-Id", format!("bare-{n}"));
                headers.insert("X-Event-Type", "bench.item");
                headers.insert("X-Event-ID", format!("e-{n}"));
                headers.insert("X-Correlation-ID", format!("e-{n}"));
                match jetstream.publish_with_headers(format!("{NAME}.bench.item"), headers, payload(n)).await
                {
                    Ok(ack) => ack.await.is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await
    }

    /// Counts each message published under the stream's subjects, by `Nats-Msg-Id`.
    pub async fn watch(&self, counts: Arc<Counts>) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let mut messages = self.client.subscribe(format!("{NAME}.>")).await?;
        // The subscription is in place once the server has seen it.
        self.client.flush().await?;
        Ok(tokio::spawn(async move {
            while let Some(message) = messages.next().await {
                let arrived_us = latency::now_us();
                if let Some(id) = message.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")) {
                    counts.record(id.as_str().as_bytes(), arrived_us, &message.payload);
                }
            }
        }))
    }
}
