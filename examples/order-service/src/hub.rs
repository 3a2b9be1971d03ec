//! Switchyard as a child process on loopback, and the few REST calls that configure it.
//!
//! In production Switchyard runs on its own and is configured once, by an operator or a
//! deployment script, with the same calls as here (README's walkthrough shows them with curl).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// How long Switchyard may take to start, and to stop after SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The `switchyard` binary: `SWITCHYARD_BIN`, else the build beside this program's own
/// executable (`target/debug/` or `target/release/`).
pub fn find_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("SWITCHYARD_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("SWITCHYARD_BIN is {}, which is not a file", path.display());
        }
        return Ok(path);
    }
    let here = std::env::current_exe().context("finding this program's executable")?;
    let dir = here.parent().context("this program's executable has no directory")?;
    let candidates =
        [dir.join("switchyard"), dir.join("../debug/switchyard"), dir.join("../release/switchyard")];
    candidates.iter().find(|path| path.is_file()).cloned().with_context(|| {
        format!(
            "no switchyard binary beside {}: build it first (`cargo build -p switchyard`), run \
             `examples/order-service/run`, which does, or set SWITCHYARD_BIN",
            dir.display()
        )
    })
}

/// A running Switchyard, killed when dropped (a failure half-way leaves nothing behind).
pub struct Hub {
    child: Child,
    address: String,
    token: String,
    http: reqwest::Client,
}

impl Hub {
    /// Starts `binary` on a SQLite database in `data_dir` and a free loopback port; answers
    /// once it is ready.
    pub async fn start(binary: &Path, data_dir: &Path) -> anyhow::Result<Hub> {
        std::fs::create_dir_all(data_dir)?;
        let http = http_client()?;
        // `serve` prints the first admin token among its logs; asking for a key of our own
        // gives it on stdout alone.
        let output = command(binary, data_dir)
            .args(["keys", "create", "--role", "admin", "--name", "order-service-example"])
            .output()
            .with_context(|| format!("running {}", binary.display()))?;
        if !output.status.success() {
            bail!("`switchyard keys create` failed: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        let token = String::from_utf8(output.stdout)?.trim().to_owned();

        let address = format!("127.0.0.1:{}", free_port()?);
        let child = command(binary, data_dir)
            .args(["serve", "--listen", &address])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        // At once, before anything else can fail: from here on a failure stops the child.
        let mut hub = Hub { child, address: format!("http://{address}"), token, http };
        hub.wait_until_ready().await?;
        Ok(hub)
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("switchyard exited while starting ({status}); its log is above");
            }
            let ready = self.http.get(format!("{}/health/ready", self.address)).send().await;
            if ready.is_ok_and(|answer| answer.status().is_success()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("switchyard was not ready within {} s", START_TIMEOUT.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A destination at `url` and a subscription sending it the events `pattern` matches.
    pub async fn route(&self, name: &str, url: &str, pattern: &str) -> anyhow::Result<()> {
        let destination = self
            .post("/v1/destinations", json!({"name": name, "kind": "http", "config": {"url": url}}))
            .await?;
        let destination_id = destination["id"].as_str().context("the destination has no id")?;
        self.post(
            "/v1/subscriptions",
            json!({"name": name, "destination_id": destination_id, "event_types": [pattern]}),
        )
        .await?;
        Ok(())
    }

    /// An outbox source reading the `outbox` table of the database at `database_url`; answers
    /// its id. Its events are named `outbox:<id>` as their source.
    pub async fn relay_outbox(&self, name: &str, database_url: &str) -> anyhow::Result<String> {
        let source = self
            .post(
                "/v1/sources",
                json!({
                    "name": name,
                    "kind": "outbox",
                    "config": {
                        "database_url": database_url,
                        "table": "outbox",
                        // Delete each row once its event is stored; "mark" sets relayed_at.
                        "after_relay": "delete",
                        // SQLite cannot notify: Switchyard looks for new rows this often.
                        "poll_interval_ms": 200,
                    },
                }),
            )
            .await?;
        Ok(source["id"].as_str().context("the source has no id")?.to_owned())
    }

    /// What `GET /v1/status` says of source `id` (its reader's state and last error) and what
    /// blocks delivery: the first thing to read when an event does not arrive.
    pub async fn source_status(&self, id: &str) -> String {
        let status = match self.get("/v1/status").await {
            Ok(status) => status,
            Err(error) => return format!("(GET /v1/status failed: {error:#})"),
        };
        let source = status["sources"]
            .as_array()
            .and_then(|sources| sources.iter().find(|s| s["source_id"] == id))
            .cloned()
            .unwrap_or(Value::Null);
        json!({"pull": source["pull"], "blockers": status["blockers"]}).to_string()
    }

    /// Stops Switchyard as an operator would (SIGTERM: it finishes what is in flight).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.child.id())?)
            .context("the child has no valid pid")?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("switchyard exited with {status} after SIGTERM");
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("switchyard did not stop within {} s of SIGTERM", STOP_TIMEOUT.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let request = self.http.post(format!("{}{path}", self.address)).json(&body);
        self.call(path, request).await
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(path, self.http.get(format!("{}{path}", self.address))).await
    }

    /// Sends `request` with the admin token; answers the `data` of the answer's envelope, or
    /// fails with the error Switchyard gave.
    async fn call(&self, path: &str, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let answer = request.bearer_auth(&self.token).send().await.with_context(|| path.to_owned())?;
        let status = answer.status();
        let body: Value =
            answer.json().await.with_context(|| format!("{path}: an answer that is not JSON"))?;
        if !status.is_success() {
            bail!("{path} answered {status}: {}", body["error"]);
        }
        Ok(body["data"].clone())
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        // Does nothing after a clean `stop`: the child has exited and been waited for.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The client of the REST calls: plain HTTP on loopback, never through a proxy.
fn http_client() -> anyhow::Result<reqwest::Client> {
    // In this workspace reqwest is built with rustls but no crypto provider (Switchyard
    // installs ring at start-up), and refuses to build a client, even for plain HTTP, until
    // one is installed. A service using reqwest's default features does not need this line.
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build()?)
}

/// The command running `binary` on a database in `data_dir`, with the settings of this example.
fn command(binary: &Path, data_dir: &Path) -> Command {
    let mut command = Command::new(binary);
    // Switchyard reads every `SWITCHYARD_*` variable as configuration and refuses unknown
    // ones, `SWITCHYARD_BIN` among them; and settings of the caller's own Switchyard have no
    // business here. The child gets only the ones below.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SWITCHYARD_") {
            command.env_remove(name);
        }
    }
    command
        .current_dir(data_dir)
        .env("SWITCHYARD_DATABASE__URL", format!("sqlite://{}", data_dir.join("switchyard.db").display()))
        // The receiver listens on loopback, which Switchyard's SSRF guard refuses by default.
        .env("SWITCHYARD_SECURITY__ALLOW_PRIVATE_DESTINATIONS", "true")
        .env("SWITCHYARD_LOG__LEVEL", "warn")
        .env("NO_COLOR", "1");
    command
}

/// A port nothing listens on now (the OS picks it; Switchyard binds it a moment later).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
