//! Ending, on the write connection, a transaction that sqlx still counts as open after SQLite
//! ended it.
//!
//! sqlx counts the transactions it began on a connection, and lowers the count only when its
//! own `COMMIT` or `ROLLBACK` succeeds; while the count is above zero it refuses `BEGIN
//! IMMEDIATE` ("attempted to call begin_with at non-zero transaction depth"). SQLite, though,
//! rolls the whole transaction back by itself when a statement or the commit fails for lack of
//! space, on an I/O error or out of memory ("Response To Errors Within A Transaction" in its
//! documentation). The `ROLLBACK` that sqlx sends when the failed transaction is dropped then
//! fails ("no transaction is active"), the count stays at one, and every later write on the
//! connection is refused until the process restarts.
//!
//! So the write pool looks at each connection it takes back ([`end_abandoned`], its
//! `after_release`): if sqlx still counts a transaction, it begins one where SQLite has none,
//! so that sqlx's `ROLLBACK` has something to end, and rolls back until the count is zero. A
//! connection that cannot be brought back is closed, and the pool opens another.

use std::future::Future;
use std::pin::Pin;

use sqlx::Connection as _;
use sqlx::pool::PoolConnectionMetadata;
use sqlx::sqlite::{SqliteConnection, SqliteTransactionManager};
use sqlx_core::transaction::TransactionManager as _;

type Checked<'c> = Pin<Box<dyn Future<Output = Result<bool, sqlx::Error>> + Send + 'c>>;

/// The write pool's `after_release`: answers whether the connection may go back to the pool,
/// after ending any transaction sqlx still counts on it.
pub(super) fn end_abandoned(conn: &mut SqliteConnection, _: PoolConnectionMetadata) -> Checked<'_> {
    Box::pin(async move {
        // The common case costs one atomic read.
        if !conn.is_in_transaction() {
            return Ok(true);
        }
        // The rollback of a dropped transaction may still be queued on the connection's thread:
        // taking the handle waits for it, so the count read afterwards is settled.
        let open_in_sqlite = {
            let mut handle = conn.lock_handle().await?;
            // SAFETY: the handle is open while `handle` holds it.
            unsafe { rusqlite::ffi::sqlite3_get_autocommit(handle.as_raw_handle().as_ptr()) == 0 }
        };
        let depth = SqliteTransactionManager::get_transaction_depth(conn);
        if depth == 0 {
            return Ok(true);
        }
        tracing::warn!(
            depth,
            open_in_sqlite,
            "the write connection came back with a transaction still counted as open; ending it"
        );
        if !open_in_sqlite {
            if depth > 1 {
                // The savepoints sqlx would roll back to are gone with the transaction.
                return Ok(false);
            }
            sqlx::query("BEGIN").execute(&mut *conn).await?;
        }
        while conn.is_in_transaction() {
            SqliteTransactionManager::rollback(conn).await?;
        }
        Ok(true)
    })
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::SqlitePoolOptions;

    use super::*;

    /// A transaction SQLite ended behind sqlx's back, as it does when a write fails for lack
    /// of space, no longer keeps the connection from beginning the next one.
    #[tokio::test]
    async fn a_transaction_sqlite_rolled_back_itself_is_ended_on_release() {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .after_release(end_abandoned)
            .connect("sqlite::memory:")
            .await
            .expect("pool");
        sqlx::query("CREATE TABLE marks (name TEXT NOT NULL)").execute(&pool).await.expect("table");
        for _ in 0..2 {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.expect("a transaction begins");
            sqlx::query("INSERT INTO marks VALUES ('lost')").execute(&mut *tx).await.expect("insert");
            let mut handle = tx.lock_handle().await.expect("the handle");
            // SAFETY: the handle is open while `handle` holds it; the statement has no parameters.
            let rolled_back = unsafe {
                rusqlite::ffi::sqlite3_exec(
                    handle.as_raw_handle().as_ptr(),
                    c"ROLLBACK".as_ptr(),
                    None,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
            assert_eq!(rolled_back, rusqlite::ffi::SQLITE_OK);
            drop(handle);
            drop(tx);
        }
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.expect("the writer begins again");
        sqlx::query("INSERT INTO marks VALUES ('kept')").execute(&mut *tx).await.expect("insert");
        tx.commit().await.expect("commit");
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM marks").fetch_all(&pool).await.unwrap();
        assert_eq!(names, ["kept"]);
    }
}
