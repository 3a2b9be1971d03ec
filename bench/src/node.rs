//! The server under test: the real `switchyard` binary as a child process on a fresh SQLite
//! file in a temporary directory, or on a fresh schema of a PostgreSQL database, set up for
//! load (no API rate limit, loopback sinks allowed).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::Method;
use serde_json::{Value, json};

use crate::cpu::MachineTicks;
use crate::load::Connection;
use crate::report::Cpu;

/// Where a measured phase of the server began ([`Node::start_measuring`]).
pub struct Measuring {
    server: Duration,
    machine: MachineTicks,
}

pub struct Node {
    child: Child,
    pub addr: SocketAddr,
    pub token: String,
    _dir: tempfile::TempDir,
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The schema a PostgreSQL run uses, dropped and made anew for each server.
pub const POSTGRES_SCHEMA: &str = "switchyard_bench";

/// Where the server under test keeps its data.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A new SQLite file in the server's temporary directory.
    Sqlite,
    /// The schema [`POSTGRES_SCHEMA`] of the database at this URL, emptied first.
    Postgres(String),
}

impl Backend {
    /// The server's `database.url` and the environment it needs, ready for a fresh start.
    pub(crate) async fn prepare(&self, dir: &Path) -> anyhow::Result<(String, Vec<(&'static str, String)>)> {
        match self {
            Backend::Sqlite => Ok((format!("sqlite://{}", dir.join("switchyard.db").display()), Vec::new())),
            Backend::Postgres(url) => {
                let pool =
                    sqlx::PgPool::connect(url).await.with_context(|| format!("connecting to {url}"))?;
                for statement in [
                    format!("DROP SCHEMA IF EXISTS {POSTGRES_SCHEMA} CASCADE"),
                    format!("CREATE SCHEMA {POSTGRES_SCHEMA}"),
                ] {
                    sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&pool).await?;
                }
                pool.close().await;
                let separator = if url.contains('?') { '&' } else { '?' };
                let url = format!("{url}{separator}options=-csearch_path%3D{POSTGRES_SCHEMA}");
                // A PostgreSQL database keeps no key file beside it.
                let key: [u8; 32] = rand::random();
                let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key);
                Ok((url, vec![("SWITCHYARD_MASTER_KEY", key)]))
            }
        }
    }
}

pub(crate) fn command(
    binary: &Path,
    database_url: &str,
    env: &[(&'static str, String)],
    dir: &Path,
) -> Command {
    let mut command = Command::new(binary);
    command
        .current_dir(dir)
        .env("SWITCHYARD_DATABASE__URL", database_url)
        .envs(env.iter().map(|(name, value)| (name, value)))
        .env("SWITCHYARD_RATE_LIMIT__PER_SECOND", "0")
        .env("SWITCHYARD_SECURITY__ALLOW_PRIVATE_DESTINATIONS", "true")
        .env("SWITCHYARD_LOG__LEVEL", "warn")
        .env("NO_COLOR", "1");
    command
}

/// A new admin key of the server on `database_url` (migrated first if need be), made with the
/// CLI as an operator would, without a running server.
pub(crate) fn admin_token(
    binary: &Path,
    database_url: &str,
    env: &[(&'static str, String)],
    dir: &Path,
) -> anyhow::Result<String> {
    let output = command(binary, database_url, env, dir)
        .args(["keys", "create", "--role", "admin", "--name", "bench"])
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    if !output.status.success() {
        bail!("keys create failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// Waits until the server `child` listening on `addr` answers that it is ready.
pub(crate) async fn wait_ready(child: &mut Child, addr: SocketAddr) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("switchyard exited during startup: {status}");
        }
        if let Ok(mut connection) = Connection::open(addr).await
            && let Ok((status, _)) = connection.send(Method::GET, "/health/ready", None, Bytes::new()).await
            && status.is_success()
        {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("switchyard did not become ready within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One API call to the server on `addr` with `token`; answers the `data` of the envelope.
pub(crate) async fn call(
    addr: SocketAddr,
    token: &str,
    method: Method,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let mut connection = Connection::open(addr).await?;
    let body = if body.is_null() { Bytes::new() } else { Bytes::from(serde_json::to_vec(&body)?) };
    let (status, answer) = connection.send(method, path, Some(token), body).await?;
    if !status.is_success() {
        bail!("{path}: {status}: {}", String::from_utf8_lossy(&answer));
    }
    if answer.is_empty() {
        return Ok(Value::Null);
    }
    let envelope: Value = serde_json::from_slice(&answer)?;
    Ok(envelope["data"].clone())
}

/// [`Node::subscribe_with`] on the server on `addr`, with `token`. `destination` holds the
/// destination's `kind` and `config`, and any other field of its own (e.g. `retry`).
pub(crate) async fn subscribe_with(
    addr: SocketAddr,
    token: &str,
    name: &str,
    destination: Value,
    pattern: &str,
) -> anyhow::Result<String> {
    let mut body = json!({"name": name});
    if let (Some(body), Some(more)) = (body.as_object_mut(), destination.as_object()) {
        body.extend(more.clone());
    }
    let destination = call(addr, token, Method::POST, "/v1/destinations", body).await?;
    let id = destination["id"].as_str().context("a destination id")?.to_owned();
    call(
        addr,
        token,
        Method::POST,
        "/v1/subscriptions",
        json!({"name": name, "destination_id": id, "event_types": [pattern]}),
    )
    .await?;
    Ok(id)
}

impl Node {
    /// Starts `binary` on a new database of `backend` and waits until it is ready.
    pub async fn start(binary: &Path, backend: &Backend) -> anyhow::Result<Node> {
        let dir = tempfile::tempdir()?;
        let (database_url, env) = backend.prepare(dir.path()).await?;
        let token = admin_token(binary, &database_url, &env, dir.path())?;
        let port = free_port()?;
        let mut child = command(binary, &database_url, &env, dir.path())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if let Err(error) = wait_ready(&mut child, addr).await {
            let _ = child.kill();
            let _ = child.wait();
            return Err(error);
        }
        Ok(Node { child, addr, token, _dir: dir })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One API call; answers the `data` of the envelope.
    pub async fn call(&self, method: Method, path: &str, body: Value) -> anyhow::Result<Value> {
        call(self.addr, &self.token, method, path, body).await
    }

    /// A destination at `url` and a subscription of it to every event; answers the destination id.
    pub async fn subscribe(&self, name: &str, url: &str) -> anyhow::Result<String> {
        self.subscribe_to(name, url, "#").await
    }

    /// [`Node::subscribe`] to the events that `pattern` matches.
    pub async fn subscribe_to(&self, name: &str, url: &str, pattern: &str) -> anyhow::Result<String> {
        self.subscribe_with(name, json!({"kind": "http", "config": {"url": url}}), pattern).await
    }

    /// A destination of `kind_and_config` (`{"kind", "config"}`) and a subscription of it to
    /// the events that `pattern` matches; answers the destination id.
    pub async fn subscribe_with(
        &self,
        name: &str,
        kind_and_config: Value,
        pattern: &str,
    ) -> anyhow::Result<String> {
        subscribe_with(self.addr, &self.token, name, kind_and_config, pattern).await
    }

    /// The process's resident set now and at its peak, in bytes.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        Memory::of(self.pid())
    }

    /// The process's user plus system CPU time so far.
    pub fn cpu(&self) -> anyhow::Result<Duration> {
        crate::cpu::of_process(self.pid())
    }

    /// Starts a measured phase: the process's CPU time and the machine's, now.
    pub fn start_measuring(&self) -> anyhow::Result<Measuring> {
        Ok(Measuring { server: self.cpu()?, machine: MachineTicks::now()? })
    }

    /// What the process and the machine used since `phase` began, with `bare_server`, the
    /// bare server's CPU time under the same load, for the report.
    pub fn measured_cpu(&self, phase: &Measuring, bare_server: Duration) -> anyhow::Result<Cpu> {
        Ok(Cpu {
            server: self.cpu()?.saturating_sub(phase.server),
            bare_server,
            machine_idle: phase.machine.idle_share_until(MachineTicks::now()?),
        })
    }

    /// Samples the resident set every `every` until the returned sampler is stopped.
    pub fn sample_memory(&self, every: Duration) -> Sampler {
        let pid = self.pid();
        let running = Arc::new(AtomicBool::new(true));
        let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = {
            let (running, samples) = (Arc::clone(&running), Arc::clone(&samples));
            tokio::spawn(async move {
                while running.load(Ordering::Relaxed) {
                    if let Ok(memory) = Memory::of(pid) {
                        samples.lock().expect("not poisoned").push(memory.rss);
                    }
                    tokio::time::sleep(every).await;
                }
            })
        };
        Sampler { running, samples, task }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub rss: u64,
    pub peak: u64,
}

impl Memory {
    fn of(pid: u32) -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status.lines().find(|l| l.starts_with(name)).with_context(|| format!("no {name}"))?;
            let kib: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse()?;
            Ok(kib * 1024)
        };
        Ok(Memory { rss: field("VmRSS:")?, peak: field("VmHWM:")? })
    }
}

pub struct Sampler {
    running: Arc<AtomicBool>,
    samples: Arc<std::sync::Mutex<Vec<u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Stops sampling; answers the resident set samples in order.
    pub async fn stop(self) -> Vec<u64> {
        self.running.store(false, Ordering::Relaxed);
        let _ = self.task.await;
        std::mem::take(&mut *self.samples.lock().expect("not poisoned"))
    }
}

/// The binary the harness drives: `--binary`, or the release build next to this executable.
pub fn default_binary() -> PathBuf {
    let here = std::env::current_exe().unwrap_or_default();
    here.with_file_name("switchyard")
}
