//! What the shared repositories ([`crate::repo`]) need of PostgreSQL: everything on the one
//! pool, and `NOTIFY` to wake the other nodes.

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgQueryResult;
use sqlx::{PgConnection, Pool, Postgres, Transaction};
use switchyard_core::store::StoreResult;

use super::PgStore;
use crate::error::map_err;
use crate::repo::{Backend, Unwritten};
use crate::seal::Sealer;
use crate::sql::flow as q;
use crate::sql::retention;

impl Backend for PgStore {
    type Db = Postgres;

    const SELECT_FLOW_LOCKED: &'static str = q::SELECT_FLOW_FOR_UPDATE;

    const PRUNE_AUDIT_LOG: &'static str = retention::PRUNE_AUDIT_LOG_BY_ARRAY;
    const PRUNE_IDEMPOTENCY_KEYS: &'static str = retention::PRUNE_IDEMPOTENCY_KEYS_BY_CTID;
    const STREAM_EVENTS: &'static str = crate::sql::streams::PG_STREAM_EVENTS;
    const STREAM_HEAD_EVENTS: &'static str = crate::sql::streams::PG_STREAM_HEAD;
    const STREAM_DELIVERIES: &'static str = crate::sql::streams::PG_STREAM_DELIVERIES;
    const STREAM_HEAD_DELIVERIES: &'static str = crate::sql::streams::PG_STREAM_HEAD;

    fn reader(&self) -> &Pool<Postgres> {
        &self.pool
    }

    async fn writer(&self) -> StoreResult<PoolConnection<Postgres>> {
        self.pool.acquire().await.map_err(map_err)
    }

    fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    fn unwritten(&self) -> &Unwritten {
        &self.unwritten
    }

    async fn begin_read(&self) -> StoreResult<Transaction<'static, Postgres>> {
        PgStore::begin_read(self).await
    }

    async fn begin_write(&self) -> StoreResult<Transaction<'static, Postgres>> {
        PgStore::begin_write(self).await
    }

    async fn notify_work(conn: &mut PgConnection) -> StoreResult<()> {
        super::notify_work(conn).await
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    /// A transaction-scoped advisory lock, tried without waiting: the server releases it when
    /// the transaction ends or its connection is lost, so a node that dies mid-prune holds
    /// nothing, and no lease needs an expiry. Keyed by the schema too, so databases sharing one
    /// server in separate schemas (the tests' way) do not wait on each other.
    async fn take_prune_turn(conn: &mut PgConnection) -> StoreResult<bool> {
        sqlx::query_scalar(PRUNE_LOCK).fetch_one(conn).await.map_err(map_err)
    }
}

const PRUNE_LOCK: &str =
    "SELECT pg_try_advisory_xact_lock(hashtext('switchyard.prune'), hashtext(current_schema()))";
