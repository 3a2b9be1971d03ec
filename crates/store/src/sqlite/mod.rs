//! The SQLite backend: one file in WAL mode, written through a single connection and read
//! through a pool.
//!
//! SQLite allows one writer at a time. Funnelling every write through a pool of one
//! connection queues writers in the process instead of letting them collide on the file lock
//! (`SQLITE_BUSY`), and `BEGIN IMMEDIATE` takes the write lock up front so a transaction that
//! reads before it writes cannot be invalidated by another process's commit in between.
//! Readers never block the writer in WAL mode, so they get a pool of their own.

mod abandoned;
mod api_keys;
mod audit;
mod backend;
mod deliveries;
mod destinations;
mod direct;
mod event_types;
mod events;
mod flow;
mod group;
mod idempotency;
mod reads;
mod secrets;
mod sources;
mod subscriptions;
#[cfg(test)]
mod upgrades;
mod upkeep;
mod writer_health;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::ConnectOptions as _;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Sqlite, Transaction};
use switchyard_core::store::{Store, StoreResult};

use crate::error::{BackendError, map_err};
use crate::seal::{MasterKeys, Sealer};
use crate::sql;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// What every connection is set to, sqlx's and the group writer's own (`group/own.rs`):
/// every commit waits for the disk, foreign keys hold, and temporary files stay in memory
/// (the group writer runs each call inside a savepoint, whose sub-journal is a temporary file:
/// on disk, every page a call first touches was one more `pwrite`). A commit that leaves the
/// WAL past 4 000 pages (16 MiB) checkpoints it, not past SQLite's 1 000: a page that many
/// groups rewrite (the tail of a table or index) is copied into the database once per
/// checkpoint, so fewer checkpoints copy less (the store's CPU per event −6 to −13 %, in
/// docs/benchmarks.md). A crash leaves at most that much WAL to read again on the next open,
/// a few tens of milliseconds.
const CONNECTION_PRAGMAS: [(&str, &str); 4] = [
    ("synchronous", "FULL"),
    ("foreign_keys", "ON"),
    ("temp_store", "memory"),
    ("wal_autocheckpoint", "4000"),
];

/// The SQLite implementation of every store trait. Cheap to clone: clones share the pools.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Seals secrets on their way in and opens them on their way out (see [`crate::seal`]).
    sealer: Sealer,
    /// Outcomes not written yet, and records as last decoded.
    flows: flow::Flows,
    /// Ingest's writes, committed in groups on the writer connection.
    group: group::GroupWriter,
    /// The delivery path's point reads, on connections of the store's own; none for an
    /// in-memory database, which no other connection can open.
    direct: Option<Arc<reads::DirectReads>>,
}

impl SqliteStore {
    /// Usage of the writer and reader pools now.
    pub fn pool_usage(&self) -> Vec<crate::PoolUsage> {
        let usage = |pool: &'static str, of: &SqlitePool| crate::PoolUsage {
            pool,
            size: of.size(),
            idle: u32::try_from(of.num_idle()).unwrap_or(u32::MAX),
            max: of.options().get_max_connections(),
        };
        vec![usage("writer", &self.writer), usage("reader", &self.reader)]
    }
}

impl SqliteStore {
    /// Opens (creating when missing) the database at `url` (`sqlite://PATH`, `sqlite:PATH` or
    /// `sqlite::memory:`), with a read pool of `max_connections`; secrets are sealed under the
    /// current key of `keys` and opened with any of them.
    pub async fn connect(url: &str, max_connections: u32, keys: &MasterKeys) -> StoreResult<Self> {
        let sealer = Sealer::new(keys);
        let options = SqliteConnectOptions::from_str(url)
            .map_err(map_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT)
            .log_statements(log::LevelFilter::Trace)
            .log_slow_statements(log::LevelFilter::Warn, crate::SLOW_STATEMENT);
        let options =
            CONNECTION_PRAGMAS.iter().fold(options, |options, (name, value)| options.pragma(*name, *value));

        if url.contains(":memory:") || url.contains("mode=memory") {
            // An in-memory database lives only as long as a connection to it and cannot be
            // shared between pools without locking errors: one long-lived connection does all.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .after_release(abandoned::end_abandoned)
                .connect_with(options)
                .await
                .map_err(map_err)?;
            let group = group::GroupWriter::start(pool.clone(), group::Writes::Borrowed);
            return Ok(Self {
                writer: pool.clone(),
                reader: pool,
                sealer,
                flows: Default::default(),
                group,
                direct: None,
            });
        }

        let path = options.get_filename().to_owned();
        let direct = Some(Arc::new(reads::DirectReads::new(path.clone())));
        let writes = group::Writes::own(path, BUSY_TIMEOUT);
        // The writer connects first so the file exists and is in WAL mode before any reader.
        // The group writer holds its connection while it writes groups (`group/turn.rs`): no
        // test of the connection on every acquire.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .after_release(abandoned::end_abandoned)
            .connect_with(options.clone())
            .await
            .map_err(map_err)?;
        // `query_only` makes a write that strays onto the read pool fail loudly instead of
        // racing the writer for the lock.
        let reader = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect_with(options.pragma("query_only", "ON"))
            .await
            .map_err(map_err)?;
        let group = group::GroupWriter::start(writer.clone(), writes);
        Ok(Self { writer, reader, sealer, flows: Default::default(), group, direct })
    }

    pub async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.writer).await.map_err(crate::migrations::run_error)
    }

    /// The embedded migrations the database has not applied (or applied differently).
    pub async fn pending_migrations(&self) -> StoreResult<Vec<String>> {
        let applied =
            sqlx::query_as::<_, (i64, Vec<u8>)>(sql::APPLIED_MIGRATIONS).fetch_all(&self.reader).await;
        let applied = match applied {
            Ok(rows) => rows,
            // A missing history table means nothing was applied yet.
            Err(sqlx::Error::Database(db)) if db.message().contains("no such table") => Vec::new(),
            Err(e) => {
                return Err(BackendError::SchemaNotCurrent(format!(
                    "cannot read the migration history: {e}"
                ))
                .into());
            }
        };
        Ok(crate::migrations::pending(&MIGRATOR, &applied))
    }

    /// Caps the database at `pages` pages on the write connection (`PRAGMA max_page_count`,
    /// which holds per connection), so that a write needing more fails with `SQLITE_FULL` as on
    /// a full disk; answers the cap in force, which SQLite keeps at least at the pages in use.
    /// For tests of running out of space; nothing else calls it.
    #[doc(hidden)]
    pub async fn cap_writer_pages(&self, pages: u32) -> StoreResult<u32> {
        let pragma = format!("PRAGMA max_page_count = {pages}");
        self.group.cap_pages(pages).await?;
        sqlx::query_scalar(sqlx::AssertSqlSafe(pragma)).fetch_one(&self.writer).await.map_err(map_err)
    }

    /// Runs `read` on a read connection of the store's own ([`reads`]), or answers
    /// [`reads::Direct::Busy`] when there is none or it would wait: read through sqlx then.
    fn read_directly<T>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> reads::Direct<T> {
        match &self.direct {
            Some(direct) => direct.read(read),
            None => reads::Direct::Busy,
        }
    }

    /// The row that `sql` finds by its one parameter `key`, read as [`Self::read_directly`] does.
    fn read_row<R>(
        &self,
        sql: &str,
        key: &str,
        decode: fn(&rusqlite::Row<'_>) -> rusqlite::Result<R>,
    ) -> reads::Direct<Option<R>> {
        use rusqlite::OptionalExtension as _;
        self.read_directly(|conn| conn.prepare_cached(sql)?.query_row([key], decode).optional())
    }

    /// Starts a write transaction holding the database's write lock from its first statement.
    async fn begin_write(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        let _waiting = self.group.want_turn();
        self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)
    }

    /// Starts a read transaction, so a page and its total come from one snapshot.
    async fn begin_read(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        self.reader.begin().await.map_err(map_err)
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await.map_err(map_err)?;
        crate::migrations::require_current(self.pending_migrations().await)?;
        self.group.ready().await
    }
}
