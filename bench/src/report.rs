//! What a scenario measured, printed as a small table.

use std::fmt;
use std::time::Duration;

use crate::load::LoadResult;
use crate::scenarios::{Options, Scenario};

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
    pub delivered: Option<Delivered>,
    pub drain: Option<Drain>,
    /// Deliveries held behind a paused destination during the run.
    pub held: u64,
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

/// The server's resident set while a backlog drained, bytes.
#[derive(Debug, Clone, Copy)]
pub struct Drain {
    pub before: u64,
    pub min: u64,
    pub max: u64,
    pub last: u64,
    pub samples: usize,
}

impl Drain {
    pub fn new(before: u64, samples: &[u64]) -> Drain {
        Drain {
            before,
            min: samples.iter().copied().min().unwrap_or(before),
            max: samples.iter().copied().max().unwrap_or(before),
            last: samples.last().copied().unwrap_or(before),
            samples: samples.len(),
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
    ) -> Report {
        Report {
            scenario,
            connections: options.connections,
            ceiling,
            measured,
            events_per_request,
            peak_rss,
            delivered: None,
            drain: None,
            held: 0,
        }
    }

    /// Switchyard's request rate as a share of the bare server's.
    pub fn ratio(&self) -> f64 {
        self.measured.per_second() / self.ceiling.per_second().max(1e-9)
    }

    /// Whether the run is complete: no failed request, and every delivery counted.
    pub fn check(&self) -> anyhow::Result<()> {
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

fn latencies(f: &mut fmt::Formatter<'_>, label: &str, r: &LoadResult) -> fmt::Result {
    writeln!(
        f,
        "  {label:<22} {:>9.0} req/s  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  ({} requests in {:.1} s)",
        r.per_second(),
        r.latency_ms(0.5),
        r.latency_ms(0.9),
        r.latency_ms(0.99),
        r.max_ms(),
        r.requests,
        r.elapsed.as_secs_f64()
    )
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} connections", self.scenario.name(), self.connections)?;
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
        writeln!(f, "  {:<22} {:.1} MiB", "server peak RSS", self.peak_rss as f64 / MIB)
    }
}
