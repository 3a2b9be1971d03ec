//! The schema's state, the same way on both backends: which embedded migrations the database
//! lacks, so `serve` changes the schema only when it must (and then only with a role allowed
//! to), and `ping` can tell a node whose schema is behind.

use std::collections::HashMap;

use sqlx::migrate::{MigrateError, Migrator};
use switchyard_core::store::{StoreError, StoreResult};

use crate::error::BackendError;

/// The embedded migrations that `applied` (version and checksum rows of `_sqlx_migrations`)
/// lacks or holds with another checksum, described for a person.
pub fn pending(migrator: &Migrator, applied: &[(i64, Vec<u8>)]) -> Vec<String> {
    let applied: HashMap<i64, &[u8]> = applied.iter().map(|(v, c)| (*v, c.as_slice())).collect();
    migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .filter_map(|m| match applied.get(&m.version) {
            None => Some(format!("migration {} ({}) is not applied", m.version, m.description)),
            Some(checksum) if *checksum != &*m.checksum => {
                Some(format!("migration {} ({}) differs from the one applied", m.version, m.description))
            }
            Some(_) => None,
        })
        .collect()
}

/// `Ok` when nothing is pending.
pub fn require_current(pending: StoreResult<Vec<String>>) -> StoreResult<()> {
    match pending?.into_iter().next() {
        None => Ok(()),
        Some(first) => Err(BackendError::SchemaNotCurrent(first).into()),
    }
}

/// A failed migration run; a role without the right to change the schema is told what to do.
pub fn run_error(error: MigrateError) -> StoreError {
    let denied = match &error {
        MigrateError::Execute(sqlx::Error::Database(db))
        | MigrateError::ExecuteMigration(sqlx::Error::Database(db), _) => {
            db.code().as_deref() == Some("42501")
        }
        _ => false,
    };
    if denied {
        return BackendError::MigrationDenied(error.to_string()).into();
    }
    StoreError::Backend(Box::new(error))
}
