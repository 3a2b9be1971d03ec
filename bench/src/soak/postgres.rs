//! Phase b: two nodes on a PostgreSQL of the soak's own, which is stopped hard (`pg_ctl stop
//! -m immediate`, a crash as far as the database is concerned) under load and started again
//! after a while. The nodes must refuse with 503 meanwhile and recover by themselves. The
//! shared PostgreSQL of the machine is never touched.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::publisher::{Events, Publisher};
use super::server::{Server, soak_env};
use super::sink::FlakySink;
use super::{Figures, SoakOptions};
use crate::node::{self, Backend};

const SINK_FAILURE_RATE: f64 = 0.2;

pub async fn run(options: &SoakOptions, outage: Duration) -> anyhow::Result<Figures> {
    let started = Instant::now();
    let cluster = Cluster::create()?;
    cluster.start()?;
    println!(
        "PostgreSQL restart: two nodes on a private cluster (port {}), down for {} s under load",
        cluster.port,
        outage.as_secs()
    );
    let dir = super::work_dir("postgres")?;
    let (url, mut env) = Backend::Postgres(cluster.url()).prepare(dir.path()).await?;
    env.extend(soak_env());
    env.push(("SWITCHYARD_DATABASE__ACQUIRE_TIMEOUT_MS", options.acquire_timeout_ms.to_string()));
    let mut nodes = Vec::new();
    for name in ["a", "b"] {
        let log = dir.path().join(format!("node-{name}.log"));
        nodes.push(Server::new(&options.binary, &url, env.clone(), dir.path(), &log)?);
    }
    // Made before any node starts, it migrates the schema too.
    let token = nodes[0].admin_token()?;
    for node in &mut nodes {
        node.start().await?;
    }
    let sink = FlakySink::start(SINK_FAILURE_RATE)?;
    node::subscribe_with(nodes[0].addr, &token, "sink", super::sink_destination(&sink), "#").await?;

    let addrs: Vec<_> = nodes.iter().map(|n| n.addr).collect();
    let publisher =
        Publisher::start(&addrs, &token, Events { prefix: "postgres", padding: 200 }, options.connections);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = publisher.answers();

    cluster.stop()?;
    let down_at = Instant::now();
    let mut unready_while_down = vec![0u64; nodes.len()];
    while down_at.elapsed() < outage {
        for (node, unready) in nodes.iter().zip(&mut unready_while_down) {
            if super::readiness(node.addr).await == Some(503) {
                *unready += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let refused_while_down: Vec<u64> = addrs.iter().map(|a| publisher.answers_of(*a).unavailable).collect();
    cluster.start()?;
    let back_at = Instant::now();

    // Recovery: both nodes ready again and taking events, without anyone restarting them.
    let acknowledged_at_restart = publisher.acknowledged_count();
    let mut ready_after = None;
    while back_at.elapsed() < Duration::from_secs(60) {
        let mut all_ready = true;
        for node in &nodes {
            all_ready &= super::readiness(node.addr).await == Some(200);
        }
        if all_ready && publisher.acknowledged_count() > acknowledged_at_restart {
            ready_after = Some(back_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (acknowledged, answers) = publisher.stop().await;
    super::wait_for_delivery(&sink, &acknowledged, options.delivery_timeout).await;

    let dead = super::deliveries_in(nodes[0].addr, &token, "dead").await?;
    let mut figures = super::tally("PostgreSQL restart", &sink, &acknowledged, answers, started);
    let during = figures.answers.unavailable - before.unavailable;
    figures.notes.push(format!(
        "while down: {during} publishes answered 503 unavailable (node a {}, node b {}), readiness 503 \
         {} and {} times",
        refused_while_down[0], refused_while_down[1], unready_while_down[0], unready_while_down[1]
    ));
    match ready_after {
        Some(after) => figures.notes.push(format!(
            "both nodes ready and acknowledging again {:.1} s after PostgreSQL came back",
            after.as_secs_f64()
        )),
        None => figures.notes.push("the nodes had not recovered 60 s after PostgreSQL came back".into()),
    }
    figures.notes.push(format!("dead deliveries at the end: {dead}"));
    figures.checks.push((
        "each node answered 503 unavailable while PostgreSQL was down".into(),
        refused_while_down.iter().all(|n| *n > 0) && unready_while_down.iter().all(|n| *n > 0),
    ));
    let still_running = nodes.iter_mut().all(Server::is_running);
    figures.checks.push((
        "both nodes recovered by themselves (same processes)".into(),
        ready_after.is_some() && still_running,
    ));
    figures.checks.push((
        "every refusal was a 503 unavailable envelope".into(),
        figures.answers.refusals_well_formed(),
    ));
    Ok(figures)
}

/// A PostgreSQL cluster of the soak's own, in a temporary directory, on a free loopback port,
/// its socket in that directory; stopped and removed when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Run its programs as `postgres`: PostgreSQL refuses to run as root.
    as_postgres: bool,
}

impl Cluster {
    fn create() -> anyhow::Result<Cluster> {
        let bin = newest_postgres_bin()?;
        let dir = super::work_dir("postgres-cluster")?;
        let as_postgres = rustix::process::geteuid().is_root();
        if as_postgres {
            run_command(Command::new("chown").arg("postgres:postgres").arg(dir.path()))?;
        }
        let cluster = Cluster { dir, bin, port: node::free_port()?, as_postgres };
        let data = cluster.data();
        cluster.run(
            cluster.program("initdb").args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "-D"]).arg(&data),
        )?;
        Ok(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn start(&self) -> anyhow::Result<()> {
        let server_options =
            format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.path().display());
        let mut pg_ctl = self.program("pg_ctl");
        pg_ctl.arg("-D").arg(self.data()).arg("-l").arg(self.dir.path().join("postgres.log"));
        self.run(pg_ctl.args(["-w", "-o", &server_options, "start"]))
    }

    /// A crash as far as the database is concerned: no checkpoint, recovery at the next start.
    fn stop(&self) -> anyhow::Result<()> {
        self.run(self.program("pg_ctl").arg("-D").arg(self.data()).args(["-m", "immediate", "-w", "stop"]))
    }

    fn program(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn run(&self, command: &mut Command) -> anyhow::Result<()> {
        run_command(command.current_dir(self.dir.path()))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn run_command(command: &mut Command) -> anyhow::Result<()> {
    let output = command.output().with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!("{command:?}: {}: {}", output.status, String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

/// `/usr/lib/postgresql/<newest>/bin`.
fn newest_postgres_bin() -> anyhow::Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .with_context(|| format!("listing {}: is PostgreSQL installed?", root.display()))?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .with_context(|| format!("no PostgreSQL version under {}", root.display()))?;
    Ok(root.join(newest.to_string()).join("bin"))
}
