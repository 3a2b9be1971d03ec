//! The `relay` scenario: an application's outbox table, full, relayed by an `outbox` source to
//! one HTTP subscription at the sink; measured from the source's creation until the sink has
//! every event and the table is empty.
//!
//! Its ceiling is a bare relay run by the harness on the same table, the same way round: read
//! a batch in the server's order, POST each row to a sink of its own over as many kept-alive
//! connections as the load has, then delete the batch. What Switchyard adds is what the bare
//! relay leaves out: storing each event and its delivery durably, routing, retries, and
//! deleting rows only once their events are committed.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::Method;
use hyper::header::{HeaderName, HeaderValue};
use serde_json::json;
use tokio::task::JoinSet;

use crate::latency::Latencies;
use crate::load::{Connection, LoadResult};
use crate::node::{Backend, Node};
use crate::outbox::{Outbox, OutboxRow};
use crate::report::{Delivered, Relay, Report};
use crate::scenarios::{Options, Scenario, wait_for};
use crate::servers;

/// Rows read per batch, by the source and by the bare relay: the most a source takes.
pub const BATCH_SIZE: u32 = 1_000;
/// How often the source looks at an idle table: only its first read waits for it.
const POLL_INTERVAL_MS: u64 = 100;

pub async fn relay(options: &Options) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir()?;
    let (outbox, database_url, table) = open(&options.backend, dir.path()).await?;

    outbox.fill(options.rows).await?;
    let ceiling = bare_relay(&outbox, options).await?;

    let filling = Instant::now();
    outbox.fill(options.rows).await?;
    let fill = filling.elapsed();
    let sink = servers::start_sink(options.server_threads)?;
    let node = Node::start(&options.binary, &options.backend).await?;
    node.subscribe("sink", &format!("http://{}/hooks", sink.server.addr)).await?;
    let phase = node.start_measuring()?;
    let started = Instant::now();
    node.call(
        Method::POST,
        "/v1/sources",
        json!({
            "name": "outbox",
            "kind": "outbox",
            "config": {
                "database_url": database_url,
                "table": table,
                "after_relay": "delete",
                "batch_size": BATCH_SIZE,
                "poll_interval_ms": POLL_INTERVAL_MS,
            },
        }),
    )
    .await?;
    // Both at once: how far the relay (read, store, delete) is ahead of delivery shows.
    let (delivered, emptied) = tokio::try_join!(
        wait_for(&sink.counts, options.rows, options.delivery_timeout),
        wait_until_empty(&outbox, options.delivery_timeout),
    )?;
    let finished = delivered.max(emptied);
    let cpu = node.measured_cpu(&phase, Duration::ZERO)?;
    let memory = node.memory()?;
    outbox.close().await;

    // The rows stand for the requests of the other scenarios: one event each.
    let measured = LoadResult {
        requests: options.rows,
        errors: 0,
        elapsed: finished - started,
        latencies: Latencies::default(),
    };
    let mut report = Report::new(Scenario::Relay, options, ceiling, measured, 1, memory.peak, cpu);
    report.delivered = Some(Delivered::new(options.rows, sink.counts.unique(), finished - started));
    report.relay = Some(Relay {
        database: match options.backend {
            Backend::Sqlite => "SQLite",
            Backend::Postgres(_) => "PostgreSQL",
        },
        rows: options.rows,
        batch_size: BATCH_SIZE,
        fill,
        emptied: emptied - started,
    });
    Ok(report)
}

/// The outbox table on the server's backend: a SQLite file of the harness's, or a schema of
/// the `--postgres` database; with the source's `database_url` and `table`.
async fn open(backend: &Backend, dir: &Path) -> anyhow::Result<(Outbox, String, String)> {
    match backend {
        Backend::Sqlite => Outbox::sqlite(dir).await,
        Backend::Postgres(url) => Outbox::postgres(url).await,
    }
}

/// Waits until the table is empty: the server deletes each row once its event is committed
/// (its delivery may come before or after). Answers when it saw it empty, looking every
/// 100 ms (a count of the rows left costs the table little).
async fn wait_until_empty(outbox: &Outbox, timeout: Duration) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = outbox.count().await?;
        if left == 0 {
            return Ok(Instant::now());
        }
        if Instant::now() >= deadline {
            bail!("the outbox still holds {left} rows {timeout:?} after the source was created");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ceiling: the harness relays the table itself to a sink of its own, batch by batch,
/// and answers one request per row, timed from its send to its answer.
async fn bare_relay(outbox: &Outbox, options: &Options) -> anyhow::Result<LoadResult> {
    let sink = servers::start_sink(options.server_threads)?;
    let mut connections = Vec::with_capacity(options.connections);
    for _ in 0..options.connections.max(1) {
        connections.push(Connection::open(sink.server.addr).await?);
    }
    let started = Instant::now();
    let (mut latencies, mut errors) = (Vec::new(), 0);
    loop {
        let batch = outbox.first(BATCH_SIZE as usize).await?;
        if batch.is_empty() {
            break;
        }
        let ids: Vec<String> = batch.iter().map(|row| row.id.clone()).collect();
        let per_connection = batch.len().div_ceil(connections.len());
        let mut sends = JoinSet::new();
        let mut rows = batch.into_iter();
        for connection in connections.drain(..) {
            let mine: Vec<OutboxRow> = rows.by_ref().take(per_connection).collect();
            sends.spawn(post_each(connection, mine));
        }
        while let Some(sent) = sends.join_next().await {
            let (connection, timed, failed) = sent??;
            connections.push(connection);
            latencies.extend(timed);
            errors += failed;
        }
        outbox.delete(&ids).await?;
    }
    let elapsed = started.elapsed();
    let requests = latencies.len() as u64;
    let counted = sink.counts.unique();
    if counted != requests {
        bail!("the bare relay's sink counted {counted} rows of {requests} sent");
    }
    Ok(LoadResult { requests, errors, elapsed, latencies: Latencies::from_micros(latencies) })
}

/// POSTs each of `rows` to the sink as a delivery of its event (the row's id as `webhook-id`),
/// one after the other on `connection`; answers the connection, each request's time in µs and
/// the requests that did not get a 2xx.
async fn post_each(
    mut connection: Connection,
    rows: Vec<OutboxRow>,
) -> anyhow::Result<(Connection, Vec<u32>, u64)> {
    const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
    const EVENT_TYPE: HeaderName = HeaderName::from_static("x-event-type");
    let mut latencies = Vec::with_capacity(rows.len());
    let mut errors = 0;
    for row in rows {
        let headers = vec![
            (WEBHOOK_ID, HeaderValue::try_from(row.id).context("a row id fit for a header")?),
            (EVENT_TYPE, HeaderValue::try_from(row.event_type).context("an event type fit for a header")?),
        ];
        let sent = Instant::now();
        let (status, _) =
            connection.send_with(Method::POST, "/hooks", None, headers, Bytes::from(row.payload)).await?;
        latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
        if !status.is_success() {
            errors += 1;
        }
    }
    Ok((connection, latencies, errors))
}
