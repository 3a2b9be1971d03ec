//! `switchyard-bench [SCENARIO]...`: see docs/benchmarks.md.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use switchyard_bench::soak::{self, SoakOptions};
use switchyard_bench::{Ids, Kind, Options, Scenario, Source, node, run_all, scenarios};

#[derive(Parser)]
#[command(about = "Load harness of Switchyard: drives the real binary over loopback")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Scenarios to run, in order; all of them when none is given.
    #[arg(value_enum)]
    scenarios: Vec<Scenario>,
    /// A few seconds in all, small counts: checks that every scenario completes and that the
    /// sink counts every delivery.
    #[arg(long)]
    smoke: bool,
    /// The switchyard binary (default: the one next to this executable).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds each load phase lasts.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Pending deliveries of the backlog scenario.
    #[arg(long, default_value_t = 1_000_000)]
    backlog: u64,
    /// Rows of the outbox table the relay scenario relays.
    #[arg(long, default_value_t = 150_000)]
    rows: u64,
    /// e2e and fanout: deliveries waiting behind a paused destination throughout the run.
    #[arg(long, default_value_t = 0)]
    held: u64,
    /// Worker threads of the bare server and of the sink.
    #[arg(long, default_value_t = 2)]
    server_threads: usize,
    /// Seconds to wait for the sink to have every delivery before failing.
    #[arg(long, default_value_t = 3_600)]
    delivery_timeout: u64,
    /// Run the server on this PostgreSQL database (e.g. postgres://postgres@127.0.0.1:5432/test)
    /// instead of SQLite, in a schema `switchyard_bench` dropped and made anew per scenario.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Where e2e and fanout deliver: the HTTP sink, or a broker, measured beside a bare client
    /// of the same broker.
    #[arg(long, value_enum, default_value_t = Kind::Http)]
    kind: Kind,
    /// The broker of `--kind` (default: the local service, e.g. nats://127.0.0.1:4222).
    #[arg(long, value_name = "URL")]
    broker: Option<String>,
    /// Where ingest's events enter: `POST /v1/events`, or a GitHub webhook source (signed
    /// requests to `POST /v1/sources/{id}/webhook`). Only the ingest scenario takes github.
    #[arg(long, value_enum, default_value_t = Source::Api)]
    source: Source,
    /// How events are named: one counter (`e-<n>`), or ids in no order, as UUIDv4 ids are.
    #[arg(long, value_enum, default_value_t = Ids::Sequential)]
    ids: Ids,
}

#[derive(Subcommand)]
enum Command {
    /// The crash soak (docs/reliability.md): kill -9 cycles, a PostgreSQL restart and a full
    /// disk under load; fails if an acknowledged event is lost or the database is damaged.
    Soak(SoakCli),
}

#[derive(clap::Args)]
struct SoakCli {
    /// Under a minute: two kill cycles and a brief full disk, no PostgreSQL restart.
    #[arg(long)]
    smoke: bool,
    /// The switchyard binary (default: the one next to this executable).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// kill -9 cycles (0 leaves the phase out).
    #[arg(long)]
    cycles: Option<u32>,
    /// Seconds the private PostgreSQL stays down (0 leaves the phase out).
    #[arg(long)]
    postgres_outage: Option<u64>,
    /// Seconds the SQLite disk stays full (0 leaves the phase out).
    #[arg(long)]
    full_disk: Option<u64>,
    /// The PostgreSQL phase's `database.acquire_timeout_ms` (default 2000).
    #[arg(long)]
    acquire_timeout_ms: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Soak(soak)) = cli.command {
        return run_soak(soak).await;
    }
    // The server runs in a temporary directory: a relative path would not find it from there.
    let binary = std::path::absolute(cli.binary.unwrap_or_else(node::default_binary))?;
    let options = if cli.smoke {
        Options { source: cli.source, ids: cli.ids, ..Options::smoke(binary) }
    } else {
        Options {
            binary,
            connections: cli.connections,
            duration: Duration::from_secs_f64(cli.seconds),
            backlog: cli.backlog,
            rows: cli.rows,
            held: cli.held,
            server_threads: cli.server_threads,
            delivery_timeout: Duration::from_secs(cli.delivery_timeout),
            backend: cli.postgres.map_or(node::Backend::Sqlite, node::Backend::Postgres),
            kind: cli.kind,
            broker_url: cli.broker,
            source: cli.source,
            ids: cli.ids,
        }
    };
    let scenarios = if cli.scenarios.is_empty() { Scenario::ALL.to_vec() } else { cli.scenarios };
    scenarios::check(&scenarios, &options)?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let backend = match &options.backend {
        node::Backend::Sqlite => "SQLite".to_owned(),
        node::Backend::Postgres(_) => format!("PostgreSQL, schema {}", node::POSTGRES_SCHEMA),
    };
    println!(
        "switchyard-bench: {} on {backend} ({} CPUs, load average {})",
        options.binary.display(),
        std::thread::available_parallelism().map_or(0, usize::from),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    run_all(&scenarios, &options, |report| println!("{report}")).await?;
    Ok(())
}

async fn run_soak(cli: SoakCli) -> anyhow::Result<()> {
    let binary = std::path::absolute(cli.binary.unwrap_or_else(node::default_binary))?;
    let mut options = if cli.smoke { SoakOptions::smoke(binary) } else { SoakOptions::full(binary) };
    let seconds = |s: u64| (s > 0).then(|| Duration::from_secs(s));
    options.cycles = cli.cycles.unwrap_or(options.cycles);
    options.postgres_outage = cli.postgres_outage.map_or(options.postgres_outage, seconds);
    options.full_disk = cli.full_disk.map_or(options.full_disk, seconds);
    options.acquire_timeout_ms = cli.acquire_timeout_ms.unwrap_or(options.acquire_timeout_ms);
    println!(
        "switchyard soak: {} ({} CPUs)",
        options.binary.display(),
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    let started = std::time::Instant::now();
    // Interrupted, the soak's future is dropped, and with it its servers, its PostgreSQL and
    // its tmpfs mount, each of which cleans up after itself when dropped.
    let phases = tokio::select! {
        phases = soak::run(&options, |figures| println!("{figures}")) => phases?,
        _ = interrupted() => anyhow::bail!("interrupted"),
    };
    println!("soak finished in {:.0} s", started.elapsed().as_secs_f64());
    if let Some(failed) = phases.iter().find(|figures| !figures.passed()) {
        anyhow::bail!("the {} phase failed", failed.phase);
    }
    Ok(())
}

/// SIGINT or SIGTERM.
async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) =
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
}
