//! The application's database, PostgreSQL or SQLite: what the table looks like (on a
//! connection of its own), and, behind one small pool, reading pending rows, relaying them and
//! counting them.

use std::time::Duration;

use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{AssertSqlSafe, Connection, Row};
use switchyard_core::ValidationError;
use switchyard_core::error::Violations;
use switchyard_core::time::Millis;

use super::config::{AfterRelay, OutboxConfig, Target};
use super::sql::{Dialect, IdMatch, SQLITE_CHUNK, Statements};

/// A pool of the application's database.
#[derive(Debug, Clone)]
pub enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// One row not yet relayed, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: String,
    pub event_type: Option<String>,
    pub ordering_key: Option<String>,
    pub payload: Option<String>,
    pub written_at: Option<Millis>,
}

/// The table as the database describes it: its columns with their types, and what the
/// connected user may do with it (PostgreSQL only).
#[derive(Debug, Clone, Default)]
pub struct TableShape {
    dialect: Option<Dialect>,
    columns: Vec<(String, String)>,
    privileges: Option<Privileges>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Privileges {
    select: bool,
    delete: bool,
    update: bool,
}

/// The shape of `table` (`schema.table` allowed) on one connection opened for it, without the
/// retries of a pool, so a failure says why the database could not be reached.
pub async fn inspect(target: &Target, table: &str) -> Result<TableShape, sqlx::Error> {
    match target {
        Target::Postgres(options) => {
            let mut conn = PgConnection::connect_with(options).await?;
            let shape = inspect_postgres(&mut conn, table).await;
            let _ = conn.close().await;
            shape
        }
        Target::Sqlite(options) => {
            let mut conn = SqliteConnection::connect_with(options).await?;
            let shape = inspect_sqlite(&mut conn, table).await;
            let _ = conn.close().await;
            shape
        }
    }
}

async fn inspect_postgres(conn: &mut PgConnection, table: &str) -> Result<TableShape, sqlx::Error> {
    let quoted = super::sql::quote(table);
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT a.attname::text, format_type(a.atttypid, NULL) FROM pg_attribute a \
         WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
    )
    .bind(&quoted)
    .fetch_all(&mut *conn)
    .await?;
    let (select, delete, update): (bool, bool, bool) = sqlx::query_as(
        "SELECT coalesce(has_table_privilege(to_regclass($1), 'SELECT'), false), \
         coalesce(has_table_privilege(to_regclass($1), 'DELETE'), false), \
         coalesce(has_table_privilege(to_regclass($1), 'UPDATE'), false)",
    )
    .bind(&quoted)
    .fetch_one(&mut *conn)
    .await?;
    let privileges = Some(Privileges { select, delete, update });
    Ok(TableShape { dialect: Some(Dialect::Postgres), columns, privileges })
}

async fn inspect_sqlite(conn: &mut SqliteConnection, table: &str) -> Result<TableShape, sqlx::Error> {
    let (schema, name) = table.split_once('.').unwrap_or(("main", table));
    let columns: Vec<(String, String)> = sqlx::query_as("SELECT name, type FROM pragma_table_info(?1, ?2)")
        .bind(name)
        .bind(schema)
        .fetch_all(&mut *conn)
        .await?;
    Ok(TableShape { dialect: Some(Dialect::Sqlite), columns, privileges: None })
}

impl Pool {
    /// A pool of at most `max` connections, opened as they are needed; `timeout` bounds each
    /// wait for one.
    pub fn open(target: &Target, max: u32, timeout: Duration) -> Self {
        match target {
            Target::Postgres(options) => Self::Postgres(
                PgPoolOptions::new()
                    .max_connections(max)
                    .acquire_timeout(timeout)
                    .connect_lazy_with(options.clone()),
            ),
            Target::Sqlite(options) => Self::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(max)
                    .acquire_timeout(timeout)
                    .connect_lazy_with(options.clone()),
            ),
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Self::Postgres(_) => Dialect::Postgres,
            Self::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// At most `limit` pending rows, in order (`statements.select`).
    pub async fn fetch(&self, statements: &Statements, limit: usize) -> Result<Vec<OutboxRow>, sqlx::Error> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let query = AssertSqlSafe(statements.select.as_str());
        match self {
            Self::Postgres(pool) => {
                let rows = sqlx::query(query).bind(limit).fetch_all(pool).await?;
                rows.iter().map(pg_row).collect()
            }
            Self::Sqlite(pool) => {
                let rows = sqlx::query(query).bind(limit).fetch_all(pool).await?;
                rows.iter().map(sqlite_row).collect()
            }
        }
    }

    /// Deletes or marks the rows of `ids`, all in one transaction.
    pub async fn relay(&self, statements: &Statements, ids: &[String]) -> Result<(), sqlx::Error> {
        if ids.is_empty() {
            return Ok(());
        }
        match self {
            Self::Postgres(pool) => {
                sqlx::query(AssertSqlSafe(statements.relay(ids.len()))).bind(ids).execute(pool).await?;
            }
            Self::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                for chunk in ids.chunks(SQLITE_CHUNK) {
                    let mut query =
                        sqlx::query(AssertSqlSafe(statements.relay(chunk.len()))).persistent(false);
                    for id in chunk {
                        query = query.bind(id.as_str());
                    }
                    query.execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// How many rows are not yet relayed (`statements.count`).
    pub async fn count(&self, statements: &Statements) -> Result<i64, sqlx::Error> {
        let query = AssertSqlSafe(statements.count.as_str());
        match self {
            Self::Postgres(pool) => sqlx::query_scalar(query).fetch_one(pool).await,
            Self::Sqlite(pool) => sqlx::query_scalar(query).fetch_one(pool).await,
        }
    }

    pub async fn close(&self) {
        match self {
            Self::Postgres(pool) => pool.close().await,
            Self::Sqlite(pool) => pool.close().await,
        }
    }
}

fn pg_row(row: &PgRow) -> Result<OutboxRow, sqlx::Error> {
    Ok(OutboxRow {
        id: row.try_get("id")?,
        // A value that cannot be read is left out: the engine counts the row invalid.
        event_type: row.try_get("event_type").ok().flatten(),
        ordering_key: row.try_get("ordering_key").ok().flatten(),
        payload: row.try_get("payload").ok().flatten(),
        written_at: row.try_get("written_at").ok().flatten(),
    })
}

fn sqlite_row(row: &SqliteRow) -> Result<OutboxRow, sqlx::Error> {
    let written_int: Option<i64> = row.try_get("written_int").ok().flatten();
    let written_text: Option<String> = row.try_get("written_text").ok().flatten();
    Ok(OutboxRow {
        id: row.try_get("id")?,
        event_type: row.try_get("event_type").ok().flatten(),
        ordering_key: row.try_get("ordering_key").ok().flatten(),
        payload: row.try_get("payload").ok().flatten(),
        written_at: written_int.and_then(from_epoch).or_else(|| written_text.as_deref().and_then(parse_time)),
    })
}

/// Seconds since the epoch, or milliseconds when too large to be seconds (after year 5138).
fn from_epoch(value: i64) -> Option<Millis> {
    if value.abs() < 100_000_000_000 { value.checked_mul(1000) } else { Some(value) }
}

/// A time as SQLite keeps it in text: RFC 3339 (`2024-05-01T12:00:00.123Z`), or
/// `YYYY-MM-DD HH:MM:SS[.fff]` in UTC (`CURRENT_TIMESTAMP`), or epoch seconds or milliseconds.
pub fn parse_time(text: &str) -> Option<Millis> {
    let text = text.trim();
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(at.timestamp_millis());
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%#z"] {
        if let Ok(at) = chrono::DateTime::parse_from_str(text, format) {
            return Some(at.timestamp_millis());
        }
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"] {
        if let Ok(at) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Some(at.and_utc().timestamp_millis());
        }
    }
    if !text.is_empty() && text.trim_start_matches('-').bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok().and_then(from_epoch);
    }
    None
}

impl TableShape {
    fn type_of(&self, column: &str) -> Option<&str> {
        let matches = |name: &str| match self.dialect {
            // PostgreSQL names are quoted, so exact; SQLite's are case-insensitive.
            Some(Dialect::Postgres) => name == column,
            _ => name.eq_ignore_ascii_case(column),
        };
        self.columns.iter().find(|(name, _)| matches(name)).map(|(_, type_name)| type_name.as_str())
    }

    /// How the id column is compared when rows are relayed.
    pub fn id_match(&self, config: &OutboxConfig) -> IdMatch {
        match self.dialect {
            Some(Dialect::Postgres) => IdMatch::for_type(self.type_of(&config.columns.id).unwrap_or("text")),
            _ => IdMatch::Text,
        }
    }

    /// Whether the table has what `config` reads and writes, each violation under its field.
    pub fn check(&self, config: &OutboxConfig) -> Result<(), ValidationError> {
        let mut v = Violations::default();
        if self.columns.is_empty() {
            v.push(
                "config.table",
                format!("names no table of the database ({} was not found)", config.table),
            );
            return v.into_result();
        }
        for (field, column) in config.columns.named() {
            if self.type_of(column).is_none() {
                v.push(format!("config.columns.{field}"), format!("names no column of {}", config.table));
            }
        }
        if config.after_relay == AfterRelay::Mark && self.type_of(&config.mark_column).is_none() {
            v.push("config.mark_column", format!("names no column of {}", config.table));
        }
        if let Some(sequence) = &config.sequence_column
            && self.type_of(sequence).is_none()
        {
            v.push("config.sequence_column", format!("names no column of {}", config.table));
        }
        if self.dialect == Some(Dialect::Postgres)
            && let Some(type_name) = self.type_of(&config.columns.created_at)
            && !matches!(type_name, "timestamp with time zone" | "timestamp without time zone" | "date")
        {
            v.push(
                "config.columns.created_at",
                format!("is a column of type {type_name}; it must be a timestamptz or timestamp"),
            );
        }
        if let Some(may) = self.privileges {
            let (relays, verb) = match config.after_relay {
                AfterRelay::Delete => (may.delete, "DELETE"),
                AfterRelay::Mark => (may.update, "UPDATE"),
            };
            if !may.select || !relays {
                v.push(
                    "config.table",
                    format!("needs SELECT and {verb} granted to the database user on {}", config.table),
                );
            }
        }
        v.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_times_are_read_from_the_forms_applications_write() {
        let at = 1_714_564_800_123; // 2024-05-01T12:00:00.123Z
        assert_eq!(parse_time("2024-05-01T12:00:00.123Z"), Some(at));
        assert_eq!(parse_time("2024-05-01T14:00:00.123+02:00"), Some(at));
        assert_eq!(parse_time("2024-05-01 12:00:00.123"), Some(at));
        assert_eq!(parse_time("2024-05-01 12:00:00"), Some(at - 123));
        assert_eq!(parse_time("1714564800"), Some(at - 123));
        assert_eq!(parse_time("1714564800123"), Some(at));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(from_epoch(1_714_564_800), Some(at - 123));
    }
}
