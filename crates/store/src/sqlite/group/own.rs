//! The group writer's own connection to a database file (`Writes::Own`; see the parent
//! module): opened with sqlx's settings, `BEGIN IMMEDIATE` retried without holding up the
//! thread, `COMMIT` on a blocking thread, sqlx's write connection held as the turn (`turn.rs`).

use std::path::Path;
use std::time::Duration;

use switchyard_core::store::{StoreError, StoreResult};

use super::jobs::{Apart, run_each_alone, run_together};
use super::turn::Turn;
use super::{Job, Shared, WriterHealth, answer_committed, fail_all, give_up, run_cached};
use crate::error::map_direct_err;

/// Statements the writer's own connection keeps prepared, at most (the multi-row event
/// inserts take one per row count).
const PREPARED_STATEMENTS: usize = 64;

/// Opens the writer's own connection with the settings of sqlx's (`CONNECTION_PRAGMAS`; the
/// file is in WAL mode already, which lasts), except that it never waits for a lock:
/// [`begin_own`] waits without holding up the thread.
fn open_own(path: &Path) -> StoreResult<rusqlite::Connection> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = rusqlite::Connection::open_with_flags(path, flags).map_err(map_direct_err)?;
    conn.busy_timeout(Duration::ZERO).map_err(map_direct_err)?;
    for (name, value) in super::super::CONNECTION_PRAGMAS {
        conn.pragma_update(None, name, value).map_err(map_direct_err)?;
    }
    conn.set_prepared_statement_cache_capacity(PREPARED_STATEMENTS);
    Ok(conn)
}

/// Runs `group` in one transaction on the writer's own connection `own` (opened at `path`
/// when missing), holding the turn (taken first, when not held). Whatever fails, the transaction
/// is rolled back and every job is answered.
pub(super) async fn commit_own(
    turn: &mut Turn,
    own: &mut Option<rusqlite::Connection>,
    path: &Path,
    busy_timeout: Duration,
    group: Vec<Job>,
    health: &WriterHealth,
) {
    if let Err(error) = turn.take().await {
        return fail_all(group, &error, health);
    }
    let conn = match own.take().map_or_else(|| open_own(path), Ok) {
        Ok(conn) => conn,
        Err(error) => return fail_all(group, &error, health),
    };
    let mut jobs = group;
    let conn = match run_in_transaction(conn, busy_timeout, &mut jobs, health).await {
        (conn, Ok(())) => conn,
        (conn, Err(error)) => {
            *own = Some(roll_back(conn));
            return give_up(&error, jobs, health);
        }
    };
    // COMMIT waits for the fsync: on a blocking thread, not on this runtime worker.
    let committing = tokio::task::spawn_blocking(move || {
        let committed = run_cached(&conn, "COMMIT").map_err(map_direct_err);
        (conn, committed)
    });
    let committed = match committing.await {
        Ok((conn, committed)) => {
            *own = Some(if committed.is_ok() { conn } else { roll_back(conn) });
            committed
        }
        // The connection went with the thread; the next group opens another.
        Err(error) => Err(StoreError::Backend(format!("the commit did not finish: {error}").into())),
    };
    answer_committed(&committed, jobs, health);
}

/// Begins the group's transaction on `conn` and runs `jobs` in it: together, and when one of
/// them fails, the others again each alone in a transaction begun anew (see `jobs.rs`). On
/// `Ok`, `jobs` holds those that wrote and the transaction is open; on `Err`, every job not
/// answered yet, to be given up.
async fn run_in_transaction(
    conn: rusqlite::Connection,
    busy_timeout: Duration,
    jobs: &mut Vec<Job>,
    health: &WriterHealth,
) -> (rusqlite::Connection, StoreResult<()>) {
    let routes = jobs.iter().any(|job| job.routes);
    let (conn, begun) = begin_reading(conn, busy_timeout, routes).await;
    let shared = match begun {
        Ok(shared) => shared,
        Err(error) => return (conn, Err(error)),
    };
    match run_together(&conn, jobs, &shared, health) {
        Ok(()) => return (conn, Ok(())),
        Err(Apart::Broken(error)) => return (conn, Err(error)),
        Err(Apart::Failed) => {}
    }
    let (conn, begun) = begin_reading(roll_back(conn), busy_timeout, routes).await;
    let ran = begun.and_then(|shared| run_each_alone(&conn, jobs, &shared, health));
    (conn, ran)
}

/// Begins a transaction on `conn` and reads in it what the group's jobs share (the
/// subscriptions if `routes`): nobody else can commit while it holds the write lock.
async fn begin_reading(
    conn: rusqlite::Connection,
    busy_timeout: Duration,
    routes: bool,
) -> (rusqlite::Connection, StoreResult<Shared>) {
    let (conn, begun) = begin_own(conn, busy_timeout).await;
    let mut shared = Shared::default();
    let read = begun.and_then(|()| shared.read_subscriptions(&conn, routes)).map(|()| shared);
    (conn, read)
}

/// `BEGIN IMMEDIATE` on the writer's own connection. Another process may hold the write lock
/// (this one's writers wait for the turn): then this tries again, sleeping between tries, for
/// up to `busy_timeout`, as SQLite's busy handler would, but without holding up the thread.
async fn begin_own(
    conn: rusqlite::Connection,
    busy_timeout: Duration,
) -> (rusqlite::Connection, StoreResult<()>) {
    let deadline = tokio::time::Instant::now() + busy_timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match run_cached(&conn, "BEGIN IMMEDIATE") {
            Ok(()) => return (conn, Ok(())),
            Err(error)
                if error.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && tokio::time::Instant::now() + pause < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(error) => return (conn, Err(map_direct_err(error))),
        }
    }
}

/// Ends `conn`'s transaction if SQLite has not already, undoing its writes.
fn roll_back(conn: rusqlite::Connection) -> rusqlite::Connection {
    if !conn.is_autocommit()
        && let Err(error) = conn.execute_batch("ROLLBACK")
    {
        tracing::error!(%error, "the writer's own connection could not roll back");
    }
    conn
}
