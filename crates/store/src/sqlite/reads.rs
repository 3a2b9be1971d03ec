//! Point reads of the delivery path on read connections of the store's own (rusqlite), run on
//! the caller's thread.
//!
//! A read through sqlx is a round trip to its connection's thread and back: two thread
//! wake-ups around a statement that takes a few microseconds. The dispatcher reads a
//! destination and its flow record for every batch it clears, so those reads, and the
//! subscription of a claimed delivery, go to a connection taken from a small stack here and
//! run at once. A connection never waits for a lock (a reader of a WAL database meets one only
//! in rare moments, such as another process recovering the file): a read that would is
//! answered [`Direct::Busy`] and the caller reads through sqlx's pool, whose connections do
//! wait.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{ErrorCode, OpenFlags};
use switchyard_core::store::StoreResult;

use crate::error::map_direct_err;

/// Idle connections kept, at most: the callers that read at once on a node (the dispatcher
/// and the runtime's workers) are few.
const IDLE: usize = 4;
/// Statements each connection keeps prepared.
const PREPARED_STATEMENTS: usize = 16;

/// What became of a read tried on the store's own connections.
pub(super) enum Direct<T> {
    /// It ran: its answer, or how it failed.
    Read(StoreResult<T>),
    /// It would have waited for a lock, or no connection could be opened: read elsewhere.
    Busy,
}

/// Read connections to one database file.
#[derive(Debug)]
pub(super) struct DirectReads {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl DirectReads {
    pub(super) fn new(path: PathBuf) -> Self {
        Self { path, idle: Mutex::new(Vec::new()) }
    }

    /// Runs `read` on an idle connection (opened when there is none).
    pub(super) fn read<T>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Direct<T> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = match idle.map_or_else(|| self.open(), Ok) {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, "cannot open a read connection of the store's own; reading through the pool");
                return Direct::Busy;
            }
        };
        let answer = match read(&conn) {
            Err(error) if is_busy(&error) => Direct::Busy,
            answer => Direct::Read(answer.map_err(map_direct_err)),
        };
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE {
            idle.push(conn);
        }
        answer
    }

    /// A connection that may only read, and answers at once when it would wait for a lock.
    fn open(&self) -> rusqlite::Result<rusqlite::Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags(&self.path, flags)?;
        conn.busy_timeout(Duration::ZERO)?;
        conn.pragma_update(None, "query_only", "ON")?;
        conn.set_prepared_statement_cache_capacity(PREPARED_STATEMENTS);
        Ok(conn)
    }
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(error.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn count(reads: &DirectReads) -> Direct<i64> {
        reads.read(|conn| conn.query_row("SELECT count(*) FROM marks", [], |row| row.get(0)))
    }

    #[test]
    fn a_read_that_meets_a_lock_is_answered_busy_at_once_and_reads_again_once_it_is_gone() {
        let dir = tempfile::tempdir().expect("a directory");
        let path = dir.path().join("db.sqlite");
        let locker = rusqlite::Connection::open(&path).expect("open");
        locker
            .execute_batch(
                "PRAGMA journal_mode = WAL; CREATE TABLE marks (name TEXT); INSERT INTO marks VALUES ('a');",
            )
            .expect("a table");
        // Exclusive locking mode keeps the lock from the next transaction on, against readers
        // too (taken while no other connection has the file open).
        locker.execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; COMMIT;").expect("the lock");
        let reads = DirectReads::new(path);
        let started = Instant::now();
        assert!(matches!(count(&reads), Direct::Busy), "the lock is met");
        assert!(started.elapsed() < Duration::from_secs(1), "without waiting: {:?}", started.elapsed());

        drop(locker);
        assert!(matches!(count(&reads), Direct::Read(Ok(1))), "read again once the lock is gone");
    }

    #[test]
    fn a_file_that_cannot_be_opened_sends_reads_elsewhere() {
        let dir = tempfile::tempdir().expect("a directory");
        let reads = DirectReads::new(dir.path().join("missing").join("db.sqlite"));
        assert!(matches!(count(&reads), Direct::Busy));
    }
}
