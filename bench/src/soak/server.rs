//! A `switchyard serve` process that the soak kills and starts again on the same database and
//! address, its log appended to one file across restarts.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use anyhow::Context;

use crate::node;

/// Settings every soak server runs with on top of the harness's (see [`node::command`]).
pub fn soak_env() -> Vec<(&'static str, String)> {
    vec![
        // A delivery leased by a killed node goes again after this: the default minute would
        // make each of the soak's kills a minute of waiting. The sink answers at once, so no
        // live delivery outlasts its lease.
        ("SWITCHYARD_ENGINE__LEASE_MS", LEASE_MS.to_string()),
    ]
}

/// The lease of the soak's servers, in milliseconds.
pub const LEASE_MS: u64 = 3_000;

pub struct Server {
    binary: PathBuf,
    database_url: String,
    env: Vec<(&'static str, String)>,
    dir: PathBuf,
    log: PathBuf,
    pub addr: SocketAddr,
    child: Option<Child>,
}

impl Server {
    /// A server of `binary` on `database_url`, run in `dir`, logging to `log`; not started.
    pub fn new(
        binary: &Path,
        database_url: &str,
        env: Vec<(&'static str, String)>,
        dir: &Path,
        log: &Path,
    ) -> anyhow::Result<Server> {
        Ok(Server {
            binary: binary.to_owned(),
            database_url: database_url.to_owned(),
            env,
            dir: dir.to_owned(),
            log: log.to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], node::free_port()?)),
            child: None,
        })
    }

    /// A new admin key of this server's database.
    pub fn admin_token(&self) -> anyhow::Result<String> {
        node::admin_token(&self.binary, &self.database_url, &self.env, &self.dir)
    }

    /// Starts the process and waits until it is ready.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let child = node::command(&self.binary, &self.database_url, &self.env, &self.dir)
            .args(["serve", "--listen", &self.addr.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("running {}", self.binary.display()))?;
        let child = self.child.insert(child);
        node::wait_ready(child, self.addr)
            .await
            .with_context(|| format!("{} (its log: {})", self.addr, self.log.display()))
    }

    /// `kill -9`: no shutdown of any kind.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Whether the process started last is still running (it never exited by itself).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
