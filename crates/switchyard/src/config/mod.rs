//! The configuration of a Switchyard node.
//!
//! Values come from, lowest precedence first:
//! 1. the defaults below;
//! 2. a TOML file: `switchyard.toml` in the working directory when present, or the file named
//!    by `--config FILE` (which must exist);
//! 3. `SWITCHYARD_*` environment variables, `__` separating nested keys
//!    (`SWITCHYARD_DATABASE__URL`); `SWITCHYARD_MASTER_KEY` is reserved and not read here;
//! 4. command-line flags (`serve --listen ADDR --database URL`).
//!
//! Every section refuses keys it does not know, so a typo is an error rather than a silently
//! ignored setting. [`Config`] is also plain data: tests build one in code from
//! `Config::default()` and its public fields.

mod auth;
mod load;
mod mask;
mod operational;
mod server;
#[cfg(test)]
mod tests;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use auth::{AuthConfig, JwtConfig, RateLimitConfig, RoleRateLimit};
pub use load::{ConfigError, DEFAULT_FILE, ENV_PREFIX, Overrides, RESERVED_ENV_VARS};
pub use mask::{MASK, redact_url};
pub use operational::OperationalConfig;
pub use server::{ServerConfig, TlsConfig};

/// The effective configuration of a node.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub security: SecurityConfig,
    pub auth: AuthConfig,
    pub rate_limit: RateLimitConfig,
    pub limits: LimitsConfig,
    pub ingest: IngestConfig,
    pub engine: EngineConfig,
    pub retention: RetentionConfig,
    pub operational: OperationalConfig,
    pub log: LogConfig,
}

/// `[database]`: the store every node of a deployment shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://FILE` (embedded default) or `postgres://USER:PASSWORD@HOST:PORT/DB`; may carry
    /// credentials, which are masked on print.
    pub url: String,
    /// SQLite: readers at once (one connection writes). PostgreSQL: the pool's size per node.
    pub max_connections: u32,
    /// PostgreSQL: connections kept open while idle.
    pub min_connections: u32,
    /// PostgreSQL: how long a query waits for a free pooled connection before it fails.
    pub acquire_timeout_ms: u64,
    /// PostgreSQL: the server cancels a statement running longer (`statement_timeout`); unset,
    /// the server's own setting applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement_timeout_ms: Option<u64>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://switchyard.db".to_owned(),
            max_connections: 8,
            min_connections: 0,
            acquire_timeout_ms: 30_000,
            statement_timeout_ms: None,
        }
    }
}

/// `[security]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Whether destinations may point at loopback, private and link-local addresses.
    pub allow_private_destinations: bool,
    /// The file holding the master key that seals secrets at rest (base64 of 32 bytes). Unset:
    /// beside a SQLite database file, named like it with `.key`. `SWITCHYARD_MASTER_KEY` wins
    /// over both. See `switchyard::secrets`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_key_file: Option<std::path::PathBuf>,
}

/// `[limits]`: sizes the API accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest payload of one event, in bytes.
    pub max_payload_bytes: usize,
    /// Largest request body, in bytes (413 above it).
    pub max_body_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self { max_payload_bytes: 256 * 1024, max_body_bytes: 1024 * 1024 }
    }
}

/// `[ingest]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Refuse events whose type has not been registered.
    pub require_registered_types: bool,
}

/// `[engine]`: the delivery workers of this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// The name this node's leases carry (`deliveries.lease_owner`). Unset: a fresh
    /// `node-<uuid>` at every start. Give each node its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Deliveries in flight on this node.
    pub concurrency: usize,
    /// Deliveries in flight on this node to any one destination, so one that hangs cannot
    /// hold every slot; the rest wait. Unset: a quarter of `concurrency`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight_per_destination: Option<usize>,
    /// How long a claimed delivery stays leased; a crashed node's work is retried after it.
    pub lease_ms: u64,
    /// Attempts of a delivery in a row that may end without an outcome (the node running it
    /// died) before it goes dead instead of being run again: a delivery that crashes whoever
    /// runs it cannot crash-loop the nodes.
    pub max_unfinished_attempts: u32,
    /// Deliveries claimed per round trip to the database.
    pub batch_size: u32,
    /// Deliveries this node's ingest may hold for its engine in memory (the fast path): they
    /// are written already leased to the node and run without a claim. What does not fit, and
    /// every delivery of an ordered subscription, goes through claims. 0 turns it off.
    pub fast_queue: usize,
    /// The longest the engine sleeps without a wake-up (a safety net; ingest wakes it).
    pub poll_interval_ms: u64,
    /// On SIGTERM, how long deliveries in flight may finish before their leases are handed back.
    pub shutdown_grace_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            node_id: None,
            concurrency: 512,
            max_in_flight_per_destination: None,
            lease_ms: 60_000,
            max_unfinished_attempts: 3,
            batch_size: 128,
            fast_queue: 4_096,
            poll_interval_ms: 1_000,
            shutdown_grace_ms: 30_000,
        }
    }
}

/// `[retention]`: how long finished work is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Succeeded deliveries, their attempts and finished events older than this are pruned.
    pub days: u32,
    /// Audit entries older than this are pruned.
    pub audit_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self { days: 30, audit_days: 365 }
    }
}

/// `[log]`: what is logged (to stderr) and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// An `EnvFilter` directive such as `info` or `info,switchyard_api=debug`; `RUST_LOG`
    /// overrides it.
    pub level: String,
    /// Where to export spans over OTLP/HTTP (protobuf), e.g.
    /// `http://127.0.0.1:4318/v1/traces`; needs a build with the `otlp` feature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::default(), level: "info".to_owned(), otlp_endpoint: None }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event, coloured when stderr is a terminal.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pretty => "pretty",
            Self::Json => "json",
        })
    }
}

impl Config {
    /// Checks what the types alone cannot; every problem found is reported, one per line.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut positive = |key: &str, value: u64| {
            if value == 0 {
                problems.push(format!("{key}: must be greater than 0"));
            }
        };
        positive("database.max_connections", u64::from(self.database.max_connections));
        positive("database.acquire_timeout_ms", self.database.acquire_timeout_ms);
        if let Some(timeout) = self.database.statement_timeout_ms {
            positive("database.statement_timeout_ms", timeout);
        }
        positive("limits.max_payload_bytes", self.limits.max_payload_bytes as u64);
        positive("limits.max_body_bytes", self.limits.max_body_bytes as u64);
        positive("engine.concurrency", self.engine.concurrency as u64);
        if let Some(limit) = self.engine.max_in_flight_per_destination {
            positive("engine.max_in_flight_per_destination", limit as u64);
        }
        positive("engine.lease_ms", self.engine.lease_ms);
        positive("engine.max_unfinished_attempts", u64::from(self.engine.max_unfinished_attempts));
        positive("engine.batch_size", u64::from(self.engine.batch_size));
        positive("engine.poll_interval_ms", self.engine.poll_interval_ms);
        positive("retention.days", u64::from(self.retention.days));
        positive("retention.audit_days", u64::from(self.retention.audit_days));
        let mut server_problems = Vec::new();
        server::validate(&self.server, &mut positive, &mut server_problems);
        problems.extend(server_problems);
        if self.database.url.trim().is_empty() {
            problems.push("database.url: must not be empty".to_owned());
        }
        if self.database.min_connections > self.database.max_connections {
            problems.push(format!(
                "database.min_connections: must not exceed database.max_connections ({})",
                self.database.max_connections
            ));
        }
        if let Some(node_id) = &self.engine.node_id
            && (node_id.is_empty()
                || node_id.len() > 128
                || !node_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)))
        {
            problems.push(
                "engine.node_id: 1 to 128 characters among letters, digits, `-`, `_`, `.` and `:`".to_owned(),
            );
        }
        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            problems.push(format!("log.level: `{}` is not a valid filter directive: {err}", self.log.level));
        }
        auth::validate(&self.auth, &self.rate_limit, &mut problems);
        self.operational.validate(&mut problems);
        if problems.is_empty() { Ok(()) } else { Err(ConfigError::invalid(problems)) }
    }

    /// The configuration as TOML, with every secret masked (`***`): what
    /// `serve --print-config` shows.
    pub fn to_masked_toml(&self) -> Result<String, toml::ser::Error> {
        let mut value = toml::Value::try_from(self)?;
        mask::mask_secrets(&mut value);
        toml::to_string_pretty(&value)
    }
}
