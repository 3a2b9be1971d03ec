//! The one place where driver errors become `StoreError`s, so every repository reports a
//! constraint violation the same way.

use switchyard_core::store::{StorageFailureKind, StoreError};

use crate::seal::SealError;

/// Failures of this crate that are not the driver's own.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("unsupported database URL scheme `{0}`; use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedScheme(String),
    #[error("the database schema is not current ({0}); run `switchyard migrate`")]
    SchemaNotCurrent(String),
    /// The schema needs migrations and this role may not change it.
    #[error(
        "the database schema needs migrations but this role may not change the schema ({0}); \
         run `switchyard migrate` with a role that may, then start again"
    )]
    MigrationDenied(String),
    /// A stored value that no longer decodes: the row was written by something else or the
    /// schema drifted. Reported instead of panicking so one bad row cannot take a node down.
    #[error("stored {column} is unreadable: {detail}")]
    Unreadable { column: &'static str, detail: String },
    /// A value the schema cannot represent (e.g. a `u64` above `i64::MAX`).
    #[error("{field} is out of range for the database")]
    OutOfRange { field: &'static str },
    /// A sealed secret that does not open (or a secret that cannot be sealed). Names the column
    /// and the key id; never the value.
    #[error("stored {column}: {source}")]
    Sealed {
        column: &'static str,
        #[source]
        source: SealError,
    },
}

impl From<BackendError> for StoreError {
    fn from(error: BackendError) -> Self {
        StoreError::Backend(Box::new(error))
    }
}

/// Maps a driver error: unique violations are conflicts, foreign-key violations are invalid
/// references, what passes with time (`unavailable`) is unavailability, everything else is a
/// backend failure with its source kept.
pub fn map_err(error: sqlx::Error) -> StoreError {
    if let Some(kind) = storage_failure(&error) {
        return StoreError::storage(kind, error.to_string());
    }
    if unavailable(&error) {
        return StoreError::Unavailable(Box::new(error));
    }
    if let sqlx::Error::Database(db) = &error {
        if db.is_unique_violation() {
            return StoreError::Conflict(format!(
                "a row with the same key exists already ({})",
                db.message()
            ));
        }
        if db.is_foreign_key_violation() {
            return StoreError::InvalidReference {
                field: "reference",
                message: format!("a referenced row does not exist or is still referenced ({})", db.message()),
            };
        }
    }
    StoreError::Backend(Box::new(error))
}

/// Whether `error` says the database cannot serve now rather than that the call is wrong: no
/// pooled connection in time, a lost connection, or the database's own word for it.
fn unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => {
            let Some(code) = db.code() else { return false };
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                code.parse::<i32>().is_ok_and(sqlite_busy)
            } else {
                postgres_unavailable(&code)
            }
        }
        _ => false,
    }
}

/// Whether `error` says the database cannot store anything more, or cannot write its files:
/// unavailability, since it passes once space is freed or the disk is back.
fn storage_failure(error: &sqlx::Error) -> Option<StorageFailureKind> {
    let sqlx::Error::Database(db) = error else { return None };
    let code = db.code()?;
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        code.parse::<i32>().ok().and_then(sqlite_storage_failure)
    } else {
        postgres_storage_failure(&code)
    }
}

/// `SQLITE_FULL` (the disk, or `max_page_count`) and `SQLITE_IOERR`, extended codes included.
fn sqlite_storage_failure(code: i32) -> Option<StorageFailureKind> {
    match code & 0xff {
        13 => Some(StorageFailureKind::OutOfSpace),
        10 => Some(StorageFailureKind::Io),
        _ => None,
    }
}

/// `disk_full` (53100) and `io_error` (58030).
fn postgres_storage_failure(sqlstate: &str) -> Option<StorageFailureKind> {
    match sqlstate {
        "53100" => Some(StorageFailureKind::OutOfSpace),
        "58030" => Some(StorageFailureKind::Io),
        _ => None,
    }
}

/// `SQLITE_BUSY` or `SQLITE_LOCKED`, extended codes included: the busy timeout ran out.
fn sqlite_busy(code: i32) -> bool {
    matches!(code & 0xff, 5 | 6)
}

/// SQLSTATEs that pass with time: connection exceptions (class 08), insufficient resources
/// (class 53: disk full, out of memory, too many connections), a statement cancelled (the
/// statement timeout), a lock timeout, and the server shutting down or starting.
fn postgres_unavailable(sqlstate: &str) -> bool {
    sqlstate.starts_with("08")
        || sqlstate.starts_with("53")
        || matches!(sqlstate, "57014" | "55P03" | "57P01" | "57P02" | "57P03")
}

/// [`map_err`] for the statements SQLite's group writer runs on the connection's handle.
pub fn map_direct_err(error: rusqlite::Error) -> StoreError {
    use rusqlite::ffi;
    if let rusqlite::Error::SqliteFailure(failure, message) = &error {
        if let Some(kind) = sqlite_storage_failure(failure.extended_code) {
            return StoreError::storage(kind, error.to_string());
        }
        let detail = message.as_deref().unwrap_or("constraint failed");
        match failure.extended_code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                return StoreError::Conflict(format!("a row with the same key exists already ({detail})"));
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => {
                return StoreError::InvalidReference {
                    field: "reference",
                    message: format!("a referenced row does not exist or is still referenced ({detail})"),
                };
            }
            code if sqlite_busy(code) => {}
            _ => return StoreError::Backend(Box::new(error)),
        }
        return StoreError::Unavailable(Box::new(error));
    }
    StoreError::Backend(Box::new(error))
}

/// Replaces the generic conflict of a unique violation with one naming the resource.
pub fn name_conflict(what: impl FnOnce() -> String) -> impl FnOnce(StoreError) -> StoreError {
    move |error| match error {
        StoreError::Conflict(_) => StoreError::Conflict(what()),
        other => other,
    }
}

pub fn unreadable(column: &'static str, detail: impl std::fmt::Display) -> StoreError {
    BackendError::Unreadable { column, detail: detail.to_string() }.into()
}

pub fn out_of_range(field: &'static str) -> StoreError {
    BackendError::OutOfRange { field }.into()
}

pub fn sealed(column: &'static str) -> impl FnOnce(SealError) -> StoreError {
    move |source| BackendError::Sealed { column, source }.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_that_ran_out_are_unavailability() {
        assert!(matches!(map_err(sqlx::Error::PoolTimedOut), StoreError::Unavailable(_)));
        let lost = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(matches!(map_err(sqlx::Error::Io(lost)), StoreError::Unavailable(_)));
        assert!(matches!(map_err(sqlx::Error::RowNotFound), StoreError::Backend(_)));
        let busy =
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None);
        assert!(matches!(map_direct_err(busy), StoreError::Unavailable(_)));
        // SQLITE_BUSY_SNAPSHOT (5 | 2 << 8) is busy too; SQLITE_IOERR_READ (10 | 1 << 8) is not.
        assert!(sqlite_busy(517) && sqlite_busy(6) && !sqlite_busy(266));
        for sqlstate in ["57014", "08006", "53300", "55P03", "57P01"] {
            assert!(postgres_unavailable(sqlstate), "{sqlstate}");
        }
        for sqlstate in ["23505", "42P01", "40001"] {
            assert!(!postgres_unavailable(sqlstate), "{sqlstate}");
        }
    }

    #[test]
    fn a_full_disk_is_unavailability_that_says_so() {
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some("database or disk is full".into()),
        );
        let error = map_direct_err(full);
        assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
        assert_eq!(error.storage_failure().map(|f| f.kind), Some(StorageFailureKind::OutOfSpace));
        assert!(error.to_string().contains("the database is out of space"), "{error}");
        let write_failed = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR_WRITE),
            None,
        );
        assert_eq!(
            map_direct_err(write_failed).storage_failure().map(|f| f.kind),
            Some(StorageFailureKind::Io)
        );
        // SQLITE_CONSTRAINT (19) and SQLITE_CORRUPT (11) are not.
        assert_eq!(sqlite_storage_failure(19), None);
        assert_eq!(sqlite_storage_failure(11), None);

        assert_eq!(postgres_storage_failure("53100"), Some(StorageFailureKind::OutOfSpace));
        assert_eq!(postgres_storage_failure("58030"), Some(StorageFailureKind::Io));
        assert_eq!(postgres_storage_failure("53300"), None);
        for sqlstate in ["53000", "53100", "53200", "53400"] {
            assert!(postgres_unavailable(sqlstate), "{sqlstate}");
        }
    }
}
