//! The repositories both backends share: one body per operation, generic over the sqlx
//! database, run by [`Repo`] over a [`Backend`] that says where reads and writes go.
//!
//! Each backend implements [`Backend`] and forwards its store-trait methods here; what differs
//! between them (the single SQLite writer and its `BEGIN IMMEDIATE`, PostgreSQL's pool and
//! `NOTIFY`) stays behind the trait.

mod api_keys;
mod audit;
mod deliveries;
mod destinations;
mod event_types;
mod events;
mod flow;
mod idempotency;
mod page;
mod retention;
mod secrets;
mod sources;
mod streams;
mod subscriptions;

use std::future::Future;

use sqlx::pool::PoolConnection;
use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{Database, Encode, Pool, Transaction, Type};
use switchyard_core::page::ListRequest;
use switchyard_core::store::StoreResult;

pub(crate) use self::deliveries::{ClaimPlan, decode_sequenced, settle_to};
pub(crate) use self::events::{Fate, Written, written};
pub(crate) use self::flow::{
    Kept, Observed, TRIES, Taken, Unwritten, admission_on_read, attempt_destination, lost_race, observe,
    parse_policy,
};
use crate::seal::Sealer;
use crate::sql::Bind;

/// What the shared repositories need of a backend.
pub(crate) trait Backend: Sync {
    type Db: Database;

    /// Reads a destination's flow record, locked until the transaction ends.
    const SELECT_FLOW_LOCKED: &'static str;

    /// Retention's batch of audit entries and of `Idempotency-Key` records (`sql::retention`).
    const PRUNE_AUDIT_LOG: &'static str;
    const PRUNE_IDEMPOTENCY_KEYS: &'static str;

    /// The streams' reads (`sql::streams`): rows after a position in commit order, and the
    /// live end.
    const STREAM_EVENTS: &'static str;
    const STREAM_HEAD_EVENTS: &'static str;
    const STREAM_DELIVERIES: &'static str;
    const STREAM_HEAD_DELIVERIES: &'static str;

    /// Where single reads go.
    fn reader(&self) -> &Pool<Self::Db>;

    /// A connection for single writes. On SQLite it is the one write connection, which the
    /// group writer holds from group to group and gives back to a caller waiting here after
    /// its group (`sqlite/group/turn.rs`); on PostgreSQL, one of the pool's.
    fn writer(&self) -> impl Future<Output = StoreResult<PoolConnection<Self::Db>>> + Send;

    /// Seals secrets on their way in and opens them on their way out.
    fn sealer(&self) -> &Sealer;

    /// Flow-control outcomes this node holds, not written yet.
    fn unwritten(&self) -> &Unwritten;

    /// A read transaction on one snapshot, so a page and its total agree.
    fn begin_read(&self) -> impl Future<Output = StoreResult<Transaction<'static, Self::Db>>> + Send;

    /// A transaction for a read-check-write (SQLite: on the single writer, holding the write
    /// lock from `BEGIN IMMEDIATE`; PostgreSQL: a pool transaction).
    fn begin_write(&self) -> impl Future<Output = StoreResult<Transaction<'static, Self::Db>>> + Send;

    /// Tells every node that work may be due once `conn`'s transaction commits (and nothing
    /// when it rolls back).
    fn notify_work(conn: &mut Conn<Self>) -> impl Future<Output = StoreResult<()>> + Send;

    /// The rows a statement changed (sqlx has no trait for it).
    fn rows_affected(result: &<Self::Db as Database>::QueryResult) -> u64;

    /// Whether `conn`'s transaction may prune: true unless another node's prune is running,
    /// which keeps the turn until its transaction ends.
    fn take_prune_turn(conn: &mut Conn<Self>) -> impl Future<Output = StoreResult<bool>> + Send;
}

/// The database of backend `B`.
type Db<B> = <B as Backend>::Db;
/// A connection of backend `B`'s database (a transaction dereferences to one).
type Conn<B> = <Db<B> as Database>::Connection;
/// A row of backend `B`'s database.
type Row<B> = <Db<B> as Database>::Row;
/// The bound arguments of a query on backend `B`'s database.
type Args<B> = <Db<B> as Database>::Arguments;

/// The shared repositories, run on a backend: `Repo(store).create_subscription(..)`.
///
/// Each file's `impl` block names what it needs of the database (executors, the Rust types it
/// binds and decodes); both backends' databases provide all of it.
pub(crate) struct Repo<'a, B>(pub &'a B);

/// `LIMIT` and `OFFSET` of a numbered page; a cursor request on a collection without cursors
/// is served as its first page. A page holds at least one item so paging always advances.
fn page_bounds(request: ListRequest) -> (i64, i64) {
    let per_page = i64::from(request.per_page().max(1));
    let offset = match request {
        ListRequest::Page { .. } => i64::try_from(request.offset()).unwrap_or(i64::MAX),
        ListRequest::After { .. } => 0,
    };
    (per_page, offset)
}

/// A count from the database as the `u64` the listings report.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Binds the values of an assembled query (`sql::Assembled`) in order.
fn bind<'q, DB>(mut query: Query<'q, DB, DB::Arguments>, binds: Vec<Bind>) -> Query<'q, DB, DB::Arguments>
where
    DB: Database,
    String: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
{
    for bind in binds {
        query = match bind {
            Bind::Text(text) => query.bind(text),
            Bind::Int(n) => query.bind(n),
        };
    }
    query
}

/// [`bind`] for a query answering rows.
fn bind_as<'q, DB, O>(
    mut query: QueryAs<'q, DB, O, DB::Arguments>,
    binds: Vec<Bind>,
) -> QueryAs<'q, DB, O, DB::Arguments>
where
    DB: Database,
    String: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
{
    for bind in binds {
        query = match bind {
            Bind::Text(text) => query.bind(text),
            Bind::Int(n) => query.bind(n),
        };
    }
    query
}

/// [`bind_as`] for a query of one column.
fn bind_scalar<'q, DB, O>(
    mut query: QueryScalar<'q, DB, O, DB::Arguments>,
    binds: Vec<Bind>,
) -> QueryScalar<'q, DB, O, DB::Arguments>
where
    DB: Database,
    String: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
{
    for bind in binds {
        query = match bind {
            Bind::Text(text) => query.bind(text),
            Bind::Int(n) => query.bind(n),
        };
    }
    query
}
