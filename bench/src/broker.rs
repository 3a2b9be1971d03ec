//! `--kind nats`: deliveries go to a NATS JetStream stream instead of the HTTP sink. Beside
//! Switchyard, a bare client of the same broker publishes the same messages with acks in the
//! same run: the broker's ceiling.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use futures_util::StreamExt as _;

use crate::latency::{self, Latencies, SENT_AT_KEY};
use crate::load::LoadResult;
use crate::servers::Counts;

/// The stream the benchmark publishes to, made anew for each phase.
pub const STREAM: &str = "SWITCHYARD_BENCH";
/// The subjects of [`STREAM`]: `switchyard-bench.<event type>`.
pub const SUBJECT_PREFIX: &str = "switchyard-bench";

/// The broker under test.
pub struct Broker {
    client: Client,
    jetstream: jetstream::Context,
}

impl Broker {
    pub async fn connect(url: &str) -> anyhow::Result<Broker> {
        let client =
            async_nats::connect(url).await.with_context(|| format!("connecting to NATS at {url}"))?;
        let jetstream = jetstream::new(client.clone());
        Ok(Broker { client, jetstream })
    }

    /// Deletes [`STREAM`] with what it holds, and makes it again, empty.
    pub async fn fresh_stream(&self) -> anyhow::Result<()> {
        let _ = self.jetstream.delete_stream(STREAM).await;
        let config = stream::Config {
            name: STREAM.to_owned(),
            subjects: vec![format!("{SUBJECT_PREFIX}.>")],
            ..Default::default()
        };
        self.jetstream.create_stream(config).await.context("creating the benchmark stream")?;
        Ok(())
    }

    /// The messages [`STREAM`] holds.
    pub async fn messages(&self) -> anyhow::Result<u64> {
        let mut stream = self.jetstream.get_stream(STREAM).await.context("the benchmark stream")?;
        Ok(stream.info().await.context("the stream's info")?.state.messages)
    }

    /// The ceiling: `connections` publishers, each sending a message like Switchyard's (the
    /// payload, a unique `Nats-Msg-Id`, the identity headers) and waiting for its ack before the
    /// next, for `duration`.
    pub async fn bare_publish(&self, connections: usize, duration: Duration) -> anyhow::Result<LoadResult> {
        let sent = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut publishers = Vec::with_capacity(connections);
        for _ in 0..connections {
            let (jetstream, sent) = (self.jetstream.clone(), Arc::clone(&sent));
            publishers.push(tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0u64);
                while started.elapsed() < duration {
                    let n = sent.fetch_add(1, Ordering::Relaxed);
                    let (headers, payload) = message(n);
                    let began = Instant::now();
                    let acked = match jetstream.publish_with_headers(subject(), headers, payload).await {
                        Ok(ack) => ack.await.is_ok(),
                        Err(_) => false,
                    };
                    if acked {
                        latencies.push(u32::try_from(began.elapsed().as_micros()).unwrap_or(u32::MAX));
                    } else {
                        errors += 1;
                    }
                }
                (latencies, errors)
            }));
        }
        let (mut latencies, mut errors) = (Vec::new(), 0);
        for publisher in publishers {
            let (some, failed) = publisher.await?;
            latencies.extend(some);
            errors += failed;
        }
        let elapsed = started.elapsed();
        let requests = latencies.len() as u64 + errors;
        Ok(LoadResult { requests, errors, elapsed, latencies: Latencies::from_micros(latencies) })
    }

    /// Counts each message published under [`SUBJECT_PREFIX`] into `counts`, by `Nats-Msg-Id`
    /// (a repeated delivery counts once), timing it from the send stamp in its payload.
    pub async fn watch(&self, counts: Arc<Counts>) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let mut messages = self.client.subscribe(format!("{SUBJECT_PREFIX}.>")).await?;
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

fn subject() -> String {
    format!("{SUBJECT_PREFIX}.bench.item")
}

/// What the bare client publishes as its `n`th message: what Switchyard publishes for event
/// `e-n` of `e2e`.
fn message(n: u64) -> (HeaderMap, Bytes) {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", format!("bare-{n}"));
    headers.insert("X-Event-Type", "bench.item");
    headers.insert("X-Event-ID", format!("e-{n}"));
    headers.insert("X-Correlation-ID", format!("e-{n}"));
    let payload = format!(
        r#"{{"n":{n},"customer":"c-{}","amount_cents":4200,"currency":"EUR","{SENT_AT_KEY}":{}}}"#,
        n % 977,
        latency::now_us()
    );
    (headers, Bytes::from(payload))
}
