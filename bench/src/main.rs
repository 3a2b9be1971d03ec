//! `switchyard-bench [SCENARIO]...`: see docs/benchmarks.md.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use switchyard_bench::{Kind, Options, Scenario, Source, node, run_all, scenarios};

#[derive(Parser)]
#[command(about = "Load harness of Switchyard: drives the real binary over loopback")]
struct Cli {
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The server runs in a temporary directory: a relative path would not find it from there.
    let binary = std::path::absolute(cli.binary.unwrap_or_else(node::default_binary))?;
    let options = if cli.smoke {
        Options { source: cli.source, ..Options::smoke(binary) }
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
