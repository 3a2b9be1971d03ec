//! What a scenario measured, printed as a small table.

use std::fmt;
use std::time::Duration;

use crate::latency::Latencies;
use crate::load::LoadResult;
use crate::scenarios::{Ids, Options, Scenario, Source};

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Clone)]
pub struct Report {
    pub scenario: Scenario,
    pub connections: usize,
    /// The bare server under the same load, in the same run.
    pub ceiling: LoadResult,
    /// Switchyard under the load.
    pub measured: LoadResult,
    pub events_per_request: u64,
    /// The server's peak resident set (VmHWM), bytes.
    pub peak_rss: u64,
    pub cpu: Cpu,
    pub delivered: Option<Delivered>,
    /// `--kind` other than `http`: a bare client publishing the same messages with acks.
    pub broker_ceiling: Option<BrokerCeiling>,
    /// `e2e` and `fanout`: from each event's send to the first arrival of each of its
    /// deliveries at the sink.
    pub delivery_latency: Option<Latencies>,
    pub drain: Option<Drain>,
    /// Deliveries held behind a paused destination during the run.
    pub held: u64,
    /// Where the events entered (`ingest --source`).
    pub source: Source,
    /// How the events were named (`--ids`).
    pub ids: Ids,
    /// `relay`: the outbox table relayed.
    pub relay: Option<Relay>,
}

/// User plus system CPU time (`utime + stime` of `/proc/.../stat`) over the measured phase.
#[derive(Debug, Clone, Copy)]
pub struct Cpu {
    /// The server process, from just before the load until it ended (`ingest`,
    /// `ingest-batch`, `backlog`'s seeding) or until the sink had every delivery (`e2e`,
    /// `fanout`).
    pub server: Duration,
    /// The bare server's threads under the same load.
    pub bare_server: Duration,
    /// The share of the machine's CPU time that was idle over the server's measured phase
    /// (its load, and in `e2e` and `fanout` until the sink had every delivery): near zero, the
    /// run was bound by the cores (server, load generator and sink together); well above,
    /// by waiting.
    pub machine_idle: Option<f64>,
}

/// A bare client of the broker under the same load, in the same run.
#[derive(Debug, Clone)]
pub struct BrokerCeiling {
    pub broker: &'static str,
    pub result: LoadResult,
}

#[derive(Debug, Clone, Copy)]
pub struct Delivered {
    pub expected: u64,
    pub counted: u64,
    /// From the first request until the sink had every delivery.
    pub elapsed: Duration,
}

impl Delivered {
    pub fn new(expected: u64, counted: u64, elapsed: Duration) -> Delivered {
        Delivered { expected, counted, elapsed }
    }

    pub fn per_second(&self) -> f64 {
        self.counted as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The outbox table of `relay`. Its report's `ceiling` is the bare relay (one request per
/// row), its `measured` the rows Switchyard relayed, timed from the source's creation until
/// the sink had every event and the table was empty.
#[derive(Debug, Clone, Copy)]
pub struct Relay {
    /// Where the table was: `SQLite` or `PostgreSQL`.
    pub database: &'static str,
    pub rows: u64,
    /// Rows a batch, of the source and of the bare relay.
    pub batch_size: u32,
    /// How long filling the table for Switchyard's run took.
    pub fill: Duration,
    /// From the source's creation until the table was seen empty (every row read, its event
    /// stored, the row deleted), to within 100 ms.
    pub emptied: Duration,
}

/// The server's resident set while a backlog drained, bytes.
#[derive(Debug, Clone, Copy)]
pub struct Drain {
    pub before: u64,
    pub min: u64,
    pub max: u64,
    pub last: u64,
    pub samples: usize,
    /// The server's CPU time from the resume until the sink had the whole backlog.
    pub server_cpu: Duration,
}

impl Drain {
    pub fn new(before: u64, samples: &[u64], server_cpu: Duration) -> Drain {
        Drain {
            before,
            min: samples.iter().copied().min().unwrap_or(before),
            max: samples.iter().copied().max().unwrap_or(before),
            last: samples.last().copied().unwrap_or(before),
            samples: samples.len(),
            server_cpu,
        }
    }
}

impl Report {
    pub fn new(
        scenario: Scenario,
        options: &Options,
        ceiling: LoadResult,
        measured: LoadResult,
        events_per_request: u64,
        peak_rss: u64,
        cpu: Cpu,
    ) -> Report {
        Report {
            scenario,
            connections: options.connections,
            ceiling,
            measured,
            events_per_request,
            peak_rss,
            cpu,
            delivered: None,
            broker_ceiling: None,
            delivery_latency: None,
            drain: None,
            held: 0,
            source: Source::Api,
            ids: options.ids,
            relay: None,
        }
    }

    /// Switchyard's request rate as a share of the bare server's.
    pub fn ratio(&self) -> f64 {
        self.measured.per_second() / self.ceiling.per_second().max(1e-9)
    }

    /// The events the server accepted in the measured load.
    pub fn events(&self) -> u64 {
        self.measured.accepted() * self.events_per_request
    }

    /// The server's CPU time per accepted event, µs: in `e2e` and `fanout` that includes the
    /// event's deliveries; in `backlog`, the seeding only.
    pub fn cpu_us_per_event(&self) -> f64 {
        micros_per(self.cpu.server, self.events())
    }

    /// The bare server's CPU time per request, µs.
    pub fn bare_cpu_us_per_request(&self) -> f64 {
        micros_per(self.cpu.bare_server, self.ceiling.requests)
    }

    /// Whether the run is complete: no failed request, and every delivery counted.
    pub fn check(&self) -> anyhow::Result<()> {
        if let Some(BrokerCeiling { broker, result }) = &self.broker_ceiling
            && result.errors > 0
        {
            anyhow::bail!(
                "{}: {} publishes of the bare {broker} client failed",
                self.scenario.name(),
                result.errors
            );
        }
        if self.ceiling.errors + self.measured.errors > 0 {
            anyhow::bail!(
                "{}: {} requests failed ({} against the bare server)",
                self.scenario.name(),
                self.measured.errors,
                self.ceiling.errors
            );
        }
        if let Some(delivered) = self.delivered
            && delivered.counted != delivered.expected
        {
            anyhow::bail!(
                "{}: the sink counted {} deliveries, {} expected",
                self.scenario.name(),
                delivered.counted,
                delivered.expected
            );
        }
        Ok(())
    }
}

fn micros_per(cpu: Duration, count: u64) -> f64 {
    cpu.as_secs_f64() * 1e6 / count.max(1) as f64
}

fn latencies(f: &mut fmt::Formatter<'_>, label: &str, r: &LoadResult) -> fmt::Result {
    write!(f, "  {label:<22} {:>9.0} req/s  ", r.per_second())?;
    quantiles(f, &r.latencies)?;
    writeln!(f, "  ({} requests in {:.1} s)", r.requests, r.elapsed.as_secs_f64())
}

fn quantiles(f: &mut fmt::Formatter<'_>, l: &Latencies) -> fmt::Result {
    write!(
        f,
        "p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms",
        l.ms(0.5),
        l.ms(0.9),
        l.ms(0.99),
        l.max_ms()
    )
}

impl Report {
    fn fmt_cpu(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (server, events) = (self.cpu.server.as_secs_f64(), self.events());
        write!(f, "  {:<22} {:>9.0} µs/event", "server CPU", self.cpu_us_per_event())?;
        match (self.delivered, self.drain) {
            (Some(delivered), Some(drain)) => writeln!(
                f,
                " seeding ({server:.2} s for {events} events), {:.0} µs/delivery draining ({:.2} s)",
                micros_per(drain.server_cpu, delivered.counted),
                drain.server_cpu.as_secs_f64()
            )?,
            (Some(delivered), None) => {
                let per_event = delivered.expected / events.max(1);
                if per_event == 1 {
                    write!(f, " end to end, its delivery included")?;
                } else {
                    let per_delivery = micros_per(self.cpu.server, delivered.counted);
                    write!(
                        f,
                        " end to end, its {per_event} deliveries included = {per_delivery:.0} µs/delivery"
                    )?;
                }
                writeln!(
                    f,
                    " ({server:.2} s for {events} events, until the sink had all {})",
                    delivered.counted
                )?
            }
            _ => writeln!(f, " ({server:.2} s for {events} events)")?,
        }
        writeln!(
            f,
            "  {:<22} {:>9.1} µs/request ({:.2} s for {} requests, its threads in this process)",
            "bare server CPU",
            self.bare_cpu_us_per_request(),
            self.cpu.bare_server.as_secs_f64(),
            self.ceiling.requests
        )?;
        match self.cpu.machine_idle {
            Some(idle) => writeln!(
                f,
                "  {:<22} {:>9.0} % of the machine's CPU time idle while the server was measured",
                "machine idle",
                idle * 100.0
            ),
            None => Ok(()),
        }
    }
}

impl Report {
    /// `relay`'s report: rows, not requests, and no bare server.
    fn fmt_relay(&self, f: &mut fmt::Formatter<'_>, relay: &Relay) -> fmt::Result {
        let Relay { database, rows, batch_size, fill, emptied } = *relay;
        writeln!(f, "relay (outbox on {database}, {rows} rows, batches of {batch_size})")?;
        writeln!(
            f,
            "  {:<22} {:>9.0} rows/s (switchyard-outbox's enqueue, 10 000 rows a transaction; {:.1} s)",
            "filled",
            rows as f64 / fill.as_secs_f64().max(1e-9),
            fill.as_secs_f64()
        )?;
        let bare = &self.ceiling;
        write!(f, "  {:<22} {:>9.0} rows/s  ", "bare relay", bare.per_second())?;
        quantiles(f, &bare.latencies)?;
        writeln!(
            f,
            "  (read, POST each row to the sink over {} connections, delete; {} rows in {:.1} s)",
            self.connections,
            bare.requests,
            bare.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "  {:<22} {:>9.0} rows/s (the table empty {:.1} s after the source's creation)",
            "read, stored, deleted",
            rows as f64 / emptied.as_secs_f64().max(1e-9),
            emptied.as_secs_f64()
        )?;
        if let Some(d) = self.delivered {
            writeln!(
                f,
                "  {:<22} {:>9.0} rows/s, {:.2} × the bare relay ({}/{} events at the sink and the table empty {:.1} s after the source's creation)",
                "switchyard",
                d.per_second(),
                d.per_second() / bare.per_second().max(1e-9),
                d.counted,
                d.expected,
                d.elapsed.as_secs_f64()
            )?;
        }
        writeln!(
            f,
            "  {:<22} {:>9.0} µs/event end to end: read, stored, delivered, row deleted ({:.2} s for {} rows)",
            "server CPU",
            self.cpu_us_per_event(),
            self.cpu.server.as_secs_f64(),
            self.events()
        )?;
        writeln!(f, "  {:<22} {:.1} MiB", "server peak RSS", self.peak_rss as f64 / MIB)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(relay) = &self.relay {
            return self.fmt_relay(f, relay);
        }
        write!(f, "{}", self.scenario.name())?;
        if let Some(source) = self.source.label() {
            write!(f, " ({source})")?;
        }
        write!(f, " ({} connections", self.connections)?;
        if self.ids == Ids::Random {
            write!(f, ", random event ids")?;
        }
        if self.held > 0 {
            write!(f, ", {} deliveries held behind a paused destination", self.held)?;
        }
        writeln!(f, ")")?;
        latencies(f, "bare server", &self.ceiling)?;
        let label = if self.scenario == Scenario::Backlog { "switchyard (seeding)" } else { "switchyard" };
        latencies(f, label, &self.measured)?;
        writeln!(
            f,
            "  {:<22} {:>9.0} events/s, {:.2} × the bare server's request rate",
            "ingested",
            self.measured.per_second() * self.events_per_request as f64,
            self.ratio()
        )?;
        if let Some(d) = self.delivered {
            writeln!(
                f,
                "  {:<22} {:>9.0} deliveries/s, {:.2} × the bare server's request rate ({}/{} counted in {:.1} s)",
                "delivered",
                d.per_second(),
                d.per_second() / self.ceiling.per_second().max(1e-9),
                d.counted,
                d.expected,
                d.elapsed.as_secs_f64()
            )?;
        }
        if let (Some(d), Some(BrokerCeiling { broker: name, result: broker })) =
            (self.delivered, &self.broker_ceiling)
        {
            write!(f, "  {:<22} {:>9.0} msg/s  ", format!("bare {name} client"), broker.per_second())?;
            quantiles(f, &broker.latencies)?;
            writeln!(f, "  (publish to ack; {} messages, {} failed)", broker.requests, broker.errors)?;
            writeln!(
                f,
                "  {:<22} {:>9.2} × the bare client's acknowledged publishes",
                "delivered / broker",
                d.per_second() / broker.per_second().max(1e-9)
            )?;
        }
        if let Some(l) = &self.delivery_latency {
            // Blank where the other latency lines have their rate, so the quantiles line up.
            write!(f, "  {:<22} {:>17}", "publish → delivered", "")?;
            quantiles(f, l)?;
            writeln!(f, "  ({} deliveries, from the event's send)", l.len())?;
        }
        if let Some(d) = self.drain {
            writeln!(
                f,
                "  {:<22} RSS before {:.1} MiB, during min {:.1} / max {:.1} MiB, at the end {:.1} MiB ({} samples)",
                "drain memory",
                d.before as f64 / MIB,
                d.min as f64 / MIB,
                d.max as f64 / MIB,
                d.last as f64 / MIB,
                d.samples
            )?;
        }
        self.fmt_cpu(f)?;
        writeln!(f, "  {:<22} {:.1} MiB", "server peak RSS", self.peak_rss as f64 / MIB)
    }
}
