//! The scenarios: each starts a fresh server, measures the bare server with the same load in
//! the same run, and answers a [`Report`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use hyper::Method;
use hyper::header::{HeaderName, HeaderValue};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use sha2::Sha256;

use crate::brokers::{self, Broker};
use crate::cpu;
use crate::latency::{self, SENT_AT_KEY};
use crate::load::{self, LoadResult, Outgoing, Target, Until};
use crate::node::{Backend, Node};
use crate::relay;
use crate::report::{BrokerCeiling, Delivered, Drain, Report};
use crate::servers::{self, Counts, Sink};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Single events, no subscriptions.
    Ingest,
    /// 100 events a request, no subscriptions.
    IngestBatch,
    /// Single events, one HTTP subscription; measured until the sink has every delivery.
    E2e,
    /// Single events, ten HTTP subscriptions.
    Fanout,
    /// A backlog of pending deliveries (1 million by default) drains; memory is sampled.
    Backlog,
    /// A full outbox table (150 000 rows by default) relayed by an `outbox` source to one HTTP
    /// subscription; measured until the sink has every event and the table is empty.
    Relay,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::Ingest,
        Scenario::IngestBatch,
        Scenario::E2e,
        Scenario::Fanout,
        Scenario::Backlog,
        Scenario::Relay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Ingest => "ingest",
            Scenario::IngestBatch => "ingest-batch",
            Scenario::E2e => "e2e",
            Scenario::Fanout => "fanout",
            Scenario::Backlog => "backlog",
            Scenario::Relay => "relay",
        }
    }
}

/// How the load generator names its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Ids {
    /// `e-<n>`, one counter: the ids a group commit writes sort together.
    #[default]
    Sequential,
    /// `e-` and 32 hex digits mixed from the counter, unique and in no order (as UUIDv4 ids
    /// are): each event lands on its own page of every index keyed by its id.
    Random,
}

impl Ids {
    /// The id of the `n`-th event.
    pub fn of(self, n: u64) -> String {
        match self {
            Ids::Sequential => format!("e-{n}"),
            // Each half is a bijection of `n`, so no two events share an id.
            Ids::Random => format!("e-{:016x}{:016x}", mix(n), mix(n ^ 0x5bd1_e995_5bd1_e995)),
        }
    }
}

/// SplitMix64's finalizer: a bijection of u64 whose outputs look unrelated to its inputs.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Where `e2e` and `fanout` deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// The harness's HTTP sink.
    Http,
    /// A NATS JetStream stream, beside a bare client of the broker.
    Nats,
    /// A RabbitMQ exchange and queue, beside a bare client of the broker.
    Amqp,
    /// A Redis stream, beside a bare client of the server.
    Redis,
    /// MQTT 5 topics, beside bare clients of the broker.
    Mqtt,
}

/// Where `ingest`'s events enter the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// `POST /v1/events` with the admin key's bearer token.
    #[default]
    Api,
    /// `POST /v1/sources/{id}/webhook` of a GitHub webhook source: no token, each request
    /// with its own delivery id and an `X-Hub-Signature-256` the load generator computes as it
    /// sends.
    Github,
}

impl Source {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Github => "github",
        }
    }

    /// How a report names it after the scenario; `None` for the API.
    pub fn label(self) -> Option<&'static str> {
        match self {
            Source::Api => None,
            Source::Github => Some("github webhook"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// The `switchyard` binary to drive.
    pub binary: PathBuf,
    pub connections: usize,
    /// How long each load phase lasts.
    pub duration: Duration,
    /// Pending deliveries of the `backlog` scenario.
    pub backlog: u64,
    /// Outbox rows of the `relay` scenario.
    pub rows: u64,
    /// `e2e` and `fanout`: deliveries waiting behind a paused destination throughout, which
    /// every claim of the run has to pass over.
    pub held: u64,
    /// Worker threads of the bare server and of the sink.
    pub server_threads: usize,
    /// How long to wait for the sink to have every delivery before giving up.
    pub delivery_timeout: Duration,
    /// Where the server under test keeps its data.
    pub backend: Backend,
    /// Where `e2e` and `fanout` deliver.
    pub kind: Kind,
    /// The broker of a `kind` other than `http`; `None` for the local service's default.
    pub broker_url: Option<String>,
    /// Where `ingest`'s events enter (only `ingest` takes another than the API).
    pub source: Source,
    /// How events are named.
    pub ids: Ids,
}

impl Options {
    /// A few seconds in all: small counts, to prove the harness works, not to measure.
    pub fn smoke(binary: PathBuf) -> Options {
        Options {
            binary,
            connections: 4,
            duration: Duration::from_millis(700),
            backlog: 2_000,
            rows: 2_000,
            held: 500,
            server_threads: 1,
            delivery_timeout: Duration::from_secs(60),
            backend: Backend::Sqlite,
            kind: Kind::Http,
            broker_url: None,
            source: Source::Api,
            ids: Ids::Sequential,
        }
    }
}

/// Fails unless every one of `scenarios` can run with `options`: a `--source` other than the
/// API drives only `ingest`, and names its events itself (`--ids` does not apply).
pub fn check(scenarios: &[Scenario], options: &Options) -> anyhow::Result<()> {
    if options.source != Source::Api && options.ids != Ids::Sequential {
        bail!("--ids applies to events sent to the API; --source {} names its own", options.source.name());
    }
    if options.source != Source::Api
        && let Some(other) = scenarios.iter().find(|s| **s != Scenario::Ingest)
    {
        let source = options.source.name();
        bail!(
            "--source {source} drives only the ingest scenario, not {}: run `bench/run ingest --source {source}`",
            other.name()
        );
    }
    Ok(())
}

/// Events in a request of `ingest-batch`.
pub const BATCH: u64 = 100;
/// Events in a request while `backlog` is seeded.
const SEED_BATCH: u64 = 1_000;
/// Subscriptions of `fanout`.
const FANOUT: u64 = 10;
/// The number of the first event of a held backlog.
const HELD_FIRST_EVENT: u64 = 1 << 40;
/// The event type of a held backlog, which only the paused destination takes.
const HELD_EVENT_TYPE: &str = "bench.held";

#[cfg(test)]
fn event(n: u64) -> String {
    event_of(Ids::Sequential, "bench.item", n)
}

fn event_of(ids: Ids, event_type: &str, n: u64) -> String {
    event_with(ids, event_type, n, "")
}

/// An event whose payload ends with `more_fields` (each with a leading comma).
fn event_with(ids: Ids, event_type: &str, n: u64, more_fields: &str) -> String {
    format!(
        r#"{{"event_id":"{}","event_type":"{event_type}","payload":{{"n":{n},"customer":"c-{}","amount_cents":4200,"currency":"EUR"{more_fields}}}}}"#,
        ids.of(n),
        n % 977
    )
}

/// The `payload` object of [`event`]`(n)`, byte for byte: a webhook's body.
fn payload(n: u64) -> String {
    format!(r#"{{"n":{n},"customer":"c-{}","amount_cents":4200,"currency":"EUR"}}"#, n % 977)
}

/// The secret of the `github` source of `ingest --source github`.
const GITHUB_SECRET: &str = "switchyard-bench-github-secret";

/// The n-th GitHub `push` webhook: [`payload`]`(n)` as the body, delivery id `d-<n>`, signed
/// with `secret` (HMAC-SHA256 over the body, lowercase hex) as the request is made.
fn github_webhook(secret: &'static str) -> impl Fn(u64) -> Outgoing + Send + Sync + 'static {
    const EVENT: HeaderName = HeaderName::from_static("x-github-event");
    const DELIVERY: HeaderName = HeaderName::from_static("x-github-delivery");
    const SIGNATURE: HeaderName = HeaderName::from_static("x-hub-signature-256");
    move |n| {
        let body = payload(n);
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
        mac.update(body.as_bytes());
        let mut signature = String::with_capacity(7 + 64);
        signature.push_str("sha256=");
        for byte in mac.finalize().into_bytes() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            signature.push(char::from(HEX[usize::from(byte >> 4)]));
            signature.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        let value = |text: String| HeaderValue::try_from(text).expect("visible ASCII");
        Outgoing {
            body: Bytes::from(body),
            headers: vec![
                (EVENT, HeaderValue::from_static("push")),
                (DELIVERY, value(format!("d-{n}"))),
                (SIGNATURE, value(signature)),
            ],
        }
    }
}

fn single(ids: Ids) -> impl Fn(u64) -> Bytes + Send + Sync + Copy + 'static {
    move |n| Bytes::from(event_of(ids, "bench.item", n))
}

/// [`single`] with the time of its making in the payload, from which the sink times each
/// delivery: the body is made just before the request is sent.
fn stamped(ids: Ids) -> impl Fn(u64) -> Bytes + Send + Sync + Copy + 'static {
    move |n| {
        let stamp = format!(r#","{SENT_AT_KEY}":{}"#, latency::now_us());
        Bytes::from(event_with(ids, "bench.item", n, &stamp))
    }
}

fn batch(ids: Ids, size: u64) -> impl Fn(u64) -> Bytes + Send + Sync + 'static {
    batch_from(ids, "bench.item", 0, size)
}

/// [`batch`] of events of `event_type` numbered from `first` on.
fn batch_from(
    ids: Ids,
    event_type: &'static str,
    first: u64,
    size: u64,
) -> impl Fn(u64) -> Bytes + Send + Sync + 'static {
    move |n| {
        let numbers = first + n * size..first + (n + 1) * size;
        let events: Vec<String> = numbers.map(|n| event_of(ids, event_type, n)).collect();
        Bytes::from(format!(r#"{{"events":[{}]}}"#, events.join(",")))
    }
}

pub async fn run(scenario: Scenario, options: &Options) -> anyhow::Result<Report> {
    check(&[scenario], options)?;
    match scenario {
        Scenario::Ingest => ingest(options, false).await,
        Scenario::IngestBatch => ingest(options, true).await,
        Scenario::E2e => deliver(scenario, options, 1).await,
        Scenario::Fanout => deliver(scenario, options, FANOUT).await,
        Scenario::Backlog => backlog(options).await,
        Scenario::Relay => relay::relay(options).await,
    }
}

/// The ceiling: the same load against the bare server; answers it with the CPU time the bare
/// server's threads took meanwhile.
async fn bare(
    options: &Options,
    path: &str,
    body: impl Fn(u64) -> Bytes + Send + Sync + 'static,
) -> anyhow::Result<(LoadResult, Duration)> {
    let server = servers::start_bare(options.server_threads)?;
    let target = Target { addr: server.addr, path: path.to_owned(), token: None };
    let cpu_before = cpu::of_threads_named(servers::BARE_SERVER)?;
    let result =
        load::run(&target, options.connections, Until::Elapsed(options.duration), 0, "bare server", body)
            .await?;
    let cpu = cpu::of_threads_named(servers::BARE_SERVER)?.saturating_sub(cpu_before);
    Ok((result, cpu))
}

async fn ingest(options: &Options, batched: bool) -> anyhow::Result<Report> {
    let (scenario, path, per_request) = if batched {
        (Scenario::IngestBatch, "/v1/events/batch", BATCH)
    } else {
        (Scenario::Ingest, "/v1/events", 1)
    };
    let ids = options.ids;
    let body = move |n| if batched { batch(ids, BATCH)(n) } else { single(ids)(n) };
    let (ceiling, bare_cpu) = bare(options, path, body).await?;
    let node = Node::start(&options.binary, &options.backend).await?;
    let until = Until::Elapsed(options.duration);
    let (measured, phase) = match options.source {
        Source::Api => {
            let target = Target { addr: node.addr, path: path.to_owned(), token: Some(node.token.clone()) };
            let phase = node.start_measuring()?;
            (load::run(&target, options.connections, until, 0, scenario.name(), body).await?, phase)
        }
        Source::Github => {
            // No rate limit to speak of: the source's own would otherwise cap the load at 100/s.
            let source = node
                .call(
                    Method::POST,
                    "/v1/sources",
                    json!({
                        "name": "github",
                        "kind": "webhook",
                        "config": {
                            "verification": {"type": "github", "secret": GITHUB_SECRET},
                            "rate_limit": {"per_second": 1_000_000, "burst": 1_000_000},
                        },
                    }),
                )
                .await?;
            let id = source["id"].as_str().context("a source id")?;
            // The provider's request carries no bearer token: its signature is the credential.
            let target = Target { addr: node.addr, path: format!("/v1/sources/{id}/webhook"), token: None };
            let phase = node.start_measuring()?;
            let request = github_webhook(GITHUB_SECRET);
            (load::run_with(&target, options.connections, until, 0, "ingest (github)", request).await?, phase)
        }
    };
    let cpu = node.measured_cpu(&phase, bare_cpu)?;
    let memory = node.memory()?;
    let mut report = Report::new(scenario, options, ceiling, measured, per_request, memory.peak, cpu);
    report.source = options.source;
    Ok(report)
}

/// Ingest with `subscriptions` subscriptions to the sink (or, with `--kind`, to a broker),
/// until every delivery arrived.
async fn deliver(scenario: Scenario, options: &Options, subscriptions: u64) -> anyhow::Result<Report> {
    let (ceiling, bare_cpu) = bare(options, "/v1/events", stamped(options.ids)).await?;
    let sink = servers::start_sink(options.server_threads)?;
    let broker_url =
        options.broker_url.clone().unwrap_or_else(|| brokers::default_url(options.kind).to_owned());
    let broker = Broker::connect(options.kind, &broker_url).await?;
    let broker_ceiling = match &broker {
        Some(broker) => {
            broker.reset().await?;
            let result = broker.bare_publish(options.connections, options.duration).await?;
            broker.reset().await?;
            Some(BrokerCeiling { broker: broker.name(), result })
        }
        None => None,
    };
    let node = Node::start(&options.binary, &options.backend).await?;
    if options.held > 0 {
        hold(&node, &sink, options.held, options.ids).await?;
    }
    let (counts, watcher) = match &broker {
        Some(broker) => {
            let counts = Arc::new(Counts::default());
            let watcher = broker.watch(Arc::clone(&counts)).await?;
            let destination = broker.destination(&broker_url);
            for i in 0..subscriptions {
                node.subscribe_with(&format!("broker-{i}"), destination.clone(), "#").await?;
            }
            (counts, Some(watcher))
        }
        None => {
            for i in 0..subscriptions {
                node.subscribe(&format!("sink-{i}"), &format!("http://{}/hooks/{i}", sink.server.addr))
                    .await?;
            }
            (Arc::clone(&sink.counts), None)
        }
    };
    let target = Target { addr: node.addr, path: "/v1/events".into(), token: Some(node.token.clone()) };
    let phase = node.start_measuring()?;
    let started = Instant::now();
    let measured = load::run(
        &target,
        options.connections,
        Until::Elapsed(options.duration),
        0,
        scenario.name(),
        stamped(options.ids),
    )
    .await?;
    let expected = measured.accepted() * subscriptions;
    let finished = wait_for(&counts, expected, options.delivery_timeout).await?;
    let cpu = node.measured_cpu(&phase, bare_cpu)?;
    let memory = node.memory()?;
    let mut report = Report::new(scenario, options, ceiling, measured, 1, memory.peak, cpu);
    report.delivered = Some(Delivered::new(expected, counts.unique(), finished - started));
    report.delivery_latency = Some(counts.latencies());
    report.held = options.held;
    if let (Some(broker), Some(watcher)) = (&broker, watcher) {
        watcher.abort();
        // A stream may count its last messages a moment after subscribers saw them.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut stored = broker.stored().await?;
        while stored.is_some_and(|n| n != expected) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            stored = broker.stored().await?;
        }
        if let Some(stored) = stored.filter(|n| *n != expected) {
            bail!("the broker holds {stored} messages, {expected} expected");
        }
        report.broker_ceiling = broker_ceiling;
    }
    Ok(report)
}

/// Seeds at least `held` deliveries behind a paused destination of their own, of an event type
/// that only it takes.
async fn hold(node: &Node, sink: &Sink, held: u64, ids: Ids) -> anyhow::Result<()> {
    let url = format!("http://{}/held", sink.server.addr);
    let destination = node.subscribe_to("held", &url, HELD_EVENT_TYPE).await?;
    node.call(Method::POST, &format!("/v1/destinations/{destination}/pause"), serde_json::Value::Null)
        .await?;
    let seed_batch = SEED_BATCH.min(held);
    let target = Target { addr: node.addr, path: "/v1/events/batch".into(), token: Some(node.token.clone()) };
    // Numbered past anything the run sends, so no seeded event repeats one of the run's.
    let seed = batch_from(ids, HELD_EVENT_TYPE, HELD_FIRST_EVENT, seed_batch);
    let seeded =
        load::run(&target, 4, Until::Requests(held.div_ceil(seed_batch)), 0, "holding", seed).await?;
    if seeded.errors > 0 {
        bail!("{} requests seeding the held backlog failed", seeded.errors);
    }
    Ok(())
}

/// Waits, with a progress bar, until the sink counted `expected` deliveries; answers when.
pub(crate) async fn wait_for(counts: &Counts, expected: u64, timeout: Duration) -> anyhow::Result<Instant> {
    let bar = ProgressBar::new(expected).with_style(
        ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix("delivered");
    let finished = counts.wait_for(expected, timeout, |n| bar.set_position(n)).await;
    bar.finish_and_clear();
    finished.with_context(|| format!("{} of {expected} deliveries arrived in {timeout:?}", counts.unique()))
}

/// Seeds `options.backlog` pending deliveries behind a paused destination, resumes it, and
/// samples the server's memory while the backlog drains.
async fn backlog(options: &Options) -> anyhow::Result<Report> {
    let seed_batch = SEED_BATCH.min(options.backlog).max(1);
    let requests = options.backlog.div_ceil(seed_batch);
    let total = requests * seed_batch;
    let (ceiling, bare_cpu) = bare(options, "/v1/events", single(options.ids)).await?;
    let sink = servers::start_sink(options.server_threads)?;
    let node = Node::start(&options.binary, &options.backend).await?;
    let destination = node.subscribe("sink", &format!("http://{}/hooks", sink.server.addr)).await?;
    node.call(Method::POST, &format!("/v1/destinations/{destination}/pause"), serde_json::Value::Null)
        .await?;

    let target = Target { addr: node.addr, path: "/v1/events/batch".into(), token: Some(node.token.clone()) };
    let seeding = node.start_measuring()?;
    let seeded =
        load::run(&target, 4, Until::Requests(requests), 0, "seeding", batch(options.ids, seed_batch))
            .await?;
    if seeded.errors > 0 {
        bail!("{} seeding requests failed", seeded.errors);
    }
    let cpu = node.measured_cpu(&seeding, bare_cpu)?;
    let cpu_before_drain = node.cpu()?;
    let before = node.memory()?;
    let sampler = node.sample_memory(Duration::from_millis(250));
    let started = Instant::now();
    node.call(Method::POST, &format!("/v1/destinations/{destination}/resume"), serde_json::Value::Null)
        .await?;
    let finished = wait_for(&sink.counts, total, options.delivery_timeout).await?;
    let drain_cpu = node.cpu()?.saturating_sub(cpu_before_drain);
    let samples = sampler.stop().await;
    let memory = node.memory()?;
    let mut report = Report::new(Scenario::Backlog, options, ceiling, seeded, seed_batch, memory.peak, cpu);
    report.delivered = Some(Delivered::new(total, sink.counts.unique(), finished - started));
    report.drain = Some(Drain::new(before.rss, &samples, drain_cpu));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_unique_the_same_length_and_in_no_order() {
        assert_eq!(Ids::Sequential.of(7), "e-7");
        let ids: Vec<String> = (0..100_000).map(|n| Ids::Random.of(n)).collect();
        assert!(ids.iter().all(|id| id.len() == 34 && id.starts_with("e-")), "{}", ids[0]);
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        let ascending = ids.windows(2).filter(|pair| pair[0] < pair[1]).count();
        assert!((40_000..60_000).contains(&ascending), "about half the neighbours ascend: {ascending}");
        let event: serde_json::Value = serde_json::from_str(&event_of(Ids::Random, "bench.item", 3)).unwrap();
        assert_eq!(event["event_id"], Ids::Random.of(3));
    }

    #[test]
    fn a_webhook_body_is_the_payload_of_the_plain_event() {
        for n in [0, 1, 976, 977, 123_456_789] {
            let plain: serde_json::Value = serde_json::from_str(&event(n)).unwrap();
            let body: serde_json::Value = serde_json::from_str(&payload(n)).unwrap();
            assert_eq!(plain["payload"], body);
            assert!(event(n).ends_with(&format!(r#""payload":{}}}"#, payload(n))), "byte for byte");
        }
    }

    #[test]
    fn a_github_webhook_is_signed_over_its_body() {
        let request = github_webhook("It's a Secret to Everybody")(7);
        let header = |name: &str| {
            request.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.to_str().unwrap().to_owned())
        };
        assert_eq!(header("x-github-event").as_deref(), Some("push"));
        assert_eq!(header("x-github-delivery").as_deref(), Some("d-7"));
        let mut mac = Hmac::<Sha256>::new_from_slice(b"It's a Secret to Everybody").unwrap();
        mac.update(&request.body);
        let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(header("x-hub-signature-256"), Some(format!("sha256={expected}")));
        assert_eq!(request.body, payload(7).as_bytes());
    }

    #[test]
    fn only_ingest_takes_another_source() {
        let options = Options { source: Source::Github, ..Options::smoke("switchyard".into()) };
        assert!(check(&[Scenario::Ingest], &options).is_ok());
        let error = check(&[Scenario::Ingest, Scenario::E2e], &options).unwrap_err().to_string();
        assert!(error.contains("only the ingest scenario, not e2e"), "{error}");
        assert!(check(&Scenario::ALL, &Options::smoke("switchyard".into())).is_ok());
        let random = Options { ids: Ids::Random, ..options };
        let error = check(&[Scenario::Ingest], &random).unwrap_err().to_string();
        assert!(error.contains("--ids"), "{error}");
    }
}
