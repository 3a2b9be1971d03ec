//! The PostgreSQL backend: any number of nodes on one database, through a pool per node.
//!
//! Unlike SQLite there is no single writer: transactions of many nodes run at once under
//! `READ COMMITTED`. What must not be done twice is guarded by row locks, never by a lock of
//! this process: the claim takes its rows with `FOR UPDATE SKIP LOCKED` (two claimers never
//! lease the same delivery and never wait for each other), flow control locks the
//! destination's `destination_flow` row for its read-change-write, and settling an attempt is
//! guarded by the lease. Writes that make work due (ingest, retry, replay, a resumed
//! destination) send a `NOTIFY` in their transaction; every node `LISTEN`s on a connection of
//! its own and wakes its engine ([`PgStore::watch_work`]).

/// The name of the channel of "work may be due" notifications, in the schema of the
/// connection: `switchyard_work.` and 32 hex digits of the SHA-256 of the schema's name, so
/// deployments in different schemas of one database do not wake each other, and a schema name
/// of any length (up to PostgreSQL's 63 bytes) gives a channel name within that limit. SHA-256
/// rather than MD5, which a server in FIPS mode refuses. Declared before the modules, for
/// `watch` to use.
macro_rules! work_channel {
    () => {
        "'switchyard_work.' || left(encode(sha256(convert_to(current_schema(), 'UTF8')), 'hex'), 32)"
    };
}

mod api_keys;
mod audit;
mod backend;
mod deliveries;
mod destinations;
mod event_types;
mod events;
mod flow;
mod group;
mod idempotency;
mod secrets;
mod settle;
mod sources;
mod subscriptions;
mod upkeep;
mod watch;

#[cfg(test)]
mod plans;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions as _, PgConnection, Postgres, Transaction};
use switchyard_core::store::{Store, StoreResult, WorkSignal, WorkWatch};

use crate::error::map_err;
use crate::seal::{MasterKeys, Sealer};
use crate::{PoolOptions, migrations};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// The PostgreSQL implementation of every store trait. Cheap to clone: clones share the pool.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// What the pool connects with, for the listener's connection of its own (boxed: it is
    /// large, and read once per watch).
    connect_options: Box<PgConnectOptions>,
    /// Seals secrets on their way in and opens them on their way out (see [`crate::seal`]).
    sealer: Sealer,
    /// Outcomes that changed nothing but a closed circuit's counts, not written yet.
    unwritten: flow::Unwritten,
    /// The queue of the ingest writers (group commit).
    ingest_group: group::IngestGroup,
    /// The queue of the settle task (group commit of attempts).
    settle_group: settle::SettleGroup,
}

impl PgStore {
    /// The node's one pool (the `LISTEN` connection is apart from it).
    pub fn pool_usage(&self) -> Vec<crate::PoolUsage> {
        vec![crate::PoolUsage {
            pool: "pool",
            size: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }]
    }

    /// Connects to the database at `url` (`postgres://…`) with a pool sized by `pool`; secrets
    /// are sealed under the current key of `keys` and opened with any of them. The URL's
    /// `options` parameter reaches the server (e.g. `options=-csearch_path%3Dswitchyard`).
    pub async fn connect(url: &str, pool: &PoolOptions, keys: &MasterKeys) -> StoreResult<Self> {
        let mut options = PgConnectOptions::from_str(url)
            .map_err(map_err)?
            .log_statements(log::LevelFilter::Trace)
            .log_slow_statements(log::LevelFilter::Warn, crate::SLOW_STATEMENT);
        if let Some(timeout) = pool.statement_timeout_ms {
            options = options.options([("statement_timeout", timeout)]);
        }
        let pg_pool = PgPoolOptions::new()
            .max_connections(pool.max_connections.max(1))
            .min_connections(pool.min_connections.min(pool.max_connections))
            .acquire_timeout(Duration::from_millis(pool.acquire_timeout_ms.max(1)))
            .connect_with(options.clone())
            .await
            .map_err(map_err)?;
        let unwritten = flow::Unwritten::default();
        Ok(Self {
            ingest_group: group::IngestGroup::start(pg_pool.clone()),
            settle_group: settle::SettleGroup::start(pg_pool.clone(), unwritten.clone()),
            pool: pg_pool,
            connect_options: Box::new(options),
            sealer: Sealer::new(keys),
            unwritten,
        })
    }

    pub async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.pool).await.map_err(migrations::run_error)
    }

    /// The embedded migrations the database has not applied (or applied differently).
    pub async fn pending_migrations(&self) -> StoreResult<Vec<String>> {
        let applied =
            sqlx::query_as::<_, (i64, Vec<u8>)>(crate::sql::APPLIED_MIGRATIONS).fetch_all(&self.pool).await;
        // A missing history table means nothing was applied yet.
        let applied = match applied {
            Ok(rows) => rows,
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => Vec::new(),
            Err(e) => return Err(map_err(e)),
        };
        Ok(migrations::pending(&MIGRATOR, &applied))
    }

    async fn begin_write(&self) -> StoreResult<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(map_err)
    }

    /// Starts a read transaction on one snapshot, so a page and its total agree.
    async fn begin_read(&self) -> StoreResult<Transaction<'static, Postgres>> {
        self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(map_err)
    }
}

/// Tells every node's listener that work may be due, when `tx` commits (nothing when it
/// rolls back).
async fn notify_work(conn: &mut PgConnection) -> StoreResult<()> {
    sqlx::query(concat!("SELECT pg_notify(", work_channel!(), ", '')"))
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(map_err)?;
        migrations::require_current(self.pending_migrations().await)
    }

    async fn watch_work(&self, signal: WorkSignal) -> StoreResult<Option<Box<dyn WorkWatch>>> {
        watch::start((*self.connect_options).clone(), signal)
            .await
            .map(|w| Some(Box::new(w) as Box<dyn WorkWatch>))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configured statement timeout reaches the server: a longer statement is cancelled.
    #[tokio::test]
    async fn statements_past_the_configured_timeout_are_cancelled() {
        let Some((conn, url)) = plans::admin().await else { return };
        drop(conn);
        let pool = PoolOptions {
            max_connections: 2,
            min_connections: 1,
            acquire_timeout_ms: 5_000,
            statement_timeout_ms: Some(500),
        };
        let store = PgStore::connect(&url, &pool, &MasterKeys::generated()).await.expect("connect");
        let quick: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&store.pool).await.expect("a quick one");
        assert_eq!(quick, 1);
        let slow = sqlx::query("SELECT pg_sleep(2)").execute(&store.pool).await.expect_err("cancelled");
        let code = slow.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("57014"), "{slow}");
        assert!(store.pool.size() >= 1, "min_connections are kept open");
    }
}
