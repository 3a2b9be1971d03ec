//! Redis Streams: the key `switchyard-bench:bench.item`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value as Reply};
use serde_json::{Value, json};

use super::{NAME, payload, publish_for};
use crate::latency;
use crate::load::LoadResult;
use crate::servers::Counts;

/// Entries the benchmark's stream keeps: more than a run adds.
const MAX_LEN: u64 = 100_000_000;

pub struct Redis {
    client: redis::Client,
    connection: MultiplexedConnection,
}

fn key() -> String {
    format!("{NAME}:bench.item")
}

pub fn destination(url: &str) -> Value {
    json!({"kind": "redis", "config": {"url": url, "stream": format!("{NAME}:{{event_type}}"), "max_len": MAX_LEN}})
}

impl Redis {
    pub async fn connect(url: &str) -> anyhow::Result<Redis> {
        let client = redis::Client::open(url).context("a Redis URL")?;
        let connection = client
            .get_multiplexed_async_connection()
            .await
            .with_context(|| format!("connecting to Redis at {url}"))?;
        Ok(Redis { client, connection })
    }

    pub async fn reset(&self) -> anyhow::Result<()> {
        let _: () = redis::cmd("DEL").arg(key()).query_async(&mut self.connection.clone()).await?;
        Ok(())
    }

    pub async fn length(&self) -> anyhow::Result<u64> {
        Ok(redis::cmd("XLEN").arg(key()).query_async(&mut self.connection.clone()).await?)
    }

    /// Each message: an `XADD` with Switchyard's fields, its entry id awaited.
    pub async fn bare_publish(&self, connections: usize, duration: Duration) -> anyhow::Result<LoadResult> {
        let connection = self.connection.clone();
        publish_for(connections, duration, move |n| {
            let mut connection = connection.clone();
            async move {
                let mut command = redis::cmd("XADD");
                command.arg(key()).arg("MAXLEN").arg("~").arg(MAX_LEN).arg("*");
                command.arg("delivery_id").arg(format!("bare-{n}")).arg("event_id").arg(format!("e-{n}"));
                command.arg("event_type").arg("bench.item").arg("correlation_id").arg(format!("e-{n}"));
                command.arg("payload").arg(payload(n).as_ref());
                command.query_async::<String>(&mut connection).await.is_ok()
            }
        })
        .await
    }

    /// Reads the stream's new entries as they are added, counting them by `delivery_id`.
    pub async fn watch(&self, counts: Arc<Counts>) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        // A connection of its own: a blocking read would hold up the shared one.
        let settings = AsyncConnectionConfig::new().set_response_timeout(None);
        let mut connection = self.client.get_multiplexed_async_connection_with_config(&settings).await?;
        Ok(tokio::spawn(async move {
            let mut last = "0-0".to_owned();
            loop {
                let read = redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(1000)
                    .arg("BLOCK")
                    .arg(1000)
                    .arg("STREAMS")
                    .arg(key())
                    .arg(&last)
                    .query_async::<Reply>(&mut connection)
                    .await;
                let Ok(reply) = read else { break };
                let arrived_us = latency::now_us();
                for (id, fields) in entries(&reply) {
                    let field =
                        |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice());
                    if let Some(delivery) = field("delivery_id") {
                        counts.record(delivery, arrived_us, field("payload").unwrap_or_default());
                    }
                    last = id;
                }
            }
        }))
    }
}

/// A stream entry's fields, in order.
type Fields = Vec<(String, Vec<u8>)>;

/// The entries of an `XREAD` reply, `[[key, [[id, [field, value, …]], …]]]`, as (id, fields).
fn entries(reply: &Reply) -> Vec<(String, Fields)> {
    let text = |v: &Reply| match v {
        Reply::BulkString(bytes) => bytes.clone(),
        Reply::SimpleString(s) => s.clone().into_bytes(),
        _ => Vec::new(),
    };
    let mut found = Vec::new();
    let Reply::Array(streams) = reply else { return found };
    for stream in streams {
        let Reply::Array(pair) = stream else { continue };
        let Some(Reply::Array(items)) = pair.get(1) else { continue };
        for item in items {
            let Reply::Array(entry) = item else { continue };
            let (Some(id), Some(Reply::Array(flat))) = (entry.first(), entry.get(1)) else { continue };
            let fields = flat
                .chunks(2)
                .filter_map(|kv| {
                    Some((String::from_utf8_lossy(&text(kv.first()?)).into_owned(), text(kv.get(1)?)))
                })
                .collect();
            found.push((String::from_utf8_lossy(&text(id)).into_owned(), fields));
        }
    }
    found
}
