//! What the shared repositories ([`crate::repo`]) need of SQLite: reads on the read pool,
//! writes on the single writer, write transactions holding the write lock from the start.

use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqliteQueryResult;
use sqlx::{Pool, Sqlite, SqliteConnection, Transaction};
use switchyard_core::store::StoreResult;

use super::SqliteStore;
use crate::error::map_err;
use crate::repo::{Backend, Unwritten};
use crate::seal::Sealer;
use crate::sql::flow as q;
use crate::sql::retention;

impl Backend for SqliteStore {
    type Db = Sqlite;

    /// The writer's `BEGIN IMMEDIATE` holds the database: a plain read is locked already.
    const SELECT_FLOW_LOCKED: &'static str = q::SELECT_FLOW;

    const PRUNE_AUDIT_LOG: &'static str = retention::PRUNE_AUDIT_LOG;
    const PRUNE_IDEMPOTENCY_KEYS: &'static str = retention::PRUNE_IDEMPOTENCY_KEYS;
    const STREAM_EVENTS: &'static str = crate::sql::streams::SQLITE_STREAM_EVENTS;
    const STREAM_HEAD_EVENTS: &'static str = crate::sql::streams::SQLITE_STREAM_HEAD_EVENTS;
    const STREAM_DELIVERIES: &'static str = crate::sql::streams::SQLITE_STREAM_DELIVERIES;
    const STREAM_HEAD_DELIVERIES: &'static str = crate::sql::streams::SQLITE_STREAM_HEAD_DELIVERIES;

    fn reader(&self) -> &Pool<Sqlite> {
        &self.reader
    }

    /// Asks the group writer for its turn while it waits (`group/turn.rs`).
    async fn writer(&self) -> StoreResult<PoolConnection<Sqlite>> {
        let _waiting = self.group.want_turn();
        self.writer.acquire().await.map_err(map_err)
    }

    fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    fn unwritten(&self) -> &Unwritten {
        &self.flows.unwritten
    }

    async fn begin_read(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        SqliteStore::begin_read(self).await
    }

    async fn begin_write(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        SqliteStore::begin_write(self).await
    }

    /// Nothing to send: SQLite serves one node, whose engine is woken in-process by whoever
    /// made work due (`Waker::wake`).
    async fn notify_work(_conn: &mut SqliteConnection) -> StoreResult<()> {
        Ok(())
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    /// Always: the write transaction holds the database, and one node uses it.
    async fn take_prune_turn(_conn: &mut SqliteConnection) -> StoreResult<bool> {
        Ok(true)
    }
}
