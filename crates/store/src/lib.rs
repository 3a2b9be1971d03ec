//! The repositories of Switchyard: implementations of the `switchyard_core::store` traits.
//! SQLite is the embedded default; PostgreSQL serves any number of nodes on one database. Both
//! run the query text in [`sql`] and decode rows the same way ([`rows`]).
//!
//! The backend is chosen once, from the database URL, by [`connect`]; everything above this
//! crate holds an `Arc<dyn Store>` and never learns which backend is behind it.
//!
//! Secrets are sealed here, at the boundary: the store writes them sealed under a master key
//! and opens them on read, so the layers above see plaintext in memory and the database never
//! holds them in clear (see [`seal`] for the format).

mod error;
mod fresh;
mod gather;
mod migrations;
mod postgres;
mod repo;
mod rows;
pub mod seal;
mod sql;
mod sqlite;

use std::sync::Arc;

use switchyard_core::store::{Store, StoreError};

pub use error::BackendError;
pub use postgres::PgStore;
pub use seal::{KeyError, KeyId, MasterKey, MasterKeys, Reseal, SealError, SecretInventory};
pub use sqlite::SqliteStore;

/// Where the database is, how its connections are pooled, and the master keys its secrets are
/// sealed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseOptions {
    /// `sqlite://PATH` (the file is created when missing), `sqlite::memory:`, or
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?options=-csearch_path%3DSCHEMA]`.
    pub url: String,
    /// SQLite: the size of the read pool (writes always go through one connection).
    /// PostgreSQL: the size of the pool.
    pub max_connections: u32,
    /// PostgreSQL only: connections kept open when idle.
    pub min_connections: u32,
    /// PostgreSQL only: how long a query waits for a free connection before failing.
    pub acquire_timeout_ms: u64,
    /// PostgreSQL only: the server cancels a statement running longer (`statement_timeout`).
    pub statement_timeout_ms: Option<u64>,
    /// Seal with the current key, open with any. The default is a fresh random key, which
    /// suits tests and in-memory databases only: a database whose secrets must outlive the
    /// process needs its key kept (the binary loads it from the environment or a key file).
    pub master_keys: MasterKeys,
}

impl Default for DatabaseOptions {
    fn default() -> Self {
        Self {
            url: "sqlite://switchyard.db".to_owned(),
            max_connections: 8,
            min_connections: 0,
            acquire_timeout_ms: 30_000,
            statement_timeout_ms: None,
            master_keys: MasterKeys::generated(),
        }
    }
}

/// How a PostgreSQL pool is sized and bounded: the pool fields of [`DatabaseOptions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    pub max_connections: u32,
    pub min_connections: u32,
    pub acquire_timeout_ms: u64,
    pub statement_timeout_ms: Option<u64>,
}

impl DatabaseOptions {
    pub fn pool(&self) -> PoolOptions {
        PoolOptions {
            max_connections: self.max_connections,
            min_connections: self.min_connections,
            acquire_timeout_ms: self.acquire_timeout_ms,
            statement_timeout_ms: self.statement_timeout_ms,
        }
    }
}

/// Statements slower than this are logged at `warn`, on either backend.
pub(crate) const SLOW_STATEMENT: std::time::Duration = std::time::Duration::from_millis(200);

/// Usage of one connection pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUsage {
    /// `writer` or `reader` on SQLite, `pool` on PostgreSQL.
    pub pool: &'static str,
    /// Open connections.
    pub size: u32,
    /// Open connections not lent out.
    pub idle: u32,
    /// The most connections the pool opens.
    pub max: u32,
}

/// A connected database of one of the supported backends.
#[derive(Debug, Clone)]
pub enum Database {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Opens the database named by `options.url`, choosing the backend by the URL's scheme. Does
/// not migrate: `switchyard migrate` may run with other rights than `serve`.
pub async fn connect(options: &DatabaseOptions) -> Result<Database, StoreError> {
    let url = options.url.trim();
    if url.starts_with("sqlite:") {
        return SqliteStore::connect(url, options.max_connections, &options.master_keys)
            .await
            .map(Database::Sqlite);
    }
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        return PgStore::connect(url, &options.pool(), &options.master_keys).await.map(Database::Postgres);
    }
    // Only the scheme is echoed: the rest of a URL may hold a password.
    let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
    Err(BackendError::UnsupportedScheme(scheme.to_owned()).into())
}

impl Database {
    /// Applies the embedded migrations that are not applied yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(store) => store.migrate().await,
            Self::Postgres(store) => store.migrate().await,
        }
    }

    /// The embedded migrations the database lacks (or holds in another form), described; empty
    /// when the schema is current. Reads only, so a role without DDL rights may ask.
    pub async fn pending_migrations(&self) -> Result<Vec<String>, StoreError> {
        match self {
            Self::Sqlite(store) => store.pending_migrations().await,
            Self::Postgres(store) => store.pending_migrations().await,
        }
    }

    /// Migrates only when a migration is pending, so a node whose role may not change the
    /// schema starts on a current one; answers how many were pending.
    pub async fn migrate_if_pending(&self) -> Result<usize, StoreError> {
        let pending = self.pending_migrations().await?;
        if !pending.is_empty() {
            self.migrate().await?;
        }
        Ok(pending.len())
    }

    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(store) => Arc::new(store.clone()),
            Self::Postgres(store) => Arc::new(store.clone()),
        }
    }

    /// How the stored secrets are kept: in clear (written before sealing existed) or under
    /// which master key.
    pub async fn secret_inventory(&self) -> Result<SecretInventory, StoreError> {
        match self {
            Self::Sqlite(store) => store.secret_inventory().await,
            Self::Postgres(store) => store.secret_inventory().await,
        }
    }

    /// Seals the secrets `which` covers under the current master key, in one transaction;
    /// answers how many it sealed.
    pub async fn reseal(&self, which: Reseal) -> Result<u64, StoreError> {
        match self {
            Self::Sqlite(store) => store.reseal(which).await,
            Self::Postgres(store) => store.reseal(which).await,
        }
    }

    /// Usage of each connection pool now (for the metrics).
    pub fn pool_usage(&self) -> Vec<PoolUsage> {
        match self {
            Self::Sqlite(store) => store.pool_usage(),
            Self::Postgres(store) => store.pool_usage(),
        }
    }

    /// `sqlite` or `postgres`, as `Store::backend` answers.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}
