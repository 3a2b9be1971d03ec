//! The `outbox` source kind: the hub reads an application's transactional outbox table
//! (PostgreSQL or SQLite; the `switchyard-outbox` crate writes it) in order, in batches, and
//! deletes or marks each row once its event is committed. Rows that are not events stay in the
//! table and are read past. On PostgreSQL the table's trigger wakes the reader at once
//! (`NOTIFY switchyard_outbox`); the poll interval is the safety net.
//!
//! - `config.rs`: the configuration, read strictly, its names checked (they are spliced into
//!   SQL), the password moved out of `database_url`.
//! - `sql.rs`: the statements, written once for both dialects.
//! - `database.rs`: the pool, the table's columns, reading, relaying, counting.
//! - `consumer.rs`: the [`Consumer`]; `wake.rs`: PostgreSQL's notifications.

mod config;
mod consumer;
mod database;
mod sql;
mod wake;

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use switchyard_core::ValidationError;
use switchyard_core::source::Source;
use switchyard_core::source::pull::{Consumer, PullError, Puller};
use switchyard_core::transport::ValidatedConfig;

pub use config::{AfterRelay, MAX_BATCH_SIZE, OutboxColumns, OutboxConfig, POLL_INTERVAL_MS, SECRET_PATHS};
pub use consumer::{MAX_HELD, OutboxConsumer};
pub use wake::CHANNEL;

use crate::config_io;

/// How long `validate` waits for the database to answer.
pub const VALIDATE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct OutboxPuller;

impl OutboxPuller {
    pub fn new() -> Self {
        Self
    }
}

#[async_trait]
impl Puller for OutboxPuller {
    async fn validate(&self, config: Value) -> Result<ValidatedConfig, ValidationError> {
        let config = OutboxConfig::parse(config)?;
        check_table(&config).await?;
        config_io::split(&config, &SECRET_PATHS)
    }

    async fn connect(&self, source: &Source) -> Result<Box<dyn Consumer>, PullError> {
        let config = OutboxConfig::stored(source.full_config()).map_err(PullError::new)?;
        Ok(Box::new(OutboxConsumer::connect(config).await?))
    }
}

/// Reaches the database of `config` and checks that its table has the columns named, each
/// failure under its field (`config.database_url`, `config.table`, `config.columns.id`).
async fn check_table(config: &OutboxConfig) -> Result<(), ValidationError> {
    let unreachable = |reason: String| ValidationError::single("config.database_url", reason);
    let target = config.target().map_err(unreachable)?;
    if let Some(file) = target.sqlite_file()
        && !file.is_file()
    {
        return Err(unreachable(format!(
            "names no existing SQLite file ({} was not found; the outbox source never creates one)",
            file.display()
        )));
    }
    let inspected = tokio::time::timeout(VALIDATE_TIMEOUT, database::inspect(&target, &config.table)).await;
    let shape = match inspected {
        Ok(Ok(shape)) => shape,
        Ok(Err(error)) => {
            let reason = format!("could not be reached: {error}");
            return Err(unreachable(consumer::scrub(reason, config.password.as_deref())));
        }
        Err(_) => {
            return Err(unreachable(format!("did not answer within {} s", VALIDATE_TIMEOUT.as_secs())));
        }
    };
    shape.check(config)
}
