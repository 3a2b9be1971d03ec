//! Configuration of `outbox` sources: which database, which table and columns, and what
//! happens to a row once its event is committed in the hub (SPEC §5). A password in
//! `database_url` is taken out when written and kept as a secret (`password`).

use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use switchyard_core::ValidationError;
use switchyard_core::error::{Violations, excerpt};
use url::Url;

use crate::config_io;

/// Paths of the secret values in an `outbox` configuration.
pub const SECRET_PATHS: [&str; 1] = ["password"];

/// Rows read per batch, at most.
pub const MAX_BATCH_SIZE: u32 = 1000;
/// The shortest and longest wait between two reads of an idle table.
pub const POLL_INTERVAL_MS: std::ops::RangeInclusive<u64> = 50..=60_000;
/// The longest identifier PostgreSQL keeps (longer ones are silently cut, so refused).
const MAX_IDENTIFIER: usize = 63;

/// What becomes of a row once its event is committed in the hub.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterRelay {
    /// The row is deleted.
    #[default]
    Delete,
    /// The row's `mark_column` is set to the time it was relayed; only unmarked rows are read.
    Mark,
}

/// The table's column names; Debezium's by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxColumns {
    /// The event's id; a row relayed twice is one event.
    pub id: String,
    pub aggregate_type: String,
    /// The event's ordering key.
    pub aggregate_id: String,
    /// The event's type.
    pub event_type: String,
    /// The event's body, a JSON object (`jsonb`, `json` or text).
    pub payload: String,
    /// When the row was written: the read order (without `sequence_column`) and the lag.
    pub created_at: String,
}

impl Default for OutboxColumns {
    fn default() -> Self {
        Self {
            id: "id".into(),
            aggregate_type: "aggregatetype".into(),
            aggregate_id: "aggregateid".into(),
            event_type: "type".into(),
            payload: "payload".into(),
            created_at: "created_at".into(),
        }
    }
}

impl OutboxColumns {
    /// Each column with the name of its field in `columns`.
    pub fn named(&self) -> [(&'static str, &str); 6] {
        [
            ("id", &self.id),
            ("aggregate_type", &self.aggregate_type),
            ("aggregate_id", &self.aggregate_id),
            ("event_type", &self.event_type),
            ("payload", &self.payload),
            ("created_at", &self.created_at),
        ]
    }
}

/// An `outbox` source's configuration, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// `postgres://user@host:5432/app` or `sqlite://app.db`, as kept: the password is
    /// [`OutboxConfig::password`].
    pub database_url: String,
    /// `outbox`, or `schema.outbox`.
    #[serde(default = "default_table")]
    pub table: String,
    #[serde(default)]
    pub columns: OutboxColumns,
    #[serde(default)]
    pub after_relay: AfterRelay,
    /// Set when a row is relayed, with `after_relay: "mark"`.
    #[serde(default = "default_mark_column")]
    pub mark_column: String,
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// A column whose order is the read order, instead of `created_at, id`.
    #[serde(default)]
    pub sequence_column: Option<String>,
    /// The URL's password, write-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

fn default_table() -> String {
    "outbox".into()
}

fn default_mark_column() -> String {
    "relayed_at".into()
}

fn default_batch_size() -> u32 {
    500
}

fn default_poll_interval_ms() -> u64 {
    500
}

/// Where the table lives, ready to connect to (the password put back).
#[derive(Debug, Clone)]
pub enum Target {
    Postgres(PgConnectOptions),
    Sqlite(SqliteConnectOptions),
}

impl OutboxConfig {
    /// Reads `raw`, a configuration as a client wrote it: defaults filled in, every field
    /// checked, and a password moved out of the URL. Does not reach the database.
    pub fn parse(raw: Value) -> Result<Self, ValidationError> {
        let mut config: Self = config_io::read(raw, |field| field == "password" || field == "database_url")?;
        let mut v = Violations::default();
        match take_password(&config.database_url) {
            Ok((url, Some(password))) => {
                if config.password.is_some() {
                    v.push("config.database_url", "has a password and so does config.password; give it once");
                }
                config.database_url = url;
                config.password = Some(password);
            }
            Ok((url, None)) => config.database_url = url,
            Err(reason) => v.push("config.database_url", reason),
        }
        if config.password.as_deref().is_some_and(|p| p.chars().any(char::is_control)) {
            v.push("config.password", "must not contain control characters");
        }
        if config.password.is_some() && config.database_url.starts_with("sqlite:") {
            v.push("config.password", "is not used by SQLite; leave it out");
        }
        config.check_names(&mut v);
        if !(1..=MAX_BATCH_SIZE).contains(&config.batch_size) {
            v.push("config.batch_size", format!("must be from 1 to {MAX_BATCH_SIZE}"));
        }
        if !POLL_INTERVAL_MS.contains(&config.poll_interval_ms) {
            v.push(
                "config.poll_interval_ms",
                format!("must be from {} to {}", POLL_INTERVAL_MS.start(), POLL_INTERVAL_MS.end()),
            );
        }
        v.into_result()?;
        Ok(config)
    }

    /// Reads a stored configuration (secrets put back) and checks its names again: they are
    /// spliced into SQL, so nothing that skipped [`OutboxConfig::parse`] may reach a statement.
    pub fn stored(full: Value) -> Result<Self, String> {
        let config: Self = serde_json::from_value(full)
            .map_err(|_| "the source's configuration is not a valid outbox configuration".to_owned())?;
        let mut v = Violations::default();
        config.check_names(&mut v);
        v.into_result().map_err(|e| format!("the source's configuration is not valid: {e}"))?;
        Ok(config)
    }

    /// Every identifier is a plain SQL identifier (the security boundary of the statements).
    fn check_names(&self, v: &mut Violations) {
        if !is_table_name(&self.table) {
            v.push(
                "config.table",
                "must be a plain SQL identifier (letters, digits and _, not starting with a digit, \
                 at most 63 characters), optionally after a schema and a dot (schema.table)",
            );
        }
        for (field, name) in self.columns.named() {
            check_identifier(v, &format!("config.columns.{field}"), name);
        }
        check_identifier(v, "config.mark_column", &self.mark_column);
        if let Some(sequence) = &self.sequence_column {
            check_identifier(v, "config.sequence_column", sequence);
        }
    }

    /// The database to connect to, with the password put back.
    pub fn target(&self) -> Result<Target, String> {
        if is_postgres(&self.database_url) {
            let mut options = PgConnectOptions::from_str(&self.database_url)
                .map_err(|e| format!("is not a PostgreSQL URL sqlx accepts ({e})"))?;
            if let Some(password) = &self.password {
                options = options.password(password);
            }
            Ok(Target::Postgres(options))
        } else {
            let options = SqliteConnectOptions::from_str(&self.database_url)
                .map_err(|e| format!("is not a SQLite URL sqlx accepts ({e})"))?
                // The application's file: never create one, nor change how it is journaled.
                .create_if_missing(false);
            Ok(Target::Sqlite(options))
        }
    }
}

impl Target {
    /// The SQLite file this names, when it names one.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        match self {
            Self::Sqlite(options) => {
                let file = options.get_filename();
                let in_memory = file.as_os_str().is_empty() || file.to_string_lossy().starts_with("file:");
                (!in_memory).then(|| file.to_path_buf())
            }
            Self::Postgres(_) => None,
        }
    }
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `url` without its password, and the password; or why `url` is not a database URL.
fn take_password(url: &str) -> Result<(String, Option<String>), String> {
    if url.starts_with("sqlite:") {
        let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
        if path.split('?').next().is_none_or(str::is_empty) {
            return Err("must name a database file (sqlite://app.db or sqlite:///var/lib/app.db)".into());
        }
        SqliteConnectOptions::from_str(url).map_err(|e| format!("is not a SQLite URL sqlx accepts ({e})"))?;
        return Ok((url.to_owned(), None));
    }
    if !is_postgres(url) {
        return Err("must be a postgres://, postgresql:// or sqlite:// URL".into());
    }
    let mut parsed = Url::parse(url).map_err(|_| "is not a valid URL".to_owned())?;
    let mut password = parsed.password().map(config_io::percent_decode);
    if password.is_some() && parsed.set_password(None).is_err() {
        return Err("has a password but no host".into());
    }
    // A password may also come as a query parameter.
    if parsed.query_pairs().any(|(key, _)| key == "password") {
        let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        let mut query = parsed.query_pairs_mut();
        query.clear();
        for (key, value) in pairs {
            if key == "password" {
                if password.is_some() {
                    return Err("gives a password twice".into());
                }
                password = Some(value);
            } else {
                query.append_pair(&key, &value);
            }
        }
        drop(query);
        if parsed.query() == Some("") {
            parsed.set_query(None);
        }
    }
    let kept = parsed.to_string();
    PgConnectOptions::from_str(&kept).map_err(|e| format!("is not a PostgreSQL URL sqlx accepts ({e})"))?;
    Ok((kept, password))
}

/// `[A-Za-z_][A-Za-z0-9_]*`, at most 63 characters.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= MAX_IDENTIFIER
}

/// An identifier, or `schema.table`.
pub fn is_table_name(name: &str) -> bool {
    match name.split_once('.') {
        Some((schema, table)) => is_identifier(schema) && is_identifier(table),
        None => is_identifier(name),
    }
}

fn check_identifier(v: &mut Violations, field: &str, name: &str) {
    if !is_identifier(name) {
        v.push(
            field,
            format!(
                "{:?} is not a plain SQL identifier (letters, digits and _, not starting with a \
                 digit, at most 63 characters)",
                excerpt(name)
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields_of(raw: Value) -> Vec<String> {
        OutboxConfig::parse(raw).expect_err("refused").0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn identifiers_are_plain_and_tables_may_name_a_schema() {
        for good in ["outbox", "_x1", "Outbox_2"] {
            assert!(is_identifier(good) && is_table_name(good), "{good}");
        }
        assert!(is_table_name("app.outbox") && !is_identifier("app.outbox"));
        for bad in ["", "1x", "out box", "x\"y", "a;b", "a.b.c", ".a", "a.", "é", &"x".repeat(64)] {
            assert!(!is_table_name(bad), "{bad}");
        }
    }

    #[test]
    fn passwords_leave_the_url_from_the_userinfo_or_the_query() {
        let (url, password) = take_password("postgres://hub:p%40ss@db:5432/app").expect("valid");
        assert_eq!((url.as_str(), password.as_deref()), ("postgres://hub@db:5432/app", Some("p@ss")));
        let (url, password) =
            take_password("postgresql://hub@db/app?password=s3cret&application_name=x").expect("valid");
        assert_eq!(
            (url.as_str(), password.as_deref()),
            ("postgresql://hub@db/app?application_name=x", Some("s3cret"))
        );
        let (url, password) = take_password("sqlite://app.db").expect("valid");
        assert_eq!((url.as_str(), password), ("sqlite://app.db", None));
        assert!(take_password("postgres://u:a@db/app?password=b").is_err());
    }

    #[test]
    fn database_urls_are_postgres_or_sqlite() {
        for good in ["sqlite://app.db", "sqlite:app.db", "sqlite:///var/lib/app.db", "postgresql://h/db"] {
            OutboxConfig::parse(json!({"database_url": good})).expect(good);
        }
        for bad in ["mysql://h/db", "sqlite://", "app.db", "postgres://h/db?sslmode=nonsense"] {
            assert_eq!(fields_of(json!({"database_url": bad})), ["config.database_url"], "{bad}");
        }
    }

    #[test]
    fn stored_configurations_are_checked_again() {
        let mut config = OutboxConfig::parse(json!({"database_url": "sqlite://a.db"})).expect("valid");
        config.columns.id = "id; DROP TABLE orders".into();
        let stored = serde_json::to_value(&config).expect("json");
        assert!(OutboxConfig::stored(stored).is_err());
    }
}
