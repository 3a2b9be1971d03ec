//! The one place where driver errors become `StoreError`s, so every repository reports a
//! constraint violation the same way.

use switchyard_core::store::StoreError;

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
/// references, everything else is a backend failure with its source kept.
pub fn map_err(error: sqlx::Error) -> StoreError {
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

/// [`map_err`] for the statements SQLite's group writer runs on the connection's handle.
pub fn map_direct_err(error: rusqlite::Error) -> StoreError {
    use rusqlite::ffi;
    if let rusqlite::Error::SqliteFailure(failure, message) = &error {
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
            _ => {}
        }
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
