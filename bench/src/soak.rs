//! The crash soak: the real binary under continuous publishing and delivery while it is killed,
//! while its PostgreSQL restarts, and while its SQLite disk is full; at the end every event a
//! publisher was told was accepted must have reached the receiver. See docs/reliability.md.

mod crash;
mod full_disk;
mod postgres;
mod publisher;
mod server;
mod sink;

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::Method;
use serde_json::{Value, json};

use crate::load::Connection;
pub use publisher::Answers;
use sink::FlakySink;

/// What the soak runs.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// The `switchyard` binary.
    pub binary: PathBuf,
    /// `kill -9` cycles of the crash phase; 0 leaves the phase out.
    pub cycles: u32,
    /// How long the private PostgreSQL stays down; `None` skips the PostgreSQL phase.
    pub postgres_outage: Option<Duration>,
    /// How long the SQLite disk stays full; `None` skips the full-disk phase.
    pub full_disk: Option<Duration>,
    /// The PostgreSQL phase's `database.acquire_timeout_ms`: how long a request waits for a
    /// connection before it is answered 503.
    pub acquire_timeout_ms: u64,
    /// Concurrent publishers.
    pub connections: usize,
    /// How long to wait for the receiver to have every acknowledged event.
    pub delivery_timeout: Duration,
}

impl SoakOptions {
    /// The full soak.
    pub fn full(binary: PathBuf) -> SoakOptions {
        SoakOptions {
            binary,
            cycles: 20,
            postgres_outage: Some(Duration::from_secs(8)),
            full_disk: Some(Duration::from_secs(5)),
            acquire_timeout_ms: 2_000,
            connections: 4,
            delivery_timeout: Duration::from_secs(600),
        }
    }

    /// Well under a minute: two kill cycles and a brief full disk.
    pub fn smoke(binary: PathBuf) -> SoakOptions {
        SoakOptions {
            cycles: 2,
            postgres_outage: None,
            full_disk: Some(Duration::from_secs(1)),
            delivery_timeout: Duration::from_secs(30),
            ..SoakOptions::full(binary)
        }
    }
}

/// The outcome of one phase.
#[derive(Debug, Clone)]
pub struct Figures {
    pub phase: &'static str,
    /// Events a publisher was told were accepted (201, or 200 for one already there).
    pub acknowledged: u64,
    /// Of those, the ones the receiver accepted at least once.
    pub delivered: u64,
    /// Acknowledged and never delivered: must be 0.
    pub lost: u64,
    /// Acceptances at the receiver beyond the first of an event.
    pub duplicates: u64,
    /// Events delivered whose publisher never heard they were accepted (the answer was lost
    /// with the node): allowed, they were committed.
    pub unacknowledged_delivered: u64,
    /// Deliveries the receiver refused on purpose (500), each retried by the hub.
    pub refused_by_sink: u64,
    /// What the nodes answered the publishers.
    pub answers: Answers,
    /// `PRAGMA integrity_check` of the SQLite file at the end, when there is one.
    pub integrity: Option<String>,
    /// What else the phase showed, one line each.
    pub notes: Vec<String>,
    /// The phase's own checks beyond loss and integrity, each with whether it held.
    pub checks: Vec<(String, bool)>,
    pub elapsed: Duration,
}

impl Figures {
    /// Whether nothing was lost, the database is sound and every check of the phase held.
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.integrity.as_deref().is_none_or(|i| i == "ok")
            && self.checks.iter().all(|(_, held)| *held)
    }
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed() { "passed" } else { "FAILED" };
        writeln!(f, "{}: {verdict} in {:.0} s", self.phase, self.elapsed.as_secs_f64())?;
        writeln!(
            f,
            "  acknowledged {}, delivered {}, lost {}, duplicates {}",
            self.acknowledged, self.delivered, self.lost, self.duplicates
        )?;
        writeln!(
            f,
            "  delivered without an acknowledgement {}, refused by the sink on purpose {}",
            self.unacknowledged_delivered, self.refused_by_sink
        )?;
        writeln!(f, "  answers: {}", self.answers)?;
        if let Some(unexpected) = &self.answers.first_unexpected {
            writeln!(f, "  first unexpected answer: {unexpected}")?;
        }
        if let Some(integrity) = &self.integrity {
            writeln!(f, "  integrity_check: {integrity}")?;
        }
        for note in &self.notes {
            writeln!(f, "  {note}")?;
        }
        for (check, held) in &self.checks {
            writeln!(f, "  [{}] {check}", if *held { "ok" } else { "FAILED" })?;
        }
        Ok(())
    }
}

/// Runs the phases one after the other, handing each one's figures to `on_phase` as it ends.
/// A phase that cannot run here (the full disk needs root for its mount) says so and is left
/// out; a phase that cannot even start fails the soak.
pub async fn run(options: &SoakOptions, mut on_phase: impl FnMut(&Figures)) -> anyhow::Result<Vec<Figures>> {
    let mut all = Vec::new();
    if options.cycles > 0 {
        let figures = crash::run(options).await.context("the kill -9 phase")?;
        on_phase(&figures);
        all.push(figures);
    }
    if let Some(outage) = options.postgres_outage {
        let figures = postgres::run(options, outage).await.context("the PostgreSQL restart phase")?;
        on_phase(&figures);
        all.push(figures);
    }
    if let Some(full_for) = options.full_disk {
        match full_disk::run(options, full_for).await.context("the full-disk phase")? {
            Some(figures) => {
                on_phase(&figures);
                all.push(figures);
            }
            None => eprintln!("{}", full_disk::SKIPPED),
        }
    }
    Ok(all)
}

/// The soak's destination: the flaky sink, retried quickly and often enough that no delivery
/// runs out of attempts, with a circuit that closes again within seconds (the defaults, made
/// for real outages, would have a 20 % failure rate wait minutes behind an open circuit).
fn sink_destination(sink: &FlakySink) -> Value {
    json!({
        "kind": "http",
        "config": {"url": sink.url()},
        "retry": {"max_attempts": 100, "initial_delay_ms": 100, "max_delay_ms": 2_000, "multiplier": 2.0},
        "circuit_breaker": {"cooldown_ms": 500, "max_cooldown_ms": 2_000},
    })
}

/// Waits until the sink has every one of `acknowledged` (printing progress now and then), then
/// a lease longer, so a delivery sent again by a node that died after sending it shows as a
/// duplicate. When `timeout` passes first, names a few of the missing and gives up: the
/// figures then count them lost.
async fn wait_for_delivery(sink: &FlakySink, acknowledged: &HashSet<String>, timeout: Duration) {
    let started = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let missing = sink.record.missing(acknowledged);
        if missing.is_empty() {
            break;
        }
        if started.elapsed() > timeout {
            let some: Vec<&str> = missing.iter().take(5).copied().collect();
            eprintln!(
                "{} acknowledged events not delivered within {timeout:?}, e.g. {some:?}",
                missing.len()
            );
            return;
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            println!("  waiting for {} deliveries", missing.len());
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(server::LEASE_MS + 2_000)).await;
}

/// The loss and duplicate figures of `acknowledged` against what `sink` accepted.
fn tally(
    phase: &'static str,
    sink: &FlakySink,
    acknowledged: &HashSet<String>,
    answers: Answers,
    started: Instant,
) -> Figures {
    let lost = sink.record.missing(acknowledged).len() as u64;
    Figures {
        phase,
        acknowledged: acknowledged.len() as u64,
        delivered: acknowledged.len() as u64 - lost,
        lost,
        duplicates: sink.record.duplicates(),
        unacknowledged_delivered: sink.record.beyond(acknowledged),
        refused_by_sink: sink.record.refused(),
        answers,
        integrity: None,
        notes: Vec::new(),
        checks: Vec::new(),
        elapsed: started.elapsed(),
    }
}

/// How many deliveries the node on `addr` holds in `status`.
async fn deliveries_in(addr: SocketAddr, token: &str, status: &str) -> anyhow::Result<u64> {
    let mut connection = Connection::open(addr).await?;
    let path = format!("/v1/deliveries?status={status}&page=1&per_page=1");
    let (code, body) = connection.send(Method::GET, &path, Some(token), Bytes::new()).await?;
    if !code.is_success() {
        bail!("{path}: {code}: {}", String::from_utf8_lossy(&body));
    }
    let body: Value = serde_json::from_slice(&body)?;
    body["pagination"]["total_items"].as_u64().context("a total in the pagination")
}

/// The status of `GET /health/ready` on `addr` (`None`: no answer).
async fn readiness(addr: SocketAddr) -> Option<u16> {
    let mut connection = Connection::open(addr).await.ok()?;
    let ask = connection.send(Method::GET, "/health/ready", None, Bytes::new());
    let (status, _) = tokio::time::timeout(Duration::from_secs(10), ask).await.ok()?.ok()?;
    Some(status.as_u16())
}

/// A connection to the SQLite file at `path`, changing nothing in it.
async fn open_sqlite(path: &Path) -> anyhow::Result<sqlx::SqliteConnection> {
    use sqlx::Connection as _;
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path).read_only(true);
    sqlx::SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("opening {}", path.display()))
}

/// `PRAGMA integrity_check` of the SQLite file at `path`: "ok", or the problems it lists.
async fn integrity_check(path: &Path) -> anyhow::Result<String> {
    let mut connection = open_sqlite(path).await?;
    let lines: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check").fetch_all(&mut connection).await?;
    Ok(lines.join("; "))
}

/// The ids of the events stored in the SQLite file at `path`.
async fn stored_event_ids(path: &Path) -> anyhow::Result<HashSet<String>> {
    let mut connection = open_sqlite(path).await?;
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT event_id FROM events").fetch_all(&mut connection).await?;
    Ok(ids.into_iter().collect())
}

/// A directory for one phase's files, named so that a leftover is recognisable.
fn work_dir(phase: &str) -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new().prefix(&format!("switchyard-soak-{phase}-")).tempdir()?)
}
