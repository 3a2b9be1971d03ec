//! The repositories of Switchyard: implementations of the `switchyard_core::store` traits.
//! SQLite is the embedded default; PostgreSQL will follow and share the query text in [`sql`].
//!
//! The backend is chosen once, from the database URL, by [`connect`]; everything above this
//! crate holds an `Arc<dyn Store>` and never learns which backend is behind it.

mod error;
mod rows;
mod sql;
mod sqlite;

use std::sync::Arc;

use switchyard_core::store::{Store, StoreError};

pub use error::BackendError;
pub use sqlite::SqliteStore;

/// Where the database is and how many connections may read it at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseOptions {
    /// `sqlite://PATH` (the file is created when missing) or `sqlite::memory:`.
    pub url: String,
    /// Size of the read pool; writes always go through one connection.
    pub max_connections: u32,
}

impl Default for DatabaseOptions {
    fn default() -> Self {
        Self { url: "sqlite://switchyard.db".to_owned(), max_connections: 8 }
    }
}

/// A connected database of one of the supported backends.
#[derive(Debug, Clone)]
pub enum Database {
    Sqlite(SqliteStore),
}

/// Opens the database named by `options.url`, choosing the backend by the URL's scheme. Does
/// not migrate: `switchyard migrate` may run with other rights than `serve`.
pub async fn connect(options: &DatabaseOptions) -> Result<Database, StoreError> {
    let url = options.url.trim();
    if url.starts_with("sqlite:") {
        return SqliteStore::connect(url, options.max_connections).await.map(Database::Sqlite);
    }
    // Only the scheme is echoed: the rest of a URL may hold a password.
    let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
    Err(BackendError::UnsupportedScheme(scheme.to_owned()).into())
}

impl Database {
    /// Applies the embedded migrations that are not applied yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(store) => store.migrate().await,
        }
    }

    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(store) => Arc::new(store.clone()),
        }
    }

    /// `sqlite` or `postgres`, as `Store::backend` answers.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
        }
    }
}
